r"""Protocol v3's convergence.md: each run's drift and GECO tracking error, reported beside the verdicts and
never used to choose the runs that enter them.

Per run (a record of `rd_train.protocol.records`):

* **drift** over the last ``window`` of training, per quantity (validation KL, pixel SSE, anisotropy):
  the least-squares change of `rd_train.analysis.stationarity` relative to the window mean, and whether
  it is within that rule's tolerance (max(relative, floor)): a description of how settled the run is;
* **tracking error** of a GECO run (sweeps ``geco`` and ``length``): its evaluated KL (EMA weights,
  held-out images: what the tables report) against its rate target, K / R* − 1, and whether it is within
  ``tolerance`` (3 % in protocol v3). A run's own ``geco_tracking_error`` is used when it has one.

Per (architecture, sweep, family): the runs, how many drift beyond the window rule, the median relative
anisotropy drift, and for GECO the runs within the tracking tolerance and the worst error.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from rd_train.analysis.stationarity import QUANTITIES, WindowRule, stationarity

TRACKED = ("geco", "length")


@dataclass(frozen=True)
class RunDiagnostics:
    path: str
    identity: dict[str, Any]
    relative_drifts: tuple[float, ...]  # per QUANTITIES, drift / |window mean|; empty if too few points
    settled: bool  # every drift within the window rule's tolerance
    tracking_error: float | None  # K / R* − 1 of a GECO run, else None


def tracking_error(record: dict[str, Any]) -> float | None:
    """K / R* − 1 of a GECO run (its own ``geco_tracking_error`` when it has one); None for other runs."""
    metrics, identity = record["metrics"], record["identity"]
    if identity["sweep"] not in TRACKED:
        return None
    own = metrics.get("geco_tracking_error")
    if isinstance(own, int | float):
        return float(own)
    return float(metrics["kl"]) / float(identity["target"]) - 1


def run_diagnostics(record: dict[str, Any], rule: WindowRule) -> RunDiagnostics:
    window = stationarity(record["metrics"], rule)
    relative = tuple(d / abs(m) if m else math.nan for d, m in zip(window.drifts, window.means, strict=True))
    return RunDiagnostics(record["path"], record["identity"], relative, window.passed, tracking_error(record))


def _percent(value: float | None) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value:+.1%}"


def document(records: list[dict[str, Any]], rule: WindowRule, tolerance: float = 0.03) -> str:
    """convergence.md: the per-group summary first, then every run."""
    runs = [run_diagnostics(r, rule) for r in records]
    groups: dict[tuple[str, str, str], list[RunDiagnostics]] = defaultdict(list)
    for d in runs:
        groups[(d.identity["architecture"], d.identity["sweep"], d.identity["family"])].append(d)
    lines = [
        "# Convergence and rate tracking (diagnostics)", "",
        f"Reported beside the verdicts, never a filter: every run enters claims.md. Drift: the "
        f"least-squares change over the last {rule.window:.0%} of training relative to the window mean "
        f"(`rd_train.analysis.stationarity`; \"beyond the rule\": more than max({rule.relative:.0%}, a "
        f"floor)). Tracking: a GECO run's evaluated KL against its target, within {tolerance:.0%} as "
        "protocol v3 asks.",
        "", "| architecture | sweep | family | runs | drift beyond the rule | median anisotropy drift | "
        f"GECO within {tolerance:.0%} | worst tracking error |", "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for (architecture, sweep, family), members in sorted(groups.items()):
        drifts = [d.relative_drifts[2] for d in members if d.relative_drifts]
        median = statistics.median(drifts) if drifts else math.nan
        errors = [d.tracking_error for d in members if d.tracking_error is not None]
        within = f"{sum(abs(e) <= tolerance for e in errors)} of {len(errors)}" if errors else "–"
        worst = max(errors, key=abs) if errors else None
        unsettled = sum(not d.settled for d in members)
        lines.append(f"| {architecture} | {sweep} | {family} | {len(members)} | {unsettled} | "
                     f"{_percent(median)} | {within} | {_percent(worst)} |")
    lines += ["", "## Every run", "", "| run | " + " | ".join(f"{q} drift" for q in QUANTITIES)
              + " | within the rule | tracking error |", "|---|---:|---:|---:|---|---:|"]
    for d in sorted(runs, key=lambda d: d.path):
        cells = [_percent(v) for v in d.relative_drifts] or ["–"] * len(QUANTITIES)
        lines.append(f"| {d.path} | {' | '.join(cells)} | {'yes' if d.settled else 'no'} | "
                     f"{_percent(d.tracking_error)} |")
    return "\n".join(lines) + "\n"
