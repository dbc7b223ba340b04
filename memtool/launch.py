"""``memtool train --nproc N``: the same command under torchrun, as N data-parallel processes on this
machine (gloo between CPU processes, NCCL between GPUs). Several machines: run ``torchrun`` yourself,
``torchrun --nnodes M --nproc-per-node N ... -m memtool train CONFIG``; the engine reads torchrun's
environment either way."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from memtool.console import LAUNCHED_VARIABLE
from memtool.errors import UserError
from memtool.interrupts import say_interrupted


def launch(arguments: list[str], processes: int, device: str, run_dir: Path, resume_hint: str) -> int:
    """Run ``memtool train ARGUMENTS`` in ``processes`` processes; returns the exit code to leave with:
    the first process's (it prints the run's errors and results), else the first failing one's. An
    interruption is reported here, once: ``run_dir`` (``--out``) says whether anything was saved, and
    ``resume_hint`` is the command that continues the run."""
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
    os.environ[LAUNCHED_VARIABLE] = "1"  # the processes leave the interruption's report to this one
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
        code = chosen[0] if chosen else 1
        if code == 130:  # the processes were stopped (SIGTERM) and saved
            say_interrupted(run_dir, resume_hint)
        return code
    except SignalException:  # Ctrl-C: torchrun stops the processes, which save if they were training
        say_interrupted(run_dir, resume_hint)
        return 130
    return 0
