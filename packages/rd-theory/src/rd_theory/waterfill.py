r"""Gaussian reverse water-filling with per-coordinate distortion weights (spec eq. 8).

Source ``X ~ N(0, diag(σ²))``, distortion ``Σ_i w_i (x_i - x̂_i)²`` with ``w_i >= 0``. Rescaling
``Y_i = sqrt(w_i) X_i`` turns it into plain squared error on variances ``v_i = w_i σ_i²``, whose
rate-distortion function is reverse water-filling (Cover & Thomas, Thm 10.3.3):

    D_i' = min(θ, v_i),     Σ_i D_i' = D,     R(D) = Σ_i ½ log(v_i / D_i')   (nats).

Back in the original units each coordinate keeps the error variance

    D_i = D_i' / w_i = min(θ / w_i, σ_i²),

so a coordinate whose errors are expensive (large ``w_i``) gets a small error variance, i.e. more
information: the direction of the distortion sets the shape of the profile. A coordinate with
``w_i = 0`` costs nothing and is left at its prior variance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray


@dataclass(frozen=True)
class WaterfillResult:
    rate: float  # nats
    distortions: NDArray[np.float64]  # D_i: error variance per coordinate, original units
    weighted_distortions: NDArray[np.float64]  # w_i D_i, summing to the budget
    water_level: float  # θ


def reverse_waterfill(
    variances: ArrayLike, D: float, weights: ArrayLike | None = None
) -> WaterfillResult:
    """Rate and per-coordinate distortions of N(0, diag(variances)) at weighted budget ``D``."""
    var = np.asarray(variances, dtype=np.float64)
    if var.ndim != 1 or var.size == 0:
        raise ValueError(f"variances must be a non-empty 1-D array, got shape {var.shape}")
    if not np.all(np.isfinite(var)) or np.any(var <= 0):
        raise ValueError("variances must be finite and > 0")
    w = np.ones_like(var) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != var.shape:
        raise ValueError(f"weights has shape {w.shape}, variances has shape {var.shape}")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError("weights must be finite and >= 0")
    if not np.isfinite(D) or D <= 0:
        raise ValueError(f"D must be a finite budget > 0 (R(0) is infinite), got {D!r}")

    v = w * var
    water = _water_level(v[v > 0], float(D))
    weighted = np.minimum(water, v)
    with np.errstate(divide="ignore", invalid="ignore"):
        distortions = np.where(w > 0, weighted / w, var)
    active = v > water
    rate = float(0.5 * np.sum(np.log(v[active] / water)))
    return WaterfillResult(
        rate=rate, distortions=distortions, weighted_distortions=weighted, water_level=water
    )


def _water_level(v: NDArray[np.float64], budget: float) -> float:
    """θ with Σ min(θ, v_i) = budget (θ = max v when the budget covers everything)."""
    if v.size == 0 or budget >= v.sum():
        return float(v.max()) if v.size else 0.0
    v_sorted = np.sort(v)
    # With the k smallest coordinates fully "under water": budget = Σ_{i<k} v_i + (n - k) θ.
    below = np.concatenate(([0.0], np.cumsum(v_sorted)[:-1]))
    levels = (budget - below) / (v.size - np.arange(v.size))
    k = int(np.flatnonzero(levels <= v_sorted)[0])
    return float(levels[k])


def gaussian_rate_distortion(variances: ArrayLike, D: float) -> float:
    """R(D) of N(0, diag(variances)) under plain squared error, 0 beyond Σ variances."""
    var = np.asarray(variances, dtype=np.float64)
    if var.sum() <= D:
        return 0.0
    return reverse_waterfill(var, D).rate
