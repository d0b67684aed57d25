"""Input checks shared by the discrete rate-distortion tools.

Every public solver validates at the boundary so that a wrong input fails with a message naming
the argument, instead of silently producing a NaN rate deep inside an iteration.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

# A probability vector may be off by rounding (e.g. built from counts / total); anything larger is
# a user error, not noise.
PROBABILITY_SUM_TOLERANCE = 1e-9


def as_distribution(p_x: ArrayLike, name: str = "p_x") -> NDArray[np.float64]:
    """Return ``p_x`` as a float64 vector after checking that it is a probability distribution."""
    p = np.asarray(p_x, dtype=np.float64)
    if p.ndim != 1 or p.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D probability vector, got shape {p.shape}")
    if not np.all(np.isfinite(p)):
        raise ValueError(f"{name} contains non-finite entries: {p[~np.isfinite(p)][:5]}")
    if np.any(p < 0):
        raise ValueError(f"{name} has negative probabilities (min {p.min():.3g}); it must be >= 0")
    total = float(p.sum())
    if abs(total - 1.0) > PROBABILITY_SUM_TOLERANCE:
        raise ValueError(f"{name} must sum to 1, sums to {total:.12g}; normalise it first")
    return p / total


def as_distortion(dist: ArrayLike, n_symbols: int, name: str = "dist") -> NDArray[np.float64]:
    """Return ``dist`` as an ``n_symbols x m`` float64 matrix of finite, nonnegative distortions."""
    d = np.asarray(dist, dtype=np.float64)
    if d.ndim != 2:
        raise ValueError(f"{name} must be a 2-D matrix d[x, x_hat], got shape {d.shape}")
    if d.shape[0] != n_symbols:
        raise ValueError(
            f"{name} has {d.shape[0]} rows but the source has {n_symbols} symbols; "
            "rows index the source symbol x, columns the reconstruction x_hat"
        )
    if d.shape[1] == 0:
        raise ValueError(f"{name} has no reconstruction symbols (zero columns)")
    if not np.all(np.isfinite(d)):
        raise ValueError(f"{name} contains non-finite entries")
    if np.any(d < 0):
        raise ValueError(f"{name} has negative entries (min {d.min():.3g}); distortions must be >= 0")
    return d


def as_source_and_distortion(
    p_x: ArrayLike, dist: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    p = as_distribution(p_x)
    return p, as_distortion(dist, p.size)
