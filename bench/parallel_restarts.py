"""The paper's protocol (best of R restarts, bAbI task 1) trained in one process, restarts one after
another, against ``--parallel-restarts P`` (P processes side by side, the cores shared among them).

    python bench/parallel_restarts.py [--data ../shared/data/babi/en] [--restarts 10] [--processes 2]
        [--threads 2] [--quick]

Both runs are real ``memtool train`` commands on ``configs/memn2n_babi_task1.yaml``; the script prints
wall seconds (process start to exit), the kept restart's test error and every restart's test error on
both sides, then one JSON line. Run it with no other torch process on the machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "configs" / "memn2n_babi_task1.yaml"


def _train(out: Path, settings: list[str], extra: list[str]) -> tuple[float, dict]:
    command = [sys.executable, "-m", "memtool", "train", str(CONFIG), "--out", str(out), *extra]
    command += [part for setting in settings for part in ("--set", setting)]
    started = time.monotonic()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
    seconds = time.monotonic() - started
    return seconds, json.loads((out / "summary.json").read_text())


def _errors(summary: dict) -> list[float]:
    return [entry["test"]["metrics"]["error"] for entry in summary["restarts"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "babi" / "en"))
    parser.add_argument("--restarts", type=int, default=10)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="cores to use in all")
    parser.add_argument("--quick", action="store_true", help="2 restarts of 10 epochs: about a minute")
    args = parser.parse_args()
    if not Path(args.data, "qa1_single-supporting-fact_train.txt").is_file():
        sys.exit(f"no bAbI task 1 under {args.data}: memtool data download babi, or pass --data")
    restarts = 2 if args.quick else args.restarts
    settings = [f"data.path={Path(args.data).resolve()}", f"train.restarts={restarts}"]
    if args.quick:
        settings += ["train.epochs=10", "train.start_phase.epochs=3"]
    share = max(1, args.threads // args.processes)
    with tempfile.TemporaryDirectory() as folder:
        one_seconds, one = _train(Path(folder, "one"), [*settings, f"train.threads={args.threads}"], [])
        parallel_seconds, parallel = _train(
            Path(folder, "parallel"),
            [*settings, f"train.threads={share}"],
            ["--parallel-restarts", str(args.processes)],
        )
    print(f"bAbI task 1, best of {restarts}, {args.threads} cores in all")
    print(f"{'run':<34} {'wall s':>8} {'kept':>5} {'test error %':>13}  every restart's test error %")
    rows = [
        (f"one process, {args.threads} threads", one_seconds, one),
        (f"{args.processes} processes, {share} thread(s) each", parallel_seconds, parallel),
    ]
    for name, seconds, summary in rows:
        errors = " ".join(f"{e:.1f}" for e in _errors(summary))
        kept = summary["best_restart"] + 1
        print(f"{name:<34} {seconds:8.1f} {kept:>5} {summary['test']['metrics']['error']:13.1f}  {errors}")
    difference = max(abs(a - b) for a, b in zip(_errors(one), _errors(parallel), strict=True))
    print(
        f"speed-up of the processes: {one_seconds / parallel_seconds:.2f}×; largest per-restart "
        f"difference in test error: {difference:.2f} points (thread counts differ, so float sums may)"
    )
    result = {
        "restarts": restarts,
        "threads": args.threads,
        "processes": args.processes,
        "one_process_seconds": round(one_seconds, 2),
        "parallel_seconds": round(parallel_seconds, 2),
        "speedup": round(one_seconds / parallel_seconds, 3),
        "one_process_test_error": one["test"]["metrics"]["error"],
        "parallel_test_error": parallel["test"]["metrics"]["error"],
        "largest_restart_difference": difference,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
