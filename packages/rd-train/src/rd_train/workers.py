"""How a sweep shares the machine: cores per worker, and each run's output kept in its own log.

Threads: a sweep of ``jobs`` worker processes on C cores gives each worker ⌊C / workers⌋ threads, with
at most C workers, so threads × workers ≤ C whatever the calling environment exports. OpenMP threads
beyond the cores make every run several times slower (measured on the 2-core machine: 2 workers × 2
threads took 51-169 s where 2 × 1 took 22-24 s). C is the cores this process may run on
(``os.sched_getaffinity``, which follows ``taskset`` and container CPU sets), or ``RD_TRAIN_CORES``
when a user sets it (e.g. to leave cores to other work). ``OMP_NUM_THREADS`` is deliberately not read:
the test and pipeline sessions export it for their own processes.

Quiet runs: inside a sweep, everything a run prints (Lightning's banners, its tips, known warnings)
goes to ``<run>/train.log`` at the file-descriptor level, so the sweep's own output is one line per
finished run and its progress (progress.py).
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from rd_train.errors import ParamsError

CORES_ENV = "RD_TRAIN_CORES"
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


@dataclass(frozen=True)
class WorkerPlan:
    cores: int
    workers: int
    threads: int  # per worker

    def describe(self) -> str:
        return f"{self.workers} worker(s) x {self.threads} thread(s) on {self.cores} core(s)"


def available_cores() -> int:
    """``RD_TRAIN_CORES`` if set, else the cores this process may run on."""
    value = os.environ.get(CORES_ENV)
    if value:
        try:
            cores = int(value)
        except ValueError:
            cores = 0
        if cores < 1:
            raise ParamsError(f"{CORES_ENV}={value!r}: set it to a positive number of cores, or unset it")
        return cores
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def plan_workers(jobs: int, cores: int | None = None) -> WorkerPlan:
    """``jobs`` workers capped at the cores, and the cores divided among them (threads × workers ≤ cores)."""
    cores = available_cores() if cores is None else cores
    workers = max(1, min(jobs, cores))
    return WorkerPlan(cores, workers, max(1, cores // workers))


def set_threads(threads: int) -> None:
    """Set a process's thread counts: the environment first (read when torch and BLAS load), then torch."""
    for name in THREAD_VARIABLES:
        os.environ[name] = str(threads)
    import torch

    torch.set_num_threads(threads)


@contextlib.contextmanager
def output_to(log: Path) -> Iterator[None]:
    """File descriptors 1 and 2 into ``log`` (appended: a resumed run keeps its first attempt's log
    above): Python's streams, the logging handlers that hold them (Lightning's) and C-level output
    all write through these descriptors. Warnings show once per place, in the log."""
    log.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log, "ab", buffering=0) as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("default")
                yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
