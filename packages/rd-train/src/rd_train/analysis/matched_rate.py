r"""A quantity at a matched rate, read off a fixed-β sweep: the second estimate beside GECO.

For one (loss family, λ, seed), the fixed-β runs trace points (K_j, v_j): achieved validation KL and a
posterior statistic (anisotropy). Sorted by K, v is interpolated as a function of log K with a
monotone piecewise-cubic Hermite interpolant (PCHIP, Fritsch & Carlson 1980), which reproduces the
points, never overshoots between them, and preserves monotone stretches of the data:

    value_at_rate(K, v, R*) = PCHIP_{(log K_j, v_j)}(log R*)

A target outside [min K, max K] is an extrapolation, which this refuses: the β grid has to be wide
enough that the rate targets lie inside every curve. Log K because β acts multiplicatively on the
rate (points of a log-spaced β grid are about evenly spaced in log K).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.interpolate import PchipInterpolator


def value_at_rate(kl: Sequence[float], values: Sequence[float], target: float) -> float:
    """The value at KL = ``target`` by PCHIP in log KL over the points sorted by KL."""
    return float(_curve(kl, values, target)(np.log(target)))


def _curve(kl: Sequence[float], values: Sequence[float], target: float) -> PchipInterpolator:
    """The PCHIP interpolant in log KL, after checking the points and that ``target`` lies inside them."""
    k = np.asarray(kl, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    if k.ndim != 1 or k.shape != v.shape:
        raise ValueError(f"kl and values must be 1-D of one length, got shapes {k.shape} and {v.shape}")
    if k.size < 2:
        raise ValueError(f"need at least two (kl, value) points to interpolate, got {k.size}")
    if not (np.all(np.isfinite(k)) and np.all(np.isfinite(v)) and np.all(k > 0)):
        raise ValueError("kl must be finite and > 0 and values finite")
    order = np.argsort(k, kind="stable")
    k, v = k[order], v[order]
    if np.any(np.diff(k) <= 0):
        raise ValueError(
            f"two points share the KL {k[np.argmin(np.diff(k))]:.6g}: the curve is not a function of KL"
        )
    if not k[0] <= target <= k[-1]:
        raise ValueError(
            f"target rate {target:g} nats is outside the range of kl [{k[0]:.4g}, {k[-1]:.4g}] nats: "
            "widen the β grid so that every target lies inside it"
        )
    return PchipInterpolator(np.log(k), v)


def slope_at_rate(kl: Sequence[float], values: Sequence[float], target: float) -> float:
    """d value / d log KL at ``target`` from the same PCHIP curve as `value_at_rate` (its derivative):
    how much a value read at a slightly different rate must be moved to stand at the target."""
    return float(_curve(kl, values, target).derivative()(np.log(target)))


def corrected_to_rate(value: float, kl: float, target: float, slope: float) -> float:
    """A value measured at validation KL ``kl`` moved to ``target`` along the local slope in log KL
    (first order): value + slope · (log target − log kl)."""
    return float(value + slope * (np.log(target) - np.log(kl)))
