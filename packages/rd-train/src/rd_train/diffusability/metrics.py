r"""Distances between two samples, in float64: latent space (sliced Wasserstein, RBF MMD) and feature
space (KID, k-NN precision / recall). Every function takes (n, d) arrays or tensors.

* Sliced Wasserstein-2: SW₂(P, Q)² = E_θ W₂²(θᵀP, θᵀQ) over directions θ uniform on the sphere, estimated
  with ``projections`` fixed random directions (seeded); each 1-d W₂² compares the two samples' quantile
  functions at ``quantiles`` evenly spaced levels (equal sizes: the sorted values). For a pure shift m,
  SW₂² = |m|² / d exactly (E (θᵀm)² = |m|²/d), and for a scale change x -> s x of N(0, I),
  SW₂² = (s − 1)² (tested).
* MMD² with a sum of Gaussian kernels k(x, y) = Σ_b exp(−|x − y|² / (2 h_b²)), unbiased U-statistic
  (Gretton et al. 2012, eq. 3). Bandwidths are fixed in advance in units of √d, the typical scale of
  distances between standardised d-dimensional latents, so runs are compared with the same kernel.
* KID (Bińkowski et al. 2018): unbiased MMD² with the cubic polynomial kernel k(x, y) = (xᵀy / d + 1)³,
  averaged over ``subsets`` random subsets of ``subset_size`` from each side (the clean-fid / torch-
  fidelity estimator); with ``subset_size`` >= both sizes, one exact evaluation on everything.
* Improved precision and recall (Kynkäänniemi et al. 2019): a sample's k-NN ball radius is its distance to
  its k-th nearest neighbour in its own set; precision = share of generated points inside some real
  ball, recall = share of real points inside some generated ball.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def _f64(x: Any) -> torch.Tensor:
    t = torch.as_tensor(x).detach().to("cpu", torch.float64)
    if t.dim() != 2:
        raise ValueError(f"expected an (n, d) array, got shape {tuple(t.shape)}")
    return t


def sliced_wasserstein(p: Any, q: Any, projections: int = 256, quantiles: int = 512, seed: int = 0) -> float:
    """SW₂ between the samples ``p`` and ``q`` (module docstring)."""
    x, y = _f64(p), _f64(q)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"dimensions differ: {x.shape[1]} vs {y.shape[1]}")
    g = torch.Generator().manual_seed(seed)
    theta = torch.randn(x.shape[1], projections, generator=g, dtype=torch.float64)
    theta /= theta.norm(dim=0, keepdim=True)
    px, py = (x @ theta).sort(0).values, (y @ theta).sort(0).values
    if px.shape[0] == py.shape[0]:
        return float((px - py).pow(2).mean().sqrt())
    levels = (torch.arange(quantiles, dtype=torch.float64) + 0.5) / quantiles
    qx, qy = torch.quantile(px, levels, dim=0), torch.quantile(py, levels, dim=0)
    return float((qx - qy).pow(2).mean().sqrt())


def _sq_distances(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (x.pow(2).sum(1, keepdim=True) + y.pow(2).sum(1) - 2 * x @ y.T).clamp_min(0)


def _unbiased_mmd2(kxx: torch.Tensor, kyy: torch.Tensor, kxy: torch.Tensor) -> float:
    n, m = kxx.shape[0], kyy.shape[0]
    if n < 2 or m < 2:
        raise ValueError("the unbiased MMD needs at least two points on each side")
    xx = (kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
    yy = (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
    return float(xx + yy - 2 * kxy.mean())


def mmd_rbf(p: Any, q: Any, bandwidths: tuple[float, ...] = (0.5, 1.0, 2.0)) -> float:
    """Unbiased MMD² with Gaussian kernels of widths ``bandwidths`` × √d (module docstring)."""
    x, y = _f64(p), _f64(q)
    scale = x.shape[1] ** 0.5
    dxx, dyy, dxy = _sq_distances(x, x), _sq_distances(y, y), _sq_distances(x, y)

    def kernel(d2: torch.Tensor) -> torch.Tensor:
        return torch.stack([(-d2 / (2 * (h * scale) ** 2)).exp() for h in bandwidths]).sum(0)

    return _unbiased_mmd2(kernel(dxx), kernel(dyy), kernel(dxy))


def kid(p: Any, q: Any, subsets: int = 100, subset_size: int = 1000, seed: int = 0) -> float:
    """Kernel Inception Distance with the cubic polynomial kernel (module docstring), in whatever
    feature space ``p`` and ``q`` live in."""
    x, y = _f64(p), _f64(q)
    d = x.shape[1]

    def kernel(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a @ b.T / d + 1) ** 3

    if subset_size >= max(x.shape[0], y.shape[0]):
        return _unbiased_mmd2(kernel(x, x), kernel(y, y), kernel(x, y))
    size = min(subset_size, x.shape[0], y.shape[0])
    g = torch.Generator().manual_seed(seed)
    values = []
    for _ in range(subsets):
        a = x[torch.randperm(x.shape[0], generator=g)[:size]]
        b = y[torch.randperm(y.shape[0], generator=g)[:size]]
        values.append(_unbiased_mmd2(kernel(a, a), kernel(b, b), kernel(a, b)))
    return float(np.mean(values))


def precision_recall(real: Any, fake: Any, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall of ``fake`` against ``real`` (module docstring)."""
    r, f = _f64(real), _f64(fake)
    if min(r.shape[0], f.shape[0]) <= k:
        raise ValueError(f"precision/recall with k = {k} needs more than {k} points on each side")

    def radii(x: torch.Tensor) -> torch.Tensor:
        d = _sq_distances(x, x)
        return d.kthvalue(k + 1, dim=1).values  # the 0 to itself is the first

    r_radii, f_radii = radii(r), radii(f)
    cross = _sq_distances(f, r)  # (n_fake, n_real)
    precision = (cross <= r_radii[None, :]).any(1).double().mean()
    recall = (f_radii[None, :] >= cross.T).any(1).double().mean()
    return float(precision), float(recall)
