"""What the attention regularizer asks of a captioner that attends perfectly, on the synthetic videos.

    python scripts/coverage_oracle.py configs/captioner_shapes.yaml [--set task.event_lengths=equal]
        [--videos 2000]

The regularizer pulls each frame's attention total, Σ_t α_t^i, towards τ (auto: the caption's words
and <eos> ÷ the frames): uniform coverage. A captioner that attends perfectly looks, at each word, at
the frames of the event that word describes. For the reference captions of ``--videos`` videos drawn
as the config's task draws them (seeded), this scores such an "event oracle": every word of an event's
phrase spreads its attention evenly over that event's frames; a connective ("then", "after that", ...)
goes to the event it introduces or, in the second row, to the one before; <eos> goes to the last event
or, in the other column, evenly over all frames. (A slideshow's caption has two words per event,
"red square", and no connectives.) It prints the oracle's coverage error
Σ_i |τ − Σ_t α_t^i| per caption (what ``eval`` reports as ``coverage_error``) and its penalty
Σ_i (τ − Σ_t α_t^i)² per word. Where these are far from 0, uniform coverage is not what correct
attention does, and the penalty pulls a captioner away from it.
"""

from __future__ import annotations

import argparse
import random
import statistics
from pathlib import Path

from memtool.config import load_config
from memtool.errors import exit_for_user, run_as_script
from memtool.tasks.video.shapes import SYNONYMS, VideoSpec, plan_split


def _matched(words: list[str], position: int, candidates: list[str] | tuple[str, ...], caption: str) -> int:
    """How many words the candidate found at ``position`` takes."""
    for candidate in candidates:
        if words[position : position + len(candidate.split())] == candidate.split():
            return len(candidate.split())
    raise ValueError(f"caption {caption!r}: none of {list(candidates)} at word {position + 1}")


def oracle_coverage(
    spec: VideoSpec, caption: str, frames: int, connective_before: bool, eos_even: bool
) -> list[float]:
    """Each frame's attention total under the event oracle, for one reference caption of ``spec``."""
    coverage = [0.0] * frames

    def attend(event: int, weight: float = 1.0) -> None:
        first, last = spec.events[event].first, spec.events[event].last
        for frame in range(first, last + 1):
            coverage[frame] += weight / (last - first + 1)

    words = caption.split()
    position = 0
    for index, event in enumerate(spec.events):
        if spec.slideshow:  # "red square": no connective, no verb
            taken = _matched(words, position, [event.name], caption)
            for _ in range(taken):
                attend(index)
            position += taken
            continue
        if index:  # the connective in front of this event's phrase
            taken = _matched(words, position, SYNONYMS["then"], caption)
            for _ in range(taken):
                attend(index - 1 if connective_before else index)
            position += taken
        # the event's phrase, with whichever synonym of its verb this caption drew
        taken = _matched(words, position, [event.worded(verb) for verb in SYNONYMS[event.kind]], caption)
        for _ in range(taken):
            attend(index)
        position += taken
    if position != len(words):
        raise ValueError(f"caption {caption!r} does not split into its {len(spec.events)} events' phrases")
    if eos_even:
        coverage = [c + 1 / frames for c in coverage]
    else:
        attend(len(spec.events) - 1)
    return coverage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", type=Path, help="a captioner config (its task settings make the videos)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, as memtool train --set",
    )
    parser.add_argument("--videos", type=int, default=2000, help="generated videos to score the oracle on")
    args = parser.parse_args()
    if args.videos < 1:
        exit_for_user(f"--videos {args.videos}: give a whole number of at least 1")
    config = load_config(args.config, overrides=args.overrides)
    if config.task.name != "shapes_captions":
        exit_for_user(f"{args.config}: a shapes_captions config is needed, not {config.task.name}")
    p = config.task.params
    rng = random.Random(config.seed)
    specs = plan_split(
        args.videos, p.frames, (p.min_events, p.max_events), p.max_objects, set(), False, rng,
        p.event_lengths == "equal", tuple(p.colours), tuple(p.shapes), p.layout == "slideshow",
    )  # fmt: skip
    references = 1 if p.layout == "slideshow" else p.references  # a slideshow has one wording
    print(f"{args.config} {' '.join(args.overrides)}: {args.videos} videos, {references} captions each")
    print("| connectives go to | <eos> to the last event | <eos> spread over the frames |")
    print("|---|---|---|")
    for before in (False, True):
        cells = []
        for eos_even in (False, True):
            errors, penalties = [], []
            for spec in specs:
                for caption in spec.captions(p.references, rng):
                    coverage = oracle_coverage(spec, caption, p.frames, before, eos_even)
                    tau = (len(caption.split()) + 1) / p.frames  # the words and <eos>, as τ = auto
                    errors.append(sum(abs(tau - c) for c in coverage))
                    penalties.append(sum((tau - c) ** 2 for c in coverage) / (len(caption.split()) + 1))
            error, penalty = statistics.mean(errors), statistics.mean(penalties)
            cells.append(f"coverage error {error:.2f}, penalty per word {penalty:.3f}")
        print(f"| {'the event before' if before else 'the event they introduce'} | {' | '.join(cells)} |")


if __name__ == "__main__":
    run_as_script(main)
