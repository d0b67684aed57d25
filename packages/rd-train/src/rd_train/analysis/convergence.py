r"""Convergence rules, fixed in ``params.yaml`` (section ``rules``) before the sweep runs.

A run passes when, over the last ``window`` fraction of its training (default the last 20 %),

    |V(T) - V(T₀)| / |V(T)| <= max_relative_change

for each validation quantity V the claims rest on: KL (the rate), pixel SSE (the distortion) and the
mean per-sample anisotropy (the posterior shape the matched-rate claim is about); T is the final step,
T₀ the last validation at or before (1 - window)·T, V(T) the final evaluation. A GECO run must also end
with its training-KL EMA (the rate GECO controls) within ``geco_tolerance`` of the target:
|K̄_T - R*| / R* <= geco_tolerance. Under protocol v3 the verdict is a diagnostic shown beside each run
(the effective-weights tables; convergence.md reports the window rule's drift): every run counts in every
claim, and nothing is re-run or re-tuned because of a verdict.

That is the two-point rule (``method: two_point``). With ``method: window`` (params.yaml ``rules``) the
stationarity test is instead the window rule of `rd_train.analysis.stationarity` (params.yaml
``stationarity``): a least-squares drift over the window's validations within max(a relative tolerance,
a floor in the quantity's units), so no run passes or fails by the phase of an oscillation. The
two-point changes are still computed and shown, and the GECO tolerance applies either way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from rd_train.errors import ParamsError


@dataclass(frozen=True)
class Rules:
    window: float = 0.2
    max_relative_change: float = 0.05
    geco_tolerance: float = 0.05
    alpha: float = 0.05
    confidence: float = 0.95
    method: str = "two_point"  # or "window": the stationarity rule of params.yaml `stationarity`

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> Rules:
        section = params.get("rules")
        if not isinstance(section, dict):
            raise ParamsError(
                "no `rules` section: the convergence and test rules are fixed there before the sweep "
                "runs (see params.yaml)"
            )
        unknown = sorted(set(section) - set(cls.__dataclass_fields__))
        if unknown:
            raise ParamsError(
                f"rules: unknown key(s) {unknown}; valid: {sorted(cls.__dataclass_fields__)}"
            )
        method = str(section.get("method", "two_point"))
        if method not in ("two_point", "window"):
            raise ParamsError(f"rules.method must be 'two_point' or 'window', got {method!r}")
        rules = cls(**{k: float(v) for k, v in section.items() if k != "method"}, method=method)
        for name in ("window", "alpha"):
            if not 0 < getattr(rules, name) < 1:
                raise ParamsError(f"rules.{name} must be in (0, 1), got {getattr(rules, name)}")
        if not 0 < rules.confidence < 1 or rules.max_relative_change <= 0 or rules.geco_tolerance <= 0:
            raise ParamsError("rules: confidence in (0, 1), max_relative_change and geco_tolerance > 0")
        return rules


@dataclass(frozen=True)
class Convergence:
    kl_change: float  # relative change of validation KL over the window
    pixel_change: float
    anisotropy_change: float
    geco_error: float | None  # |K̄_T - R*| / R*, GECO runs only
    window_start: int | None  # step of T₀
    passed: bool
    reason: str  # empty when passed


QUANTITIES = (("validation KL", 1), ("validation pixel SSE", 2), ("validation anisotropy", 3))


def check(metrics: dict[str, Any], rules: Rules, window_rule: Any = None) -> Convergence:
    """Apply the rules to one run's ``metrics.json``; ``window_rule`` (a `WindowRule`) is required
    when ``rules.method`` is "window"."""
    steps = int(metrics["steps"])
    final = [float(metrics["kl"]), float(metrics["distortion"]["pixel_sse"]), float(metrics["anisotropy"])]
    start = (1 - rules.window) * steps
    earlier = [row for row in metrics.get("validation_history", []) if row[0] <= start]
    reasons = []
    changes = [math.nan] * 3
    window_start: int | None = None
    if earlier:
        row = earlier[-1]
        window_start = int(row[0])
        for k, (name, column) in enumerate(QUANTITIES):
            if column >= len(row):
                reasons.append(f"no {name} in the history (run trained before it was recorded)")
                continue
            changes[k] = abs(final[k] - row[column]) / abs(final[k]) if final[k] else math.inf
            if rules.method == "two_point" and not changes[k] <= rules.max_relative_change:
                reasons.append(f"{name} moved {changes[k]:.1%} in the last {rules.window:.0%}")
    elif rules.method == "two_point":
        reasons.append(f"no validation at or before step {start:.0f}")
    if rules.method == "window":
        from rd_train.analysis.stationarity import stationarity

        if window_rule is None:
            raise ValueError("rules.method is 'window': pass the WindowRule (params.yaml `stationarity`)")
        verdict = stationarity(metrics, window_rule)
        if not verdict.passed:
            reasons.append(verdict.reason)
    geco_error = None
    target = metrics["config"]["rate"].get("target")
    if metrics["config"]["rate"]["mode"] == "geco":
        geco_error = abs(float(metrics["geco_training_kl_ema"]) - target) / target
        if not geco_error <= rules.geco_tolerance:
            reasons.append(f"training KL {geco_error:.1%} off the GECO target")
    return Convergence(changes[0], changes[1], changes[2], geco_error, window_start, not reasons,
                       "; ".join(reasons))
