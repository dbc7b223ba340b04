"""Markdown table of captioning runs: test scores per run and mean ± std per setting.

    python scripts/caption_table.py [--rescore] [--set KEY=VALUE ...] runs/captioner_shapes-s0 ...

Runs are grouped by their model's attention, λ and τ (from ``config.yaml``); every number comes from the
runs' ``summary.json`` (the test split of ``best.pt``), so docs/RESULTS.md is not typed by hand.
``--rescore`` scores each run's ``best.pt`` on its test split again with today's metrics (what
``memtool eval RUN`` prints; greedy decoding is deterministic, so only a changed metric changes).
``--set`` rescores on a changed test split, as ``memtool eval RUN --set`` does: ``--set
data.test_pairs=seen`` scores fresh videos of the training distribution instead of the held-out pairs.
``--reached bleu4=0.9`` adds a column: the first epoch whose validation BLEU-4 reached 0.9 (from the
run's ``metrics.jsonl``, the kept restart's records; at most the value for ``loss`` and ``repeat_rate``;
"–" where it never did), for how fast a setting learns. ``--paired`` compares two settings seed by seed:
per metric the mean difference (the first run's setting minus the other), in how many seeds it is
higher and lower, the paired t and two p values (Student's t; a sign-flip test, which assumes nothing
about the differences' distribution: exact up to 16 seeds, sampled beyond, and never below 2^(1 − seeds),
so three seeds cannot show p < 0.05 however large the difference). ``--holm bleu4,cider,repeat_rate``
adds those metrics' p values after Holm's adjustment for testing them together (each p alone
overstates the evidence when several scores are tested for one claim). ``--cache DIR`` keeps rescored
metrics in DIR, read back while a run's ``best.pt`` and the ``--set`` are unchanged.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
from pathlib import Path
from statistics import mean, stdev

from memtool.config import config_leaves
from memtool.errors import exit_for_user, run_as_script
from memtool.run_files import distinct, finished_run
from memtool.stats import Paired, holm, paired

Column = tuple[str, str, int]  # metric, label, digits
Scores = dict[str, float]  # a run's test metrics and its seed

METRICS: tuple[Column, ...] = (
    ("bleu1", "BLEU-1", 3),
    ("bleu4", "BLEU-4", 3),
    ("rouge_l", "ROUGE-L", 3),
    ("cider", "CIDEr-D", 3),
    ("repeat_rate", "repeating a word (%)", 1),
    ("coverage_error", "coverage error", 3),
    ("repeat_same_frame", "repeats at the same frame (%)", 1),
    ("mention_same_frame", "re-mentions at the same frame (%)", 1),
)


def present(value: float | None) -> bool:
    """False where a run's summary predates the metric or it had no case to count (NaN, which
    summary.json stores as null)."""
    return value is not None and not math.isnan(value)


def cell(value: float | None, digits: int) -> str:
    return f"{value:.{digits}f}" if present(value) else "–"


def setting(run: Path, config: dict) -> str:
    """The name of the row a run's scores are pooled into: its attention and regularizer, and what else
    sets it apart at a glance (a slideshow, a temporal encoder); ``labels`` adds any other difference."""
    model, task = config["model"], config.get("task", {})
    if model.get("name") != "captioner":
        exit_for_user(f"{run}: a captioner run is needed, this is {model.get('name')} on {task.get('name')}")
    name = (
        "mean pooling (no attention)"
        if model.get("attention") == "mean"
        else f"soft attention, λ = {model.get('reg_lambda')}, τ = {model.get('reg_tau')}"
    )
    if task.get("layout", "events") != "events":
        name += f", {task['layout']}"
    if model.get("temporal_encoder"):
        name += ", BiLSTM over the frames"
    return name


# what may differ between runs pooled into one row: the seed, and how a run was executed
NOT_THE_SETTING = (
    "seed",
    "device",
    "data.seed",
    "train.threads",
    "train.compile",
    "train.eval_batch_size",
    "train.checkpoint_every_steps",
    "train.checkpoint_every_seconds",
    "train.tensorboard",
)
MOST_KEYS_SHOWN = 3


def labels(configs: dict[Path, dict]) -> dict[Path, str]:
    """Each run's row label, from its config: runs with the same ``setting`` and the same config but for
    ``NOT_THE_SETTING`` share one; runs whose configs differ otherwise are never pooled, and their
    label names the keys that differ (``task.frames=12``), so that unlike runs are never averaged."""
    named = {run: setting(run, config) for run, config in configs.items()}
    leaves = {
        run: {k: v for k, v in config_leaves(config).items() if k not in NOT_THE_SETTING}
        for run, config in configs.items()
    }
    found: dict[Path, str] = {}
    for name in dict.fromkeys(named.values()):
        members = [run for run in configs if named[run] == name]
        keys = {key for run in members for key in leaves[run]}
        differing = sorted(key for key in keys if len({leaves[run].get(key) for run in members}) > 1)
        for run in members:
            shown = [f"{key}={leaves[run].get(key, '–')}" for key in differing[:MOST_KEYS_SHOWN]]
            more = ", …" if len(differing) > MOST_KEYS_SHOWN else ""
            found[run] = f"{name} ({', '.join(shown)}{more})" if differing else name
    return found


# what a validation record holds per epoch, and whether higher is better
LOGGED = {"bleu4": True, "cider": True, "loss": False, "repeat_rate": False}


def first_epoch(run: Path, metric: str, value: float, restart: int = 0) -> float | None:
    """The first epoch of ``restart`` whose ``valid_<metric>`` reached ``value`` (at least it, or at most
    it for a loss or a rate), or None."""
    better = LOGGED[metric]
    path = run / "metrics.jsonl"
    if not path.is_file():
        exit_for_user(f"{path}: no such file (--reached reads a run's validation records)")
    for line in path.read_text().splitlines():
        record = json.loads(line)
        found = record.get(f"valid_{metric}")
        if record.get("restart", 0) != restart or found is None:
            continue
        if (found >= value) if better else (found <= value):
            return float(record["epoch"])
    return None


def reached_target(text: str) -> tuple[str, float]:
    """``--reached`` as (metric, value): ``bleu4=0.9``."""
    name, _, value = text.partition("=")
    if name not in LOGGED:
        exit_for_user(
            f"--reached {text}: {name!r} is not logged at each validation ({', '.join(LOGGED)} are)"
        )
    try:
        return name, float(value)
    except ValueError:
        exit_for_user(f"--reached {text}: give METRIC=VALUE, e.g. bleu4=0.9")


def rescore(run: Path, overrides: list[str], cache: Path | None = None) -> dict[str, float]:
    """``best.pt``'s test metrics under ``overrides``; with ``cache``, kept there and read back while the
    checkpoint and the overrides are the same (2,000 fresh videos take a minute a run on two cores)."""
    from memtool.build import restore
    from memtool.checkpoint import load_checkpoint

    checkpoint = run / "best.pt"
    stored = None
    if cache is not None and checkpoint.is_file():
        written = checkpoint.stat()
        key = json.dumps([str(run.resolve()), written.st_mtime_ns, written.st_size, sorted(overrides)])
        stored = cache / f"{run.name}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"
        if stored.is_file():
            return json.loads(stored.read_text())
    config, task, model = restore(load_checkpoint(checkpoint), overrides)
    metrics = task.evaluate(model, "test", config.train.eval_batch_size).metrics
    if stored is not None:
        stored.parent.mkdir(parents=True, exist_ok=True)
        stored.write_text(json.dumps(metrics))
    return metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path, nargs="+", help="run directories")
    parser.add_argument("--rescore", action="store_true", help="score best.pt on test again")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="KEY=VALUE; rescores")
    parser.add_argument("--reached", metavar="METRIC=VALUE", help="first epoch at this validation score")
    parser.add_argument("--paired", action="store_true", help="compare two settings seed by seed")
    parser.add_argument(
        "--holm",
        metavar="METRIC,...",
        help="with --paired: the metrics tested together (e.g. bleu4,cider,repeat_rate); adds their p "
        "values after Holm's adjustment for testing them together",
    )
    parser.add_argument(
        "--cache", type=Path, help="a folder to keep rescored metrics in, read back next time"
    )
    args = parser.parse_args()
    family = args.holm.split(",") if args.holm else []
    known = [name for name, _, _ in METRICS]
    if family and not args.paired:
        exit_for_user("--holm adjusts --paired's p values: add --paired")
    for name in family:
        if name not in known:
            exit_for_user(f"--holm: {name!r} is no metric of the table; these are: {', '.join(known)}")
    target = reached_target(args.reached) if args.reached else None
    columns = list(METRICS)
    if target:
        sign = "≥" if LOGGED[target[0]] else "≤"
        columns.append(("reached", f"first epoch with valid {target[0]} {sign} {target[1]:g}", 1))
    finished = {run: finished_run(run) for run in distinct(args.runs)}  # each run's summary and config
    settings = labels({run: config for run, (_, config) in finished.items()})  # refuses another model
    if args.paired and len(set(settings.values())) != 2:
        found = "; ".join(sorted(set(settings.values())))
        exit_for_user(f"--paired compares two settings; these runs' settings are: {found}")
    groups: dict[str, list[Scores]] = {}
    rows = []
    for run, (summary, _) in finished.items():
        fresh = args.rescore or args.overrides
        metrics = dict(rescore(run, args.overrides, args.cache) if fresh else summary["test"]["metrics"])
        if target:
            epoch = first_epoch(run, *target, restart=summary.get("best_restart", 0))
            metrics["reached"] = math.nan if epoch is None else epoch
        groups.setdefault(settings[run], []).append({**metrics, "seed": summary["seed"]})
        cells = " | ".join(
            f"{metrics[name]:g}"
            if name == "reached" and present(metrics[name])
            else cell(metrics.get(name), digits)
            for name, _, digits in columns
        )  # an epoch as it is: 26, or 2.5 when validated mid-epoch
        rows.append(f"| {run.name} | {summary['seed']} | {cells} | {summary['train_seconds']:.0f} |")
    if args.paired:
        check_pairs(*groups.items())  # before printing: a refusal leaves stdout empty
    print("| run | seed | " + " | ".join(label for _, label, _ in columns) + " | train s |")
    print("|---|---:|" + "---:|" * (len(columns) + 1))
    print("\n".join(rows))
    print()
    print("| setting | runs | " + " | ".join(label for _, label, _ in columns) + " |")
    print("|---|---:|" + "---:|" * len(columns))
    for name, scores in groups.items():
        cells = []
        for metric, _, digits in columns:
            values = [r[metric] for r in scores if present(r.get(metric))]
            spread = f" ± {stdev(values):.{digits}f}" if len(values) > 1 else ""
            missing = (
                f" ({len(scores) - len(values)} never)"
                if metric == "reached" and len(values) < len(scores)
                else ""
            )
            cells.append((f"{mean(values):.{digits}f}{spread}" if values else "–") + missing)
        print(f"| {name} | {len(scores)} | " + " | ".join(cells) + " |")
    if args.paired:
        print_paired(*groups.items(), columns, family)


def check_pairs(first: tuple[str, list[Scores]], second: tuple[str, list[Scores]]) -> None:
    """Refuse what cannot be paired: a seed twice in one setting, or no seed in both."""
    for name, runs in (first, second):
        seeds = [r["seed"] for r in runs]
        if len(set(seeds)) < len(seeds):
            again = sorted({seed for seed in seeds if seeds.count(seed) > 1})
            exit_for_user(f"--paired: {name}: seed {again[0]} appears in more than one run")
    if not {r["seed"] for r in first[1]} & {r["seed"] for r in second[1]}:
        exit_for_user(f"--paired: {first[0]} and {second[0]} have no seed in common")


def print_paired(
    first: tuple[str, list[Scores]],
    second: tuple[str, list[Scores]],
    columns: list[Column],
    family: list[str] | None = None,
) -> None:
    """Per metric, ``first − second`` over the seeds both settings have a value for (``check_pairs``
    has refused what cannot be paired); for the metrics of ``family``, the p values after Holm's
    adjustment for testing them together."""
    found: dict[str, tuple[str, Paired]] = {}
    for metric, label, _ in columns:
        ours = {r["seed"]: r[metric] for r in first[1] if present(r.get(metric))}
        theirs = {r["seed"]: r[metric] for r in second[1] if present(r.get(metric))}
        seeds = sorted(ours.keys() & theirs.keys())
        if seeds:
            found[metric] = (label, paired([ours[s] for s in seeds], [theirs[s] for s in seeds]))
    tested = [metric for metric in family or [] if metric in found]
    adjusted = {
        kind: dict(zip(tested, holm([getattr(found[m][1], kind) for m in tested]), strict=True))
        for kind in ("p_t", "p_sign_flip")
    }
    holm_header = " | Holm p (t) | Holm p (sign flip)" if family else ""
    print()
    print(f"[{first[0]}] − [{second[0]}], paired by seed; p values two-sided:")
    print()
    header = "| metric | seeds | mean difference | higher in | lower in | paired t | p (t) | p (sign flip)"
    print(f"{header}{holm_header} |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|" + ("---:|---:|" if family else ""))
    digits = {metric: places for metric, _, places in columns}
    for metric, (label, result) in found.items():
        rounded = round(result.mean_difference, digits[metric] + 1)
        places = digits[metric] + 1
        difference = f"{rounded:+.{places}f}" if rounded else f"{0:.{places}f}"  # no "-0.0000"
        holm_cells = ""
        if family:
            holm_cells = " | " + " | ".join(
                cell(adjusted[kind][metric], 3) if metric in tested else "" for kind in ("p_t", "p_sign_flip")
            )
        print(
            f"| {label} | {result.seeds} | {difference} | {result.higher} | {result.lower} | "
            f"{cell(result.t, 2)} | {cell(result.p_t, 3)} | {cell(result.p_sign_flip, 3)}{holm_cells} |"
        )


if __name__ == "__main__":
    run_as_script(main)
