"""``memtool train --nproc N``: the same command under torchrun, as N data-parallel processes on this
machine (gloo between CPU processes, NCCL between GPUs). Several machines: run ``torchrun`` yourself,
``torchrun --nnodes M --nproc-per-node N ... -m memtool train CONFIG``; the engine reads torchrun's
environment either way."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from memtool.errors import UserError
from memtool.run_dir import RunDirectory


def launch(arguments: list[str], processes: int, device: str, run_dir: Path) -> int:
    """Run ``memtool train ARGUMENTS`` in ``processes`` processes; returns the exit code to leave with:
    the first process's (it prints the run's errors and results), else the first failing one's.
    ``run_dir`` is the run's folder (``--out``), to tell after a Ctrl-C whether the run saved."""
    last = RunDirectory(run_dir).last
    before = _file_version(last)
    os.environ.setdefault("LOGLEVEL", "CRITICAL")  # torchrun's own notes; the workers say what went wrong
    import torch
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    from memtool.build import resolve_device

    on_gpus = resolve_device(device).type == "cuda"  # cuda without a GPU: the usual one-line error
    if on_gpus and processes > torch.cuda.device_count():
        raise UserError(f"--nproc {processes}: this machine has {torch.cuda.device_count()} GPU(s)")
    # each process gets its share of the cores, not torchrun's silent default of one thread
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // processes)))
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    command = ["--standalone", f"--nproc-per-node={processes}", "--module", "memtool", "train", *arguments]
    try:
        run(parse_args(command))
    except ChildFailedError as error:
        # a process that exits first makes torchrun stop the others (SIGTERM: a negative code); the
        # code memtool chose (2: bad input, 1: diverged, 130: interrupted) is the one to pass on
        codes = {rank: failure.exitcode for rank, failure in error.failures.items()}
        chosen = [codes[0]] if codes.get(0, 0) > 0 else []
        chosen += [code for _, code in sorted(codes.items()) if code > 0]
        return chosen[0] if chosen else 1
    except SignalException:
        # once training runs, the first process saves (a new last.pt) and says so; stopped before, it
        # says nothing
        if _file_version(last) == before:
            kept = f"{last} is as it was" if before else "nothing was saved"
            print(f"interrupted while the processes started; {kept}", file=sys.stderr)
        return 130
    return 0


def _file_version(path: Path) -> tuple[int, int] | None:
    """Which write of ``path`` is there, if any: an atomic write replaces the file, so its inode changes
    (and its modification time), whatever the clocks say."""
    try:
        status = path.stat()
    except FileNotFoundError:
        return None
    return status.st_ino, status.st_mtime_ns
