"""How a sweep shares the machine: cores per worker, and each run's output kept in its own log.

Threads: a sweep of ``jobs`` worker processes on C cores gives each worker ⌊C / workers⌋ threads, with
at most C workers, so threads × workers ≤ C whatever the calling environment exports. OpenMP threads
beyond the cores make every run several times slower (measured on the 2-core machine: 2 workers × 2
threads took 51-169 s where 2 × 1 took 22-24 s). C is the cores this process may run on
(``os.sched_getaffinity``, which follows ``taskset`` and container CPU sets), or ``RD_TRAIN_CORES``
when a user sets it (e.g. to leave cores to other work). ``OMP_NUM_THREADS`` is deliberately not read:
the test and pipeline sessions export it for their own processes.

Stopping: a sweep stops when asked. In a pool worker (`stop_on_signals`), SIGTERM and SIGINT set a
flag that the run in progress reads at every step boundary: it stops there, keeps its last epoch-end
checkpoint, so a rerun resumes exactly (run.py), and the worker then exits (`running`); a worker asked
between runs exits at once. The kernel sends SIGTERM to a worker whose sweep dies and to a sweep whose
``dvc repro`` or shell dies (Linux ``PR_SET_PDEATHSIG``), so nothing trains on with no parent (issue 31:
a ``timeout`` of ``nox -s repro`` once left both workers training, and once stopped, idle workers
waiting forever on their dead sweep's queue).

Pools: every process pool of the project is `worker_pool` (sweeps, `rd-train plan`'s timed fits, the
analyses that load checkpoints, diffusability scoring), and `map_in_workers` maps over one: spawned
workers (no forked torch or CUDA state), each set to its share of the cores before it imports torch.

Exit: a process that has imported the training stack (torch, Lightning and what Lightning imports:
torchmetrics, torchvision, torch._dynamo, sympy) holds about 1.7 million allocated blocks, about 450,000
of them objects the cyclic garbage collector tracks, and the interpreter's exit runs the collector over
those: 1.3 s of the 1.6 s a worker took to exit,
measured on the 2-core machine, paid by every sweep's workers and every CLI command after its work is
done. `skip_exit_collection` moves every object to the collector's permanent generation at exit
(``gc.freeze``), so the final passes skip them; memory goes back to the system with the process either
way. Files and checkpoints are closed by then (writes are atomic, run.py).

Quiet runs: inside a sweep, everything a run prints (Lightning's banners, its tips, known warnings)
goes to ``<run>/train.log`` at the file-descriptor level, so the sweep's own output is one line per
finished run and its progress (progress.py).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from rd_train.errors import ParamsError
from rd_train.training.stopping import ask_to_stop, stop_requested

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


Item = TypeVar("Item")
Result = TypeVar("Result")


def _init_worker(threads: int, stop_on_signals_too: bool) -> None:
    skip_exit_collection()
    set_threads(threads)
    if stop_on_signals_too:
        stop_on_signals()


@contextlib.contextmanager
def worker_pool(plan: WorkerPlan, stop_on_signals: bool = False) -> Iterator[ProcessPoolExecutor]:
    """The project's one process pool: ``plan.workers`` spawned workers of ``plan.threads`` threads each.
    ``stop_on_signals``: the workers stop at a step boundary on SIGTERM/SIGINT and when this process
    dies (a sweep's workers; this process then also follows its own parent)."""
    import multiprocessing

    if stop_on_signals:
        stop_with_parent()  # killed with its dvc repro or shell, the caller goes, and its workers after it
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(plan.workers, mp_context=context, initializer=_init_worker,
                             initargs=(plan.threads, stop_on_signals)) as pool:
        yield pool


def map_in_workers(function: Callable[[Item], Result], items: Sequence[Item], jobs: int) -> Iterator[Result]:
    """``function`` over ``items``, yielded in order as each is ready (so a caller can save and report
    each result at once): in a `worker_pool` of `plan_workers(jobs)` when that has more than one worker
    and there is more than one item, else in this process, which is then set to the plan's threads too."""
    plan = plan_workers(jobs)
    if plan.workers > 1 and len(items) > 1:
        with worker_pool(plan) as pool:
            yield from pool.map(function, items)
        return
    set_threads(plan.threads)
    for item in items:
        yield function(item)


_RUNNING = threading.Event()  # a pool worker is inside a run
PR_SET_PDEATHSIG = 1
STOPPED_EXIT = 128 + signal.SIGTERM


def request_stop(signum: int = signal.SIGTERM, frame: object = None) -> None:
    ask_to_stop()
    if not _RUNNING.is_set():  # between runs: nothing to save or wait for
        os._exit(STOPPED_EXIT)


@contextlib.contextmanager
def running() -> Iterator[None]:
    """Around one run in a worker: a stop requested during it ends the run at a step boundary (run.py),
    then the process, which would otherwise wait on its pool's queue for a sweep that may be gone."""
    _RUNNING.set()
    try:
        yield
    finally:
        _RUNNING.clear()
        if stop_requested():
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(STOPPED_EXIT)


def stop_with_parent() -> None:
    """Ask the kernel for SIGTERM when this process's parent dies (Linux; elsewhere nothing)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def stop_on_signals() -> None:
    """A sweep worker's set-up: SIGTERM and SIGINT set the stop flag, and the parent's death sends
    SIGTERM (module doc). From the main thread only (Python's rule for signal handlers)."""
    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    parent = os.getppid()
    stop_with_parent()
    if os.getppid() != parent:  # the parent died before the request: no signal will come
        ask_to_stop()


def skip_exit_collection() -> None:
    """At this process's exit, spare the garbage collector's final passes over every live object (module
    doc): ``gc.freeze`` as an exit handler. It frees and closes nothing, so the other exit handlers
    (logging's flush, Lightning's) do what they did, in whatever order they run."""
    import atexit
    import gc

    atexit.register(gc.freeze)


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
