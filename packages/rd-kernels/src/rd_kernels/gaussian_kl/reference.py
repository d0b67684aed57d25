r"""PyTorch reference (and CPU path) for the diagonal-Gaussian KL, sample and posterior statistics.

Per sample b, over all latent coordinates j (every non-batch dimension):

    KL_b      = ½ Σ_j (μ_j² + exp(ℓ_j) - 1 - ℓ_j),      ℓ = log σ²       (nats)
    varKL_b   = ½ Σ_j (exp(ℓ_j) - 1 - ℓ_j)                              (the variance part)
    A_b       = (1/N) Σ_j (ℓ_j - mean_j ℓ)²                             (population variance of ℓ)
    z         = μ + exp(ℓ / 2) ⊙ ε

Arithmetic in fp32 (fp64 for fp64 inputs) whatever the input dtype; z returns in the input dtype.
"""

from __future__ import annotations

import torch


def _compute_dtype(t: torch.Tensor) -> torch.dtype:
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    dtype = _compute_dtype(mu)
    m, lv = mu.to(dtype), logvar.to(dtype)
    return 0.5 * (m * m + torch.exp(lv) - 1.0 - lv).flatten(1).sum(dim=1)


def variance_kl(logvar: torch.Tensor) -> torch.Tensor:
    lv = logvar.to(_compute_dtype(logvar))
    return 0.5 * (torch.exp(lv) - 1.0 - lv).flatten(1).sum(dim=1)


def anisotropy(logvar: torch.Tensor) -> torch.Tensor:
    lv = logvar.to(_compute_dtype(logvar)).flatten(1)
    return lv.var(dim=1, unbiased=False)


def sample(mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    dtype = _compute_dtype(mu)
    z = mu.to(dtype) + torch.exp(0.5 * logvar.to(dtype)) * eps.to(dtype)
    return z.to(mu.dtype)
