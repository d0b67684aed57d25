"""A sweep's progress as a person follows it: one line per finished run and a stage line with an ETA.

Each finished run prints ``[stage] k/N name  KL … anisotropy … PSNR …  time  ETA …``; on a terminal a
tqdm bar below the lines counts runs and extrapolates the remaining time, elsewhere (DVC's output
captured in a log, CI) the lines alone carry the count and the ETA. The ETA is the wall time per
trained run so far times the runs left (runs reused from an earlier repro cost nothing and do not count).
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO


def headline(metrics: dict[str, Any]) -> str:
    """A run's headline numbers from its metrics.json."""
    parts = []
    for key, label, fmt in (("kl", "KL", "{:.2f} nats"), ("anisotropy", "anisotropy", "{:.3f}"),
                            ("psnr", "PSNR", "{:.2f} dB"), ("beta", "β", "{:.4g}")):
        value = metrics.get(key)
        if isinstance(value, int | float):
            parts.append(f"{label} {fmt.format(value)}")
    if metrics.get("precision"):
        parts.append(str(metrics["precision"]))
    return "  ".join(parts)


def duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


class SweepProgress:
    """Counts finished runs of one stage and prints them (to ``stream``, stderr by default)."""

    def __init__(self, stage: str, total: int, stream: TextIO | None = None, note: str = "") -> None:
        self.stage, self.total = stage, total
        self.stream = stream if stream is not None else sys.stderr
        self.done = self.trained = 0
        self.start = time.perf_counter()
        self._bar: Any = None
        if self.stream.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=stage, unit="run", file=self.stream, dynamic_ncols=True)
        self._print(f"[{stage}] {total} runs" + (f", {note}" if note else ""))

    def finished(self, name: str, metrics: dict[str, Any], seconds: float, reused: bool) -> None:
        self.done += 1
        self.trained += not reused
        left = self.total - self.done
        elapsed = time.perf_counter() - self.start
        eta = f"ETA {duration(elapsed / self.trained * left)}" if self.trained and left else (
            "stage done" if not left else "ETA after the first trained run")
        when = "reused" if reused else duration(seconds)
        width = len(str(self.total))
        self._print(f"[{self.stage}] {self.done:>{width}}/{self.total} {name}  {headline(metrics)}  "
                    f"({when})  {eta}")
        if self._bar is not None:
            self._bar.update(1)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        took = duration(time.perf_counter() - self.start)
        self._print(f"[{self.stage}] {self.done}/{self.total} runs in {took}")

    def _print(self, line: str) -> None:
        if self._bar is not None:
            self._bar.write(line, file=self.stream)
        else:
            print(line, file=self.stream, flush=True)
