"""Whether this process was asked to stop: the one flag a run checks at each step boundary and before a
checkpoint. A sweep's worker sets it from its signal handlers (`rd_train.pipeline.workers`); a run never
needs to know who asked."""

from __future__ import annotations

import threading

_STOP = threading.Event()


def stop_requested() -> bool:
    """Whether this process was asked to stop (SIGTERM or SIGINT in a sweep worker)."""
    return _STOP.is_set()


def ask_to_stop() -> None:
    _STOP.set()
