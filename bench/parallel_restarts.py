"""The paper's protocol (best of R restarts, bAbI task 1) trained in one process, restarts one after
another, against a single run (the goal: best of R under 3× one run), against the restarts stacked
(``train.stack_restarts``: one model of R replicas), against ``--parallel-restarts P`` (P processes side
by side, the cores shared among them), and against R runs of the public PyTorch MemN2N
(nmhkahn/MemN2N-pytorch, its defaults) in the same script.

    python bench/parallel_restarts.py [--data ../shared/data/babi/en] [--restarts 10] [--processes 2]
        [--threads 2] [--public DIR] [--quick]

memtool's runs are real ``memtool train`` commands on ``configs/memn2n_babi_task1.yaml``; the script
prints wall seconds (process start to exit), the kept restart's test error and every restart's test
error, then one JSON line. The public code (``--public``: its checkout, or the git directory that
``fetch`` brings, default ``$MEMN2N_PUBLIC``) is never copied into memtool: a checkout runs where it
is, a git directory is exported to a temporary folder first; either runs as it is, with three shims
for today's torch and Python (its loss returns a 1-element tensor so that its ``loss.data[0]`` works,
its tokenizer skips the ``None`` that ``re.split`` now returns, and a stand-in for the ``six``
package). It has no validation split, so its runs are reported by their test errors. Without it the
script says so and times memtool alone. Run it with no other torch process on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from batch_scaling import require_babi  # bench/ is on the path when run as a script

from memtool.errors import run_as_script

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "configs" / "memn2n_babi_task1.yaml"


def _train(out: Path, settings: list[str], extra: list[str]) -> tuple[float, dict]:
    command = [sys.executable, "-m", "memtool", "train", str(CONFIG), "--out", str(out), *extra]
    command += [part for setting in settings for part in ("--set", setting)]
    started = time.monotonic()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
    seconds = time.monotonic() - started
    return seconds, json.loads((out / "summary.json").read_text())


PUBLIC_RUN = """
import functools, json, re, sys, types
six, moves = types.ModuleType("six"), types.ModuleType("six.moves")
moves.range, moves.reduce, six.moves = range, functools.reduce, moves
sys.modules.update({"six": six, "six.moves": moves})
import torch
torch.set_num_threads(int(sys.argv[2]))
torch.manual_seed(int(sys.argv[3]))
sys.path.insert(0, sys.argv[1])
import data_utils
# Python 3.7+ gives None for the empty optional group its tokenizer splits on
data_utils.tokenize = lambda text: [x.strip() for x in re.split(r"(\\W+)?", text) if x and x.strip()]
import train, trainer
sys.argv = ["train.py", "--dataset_dir", sys.argv[4], "--task", "1"]
run = trainer.Trainer(train.parse_config())
run.ce_fn = lambda out, target: torch.nn.functional.cross_entropy(out, target, reduction="sum").reshape(1)
run.fit()
print(json.dumps({"test_error": 100 * (1 - float(run.evaluate("test")))}))
"""


def _public_source(given: str | None, folder: Path) -> Path | None:
    """The public MemN2N's ``memn2n`` folder, exported from a git directory when need be."""
    if not given:
        return None
    root = Path(given)
    if (root / "memn2n" / "trainer.py").is_file():
        return root / "memn2n"
    if not root.is_dir():
        return None
    archive = subprocess.run(
        ["git", "--git-dir", str(root), "archive", "HEAD", "memn2n"], capture_output=True, check=False
    )
    if archive.returncode != 0:
        return None
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    return folder / "memn2n"


def _public_runs(source: Path, runs: int, threads: int, data: str) -> tuple[float, list[float]]:
    """``runs`` runs of the public code one after another (seeds 0..runs-1): wall seconds, test errors."""
    errors = []
    started = time.monotonic()
    for seed in range(runs):
        command = [sys.executable, "-c", PUBLIC_RUN, str(source), str(threads), str(seed), data + "/"]
        done = subprocess.run(command, capture_output=True, text=True, check=True, cwd=source)
        errors.append(json.loads(done.stdout.strip().splitlines()[-1])["test_error"])
    return time.monotonic() - started, errors


