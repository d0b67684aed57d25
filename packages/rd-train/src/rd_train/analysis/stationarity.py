r"""A stationarity rule from a window statistic in absolute units with floors (issue 19 A), for the next
sweep; on the committed runs it is a sensitivity check beside the pre-registered two-point rule.

Over the validations in the last ``window`` fraction of training (steps t_k >= (1 − window)·T, at least
``min_points`` of them), for each quantity V (validation KL, pixel SSE, anisotropy):

    drift_V = b̂ · (t_last − t_first),   b̂ the least-squares slope of V_k on t_k,
    pass  iff  |drift_V| <= max(relative · |V̄|, floor_V),   V̄ the window mean (the run's value).

A fitted slope over every validation of the window, not the difference of two points, so a run does not
pass or fail by where an oscillation happens to be at two steps: for V = c + A sin(2πt/P + φ) over a
window of n periods the drift is at most 6A / (π n) whatever φ (tested). The floors, in the quantity's
own units, keep a run whose value is near zero from failing on a move too small to matter (relative
change of a small anisotropy); they are fixed before any run they judge (params.yaml `rules`). The rule
reads only each run's own trajectory, not λ or family, and it tolerates the same drift at every λ; its
pass rates by λ and family are still tested (claims.md), since a family can oscillate more than another.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

QUANTITIES = ("validation KL", "validation pixel SSE", "validation anisotropy")


@dataclass(frozen=True)
class WindowRule:
    window: float = 0.4
    relative: float = 0.05
    floors: tuple[float, float, float] = (0.1, 0.0, 0.02)  # KL (nats), pixel SSE, anisotropy
    min_points: int = 4

    def __post_init__(self) -> None:
        if not 0 < self.window <= 1 or self.relative < 0 or min(self.floors) < 0 or self.min_points < 3:
            raise ValueError("WindowRule: window in (0, 1], relative and floors >= 0, min_points >= 3")

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> WindowRule:
        """params.yaml ``stationarity``: window, relative, floor_kl, floor_pixel_sse, floor_anisotropy,
        min_points (defaults where absent)."""
        from rd_train.errors import ParamsError

        section = params.get("stationarity") or {}
        known = {"window", "relative", "floor_kl", "floor_pixel_sse", "floor_anisotropy", "min_points"}
        if not isinstance(section, dict) or set(section) - known:
            raise ParamsError(f"stationarity: keys must be among {sorted(known)}")
        d = cls()
        try:
            return cls(
                window=float(section.get("window", d.window)),
                relative=float(section.get("relative", d.relative)),
                floors=tuple(
                    float(section.get(k, f))
                    for k, f in zip(  # type: ignore[arg-type]
                        ("floor_kl", "floor_pixel_sse", "floor_anisotropy"), d.floors, strict=True
                    )
                ),
                min_points=int(section.get("min_points", d.min_points)),
            )
        except ValueError as error:
            raise ParamsError(f"stationarity: {error}") from None


@dataclass(frozen=True)
class Stationarity:
    drifts: tuple[float, ...]  # fitted change over the window, per quantity
    tolerances: tuple[float, ...]
    means: tuple[float, ...]  # window means: a value that does not depend on an oscillation's phase
    points: int
    passed: bool
    reason: str


def window_drift(steps: np.ndarray, values: np.ndarray) -> float:
    """Least-squares slope × the window's length."""
    t = steps - steps.mean()
    return float((t * (values - values.mean())).sum() / (t * t).sum() * (steps[-1] - steps[0]))


def stationarity(metrics: dict[str, Any], rule: WindowRule) -> Stationarity:
    """Apply the window rule to one run's ``metrics.json`` (its ``validation_history`` rows
    ``[step, KL, pixel SSE, anisotropy]``)."""
    steps_total = int(metrics["steps"])
    start = (1 - rule.window) * steps_total
    rows = [row for row in metrics.get("validation_history", []) if row[0] >= start and len(row) >= 4]
    if len(rows) < rule.min_points:
        return Stationarity(
            (),
            (),
            (),
            len(rows),
            False,
            f"{len(rows)} validations in the last {rule.window:.0%} (the rule needs {rule.min_points})",
        )
    data = np.asarray(rows, dtype=np.float64)
    steps = data[:, 0]
    drifts, tolerances, means, reasons = [], [], [], []
    for k, name in enumerate(QUANTITIES):
        values = data[:, k + 1]
        mean = float(values.mean())
        drift = window_drift(steps, values)
        tolerance = max(rule.relative * abs(mean), rule.floors[k])
        drifts.append(drift)
        tolerances.append(tolerance)
        means.append(mean)
        if not (math.isfinite(drift) and abs(drift) <= tolerance):
            reasons.append(
                f"{name} drifted {drift:+.3g} over the last {rule.window:.0%} (tolerance {tolerance:.3g})"
            )
    return Stationarity(
        tuple(drifts), tuple(tolerances), tuple(means), len(rows), not reasons, "; ".join(reasons)
    )
