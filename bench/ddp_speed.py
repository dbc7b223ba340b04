"""Data-parallel training on one machine: ``memtool train --nproc 2`` (PyTorch DDP, gloo, one thread per
process) against one process with one thread (the baseline) and one process with two threads (what the
same two cores give without DDP), per family.

    python bench/ddp_speed.py [--steps-scale 1.0] [--quick] [--family memn2n|ntm|captioner]

Each figure is a real ``memtool train`` command with ``train.max_steps`` set, and its training speed is
the run's own ``examples_per_second`` (training only: process start, data, DDP setup and validation
excluded), read from its ``metrics.jsonl``. ``train.batch_size`` is the whole step's batch in every
setting, so each of the two processes takes half of it. Run it with no other torch process on the
machine. The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from memtool.errors import run_as_script

ROOT = Path(__file__).resolve().parent.parent
FAMILIES = {  # family → (config, training steps per figure, what drives a step's cost, its examples)
    "memn2n": ("configs/quickstart.yaml", 600, "per-op overhead (a small model, batch 32)", "questions"),
    "ntm": ("configs/ntm_copy.yaml", 120, "per-op overhead (an op per time step, batch 16)", "sequences"),
    # an example is a (video, reference caption) pair, as captioner_speed's captions/s
    "captioner": (
        "configs/captioner_shapes.yaml",
        60,
        "arithmetic (a CNN over frames, batch 64)",
        "captions",
    ),
}
SETTINGS = {  # name → (processes, threads per process)
    "1 process, 1 thread": (1, 1),
    "1 process, 2 threads": (1, 2),
    "2 processes (DDP), 1 thread each": (2, 1),
}


def training_speed(config: str, steps: int, processes: int, threads: int, out: Path) -> float:
    """Training examples per second of one ``memtool train`` run of ``steps`` steps."""
    command = [sys.executable, "-m", "memtool", "train", str(ROOT / config), "--out", str(out)]
    command += ["--set", f"train.max_steps={steps}", "--set", f"train.threads={threads}"]
    command += ["--nproc", str(processes)] if processes > 1 else []
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return float(records[-1]["examples_per_second"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--family", choices=sorted(FAMILIES), action="append", help="default: all three")
    parser.add_argument("--steps-scale", type=float, default=1.0, help="more or fewer steps per figure")
    parser.add_argument("--quick", action="store_true", help="a tenth of the steps: about a minute")
    args = parser.parse_args()
    scale = args.steps_scale * (0.1 if args.quick else 1.0)
    figures: dict[str, dict[str, float]] = {}
    print("| family | what bounds a step | setting | steps | training speed | against 1 process, 1 thread |")
    print("|---|---|---|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as scratch:
        for family in args.family or list(FAMILIES):
            config, steps, bound, unit = FAMILIES[family]
            steps = max(5, round(steps * scale))
            rates: dict[str, float] = {}
            for name, (processes, threads) in SETTINGS.items():
                out = Path(scratch) / f"{family}-{processes}x{threads}"
                rates[name] = training_speed(config, steps, processes, threads, out)
                ratio = rates[name] / rates["1 process, 1 thread"]
                print(
                    f"| {family} | {bound} | {name} | {steps} | {rates[name]:.1f} {unit}/s | {ratio:.2f}× |",
                    flush=True,
                )
            figures[family] = rates
    print(json.dumps({"bench": "ddp_speed", "steps_scale": scale, "examples_per_second": figures}))


if __name__ == "__main__":
    run_as_script(main)