def _errors(summary: dict) -> list[float]:
    return [entry["test"]["metrics"]["error"] for entry in summary["restarts"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data",
        default=str(ROOT.parent / "shared" / "data" / "babi" / "en"),
        help="bAbI en/ directory (memtool data download babi)",
    )
    parser.add_argument("--restarts", type=int, default=10, help="restarts of task 1 (the paper: 10)")
    parser.add_argument("--processes", type=int, default=2, help="restarts trained side by side")
    parser.add_argument("--threads", type=int, default=2, help="cores to use in all")
    parser.add_argument("--public", default=os.environ.get("MEMN2N_PUBLIC"), help="nmhkahn/MemN2N-pytorch")
    parser.add_argument("--quick", action="store_true", help="2 restarts of 10 epochs: about a minute")
    args = parser.parse_args()
    require_babi(args.data)
    restarts = 2 if args.quick else args.restarts
    data = f"data.path={Path(args.data).resolve()}"
    short = ["train.epochs=10", "train.start_phase.epochs=3"] if args.quick else []  # every form alike
    settings = [data, f"train.restarts={restarts}", *short]
    in_turn = [*settings, "train.stack_restarts=false"]  # the config stacks them: the baseline does not
    share = max(1, args.threads // args.processes)
    with tempfile.TemporaryDirectory() as folder:
        single = [data, "train.restarts=1", f"train.threads={args.threads}", *short]
        single_seconds, single_run = _train(Path(folder, "single"), single, [])
        one_seconds, one = _train(Path(folder, "one"), [*in_turn, f"train.threads={args.threads}"], [])
        stacked_seconds, stacked = _train(
            Path(folder, "stacked"),
            [*settings, f"train.threads={args.threads}", "train.stack_restarts=true"],
            [],
        )
        parallel_seconds, parallel = _train(
            Path(folder, "parallel"),
            [*in_turn, f"train.threads={share}"],
            ["--parallel-restarts", str(args.processes)],
        )
        source = _public_source(args.public, Path(folder))
        if source is not None and not args.quick:
            public_seconds, public_errors = _public_runs(source, restarts, args.threads, args.data)
    print(f"bAbI task 1, best of {restarts}, {args.threads} cores in all")
    print(f"{'run':<34} {'wall s':>8} {'kept':>5} {'test error %':>13}  every restart's test error %")
    rows = [
        (f"a single run (seed 0), {args.threads} threads", single_seconds, single_run),
        (f"one process, in turn, {args.threads} threads", one_seconds, one),
        (f"one process, stacked, {args.threads} threads", stacked_seconds, stacked),
        (f"{args.processes} processes, {share} thread(s) each", parallel_seconds, parallel),
    ]
    for name, seconds, summary in rows:
        errors = " ".join(f"{e:.1f}" for e in _errors(summary))
        kept = summary["best_restart"] + 1
        print(f"{name:<34} {seconds:8.1f} {kept:>5} {summary['test']['metrics']['error']:13.1f}  {errors}")
    difference = max(abs(a - b) for a, b in zip(_errors(one), _errors(parallel), strict=True))
    stacked_difference = max(abs(a - b) for a, b in zip(_errors(one), _errors(stacked), strict=True))
    print(
        f"speed-up of stacking: {one_seconds / stacked_seconds:.2f}×; largest per-restart difference in "
        f"test error: {stacked_difference:.2f} points (float sums run in another order)"
    )
    print(
        f"best of {restarts} against a single run: in turn {one_seconds / single_seconds:.2f}×, stacked "
        f"{stacked_seconds / single_seconds:.2f}× its wall time"
    )
    print(
        f"speed-up of the processes: {one_seconds / parallel_seconds:.2f}×; largest per-restart "
        f"difference in test error: {difference:.2f} points (thread counts differ, so float sums may)"
    )
    result = {
        "restarts": restarts,
        "threads": args.threads,
        "processes": args.processes,
        "single_run_seconds": round(single_seconds, 2),
        "stacked_over_single_run": round(stacked_seconds / single_seconds, 3),
        "one_process_seconds": round(one_seconds, 2),
        "stacked_seconds": round(stacked_seconds, 2),
        "stacked_speedup": round(one_seconds / stacked_seconds, 3),
        "stacked_test_error": stacked["test"]["metrics"]["error"],
        "parallel_seconds": round(parallel_seconds, 2),
        "speedup": round(one_seconds / parallel_seconds, 3),
        "one_process_test_error": one["test"]["metrics"]["error"],
        "parallel_test_error": parallel["test"]["metrics"]["error"],
        "largest_restart_difference": difference,
    }
    if source is None or args.quick:
        why = "--quick" if args.quick else f"not found at {args.public!r} (--public or MEMN2N_PUBLIC)"
        print(f"public PyTorch MemN2N not run: {why}")
    else:
        errors = " ".join(f"{e:.1f}" for e in public_errors)
        name = f"public MemN2N, {restarts} runs"
        print(f"{name:<34} {public_seconds:8.1f} {'-':>5} {min(public_errors):13.1f}  {errors}")
        one_ratio, parallel_ratio = public_seconds / one_seconds, public_seconds / parallel_seconds
        stacked_ratio = public_seconds / stacked_seconds
        print(
            f"memtool against the public code's {restarts} runs: one process {one_ratio:.1f}×, stacked "
            f"{stacked_ratio:.1f}×, {args.processes} processes {parallel_ratio:.1f}× faster "
            "(public best: by test error)"
        )
        result |= {
            "public_seconds": round(public_seconds, 2),
            "public_test_errors": public_errors,
            "speedup_over_public_one_process": round(one_ratio, 2),
            "speedup_over_public_parallel": round(parallel_ratio, 2),
            "speedup_over_public_stacked": round(stacked_ratio, 2),
        }
    print(json.dumps(result))


if __name__ == "__main__":
    run_as_script(main)
