r"""Latent metrics, written as JSON per run.

Per-sample posterior anisotropy (spec eq. 7 / Definition 38): for a diagonal posterior with
log-variances ℓ_j over all latent coordinates j (vector or spatial latents alike),

    A(x) = (1/N) Σ_j (ℓ_j - mean_j ℓ)²,

averaged over the dataset. Also: the mean per-sample KL (nats) and its variance part, the sorted
mean posterior-std profile, active units (coordinates whose posterior mean varies over the data by
more than 0.01, Burda et al.) and the eigenvalues of the aggregated posterior's covariance.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from rd_theory.atomic import atomic_write_text

ACTIVE_UNIT_THRESHOLD = 0.01


def anisotropy(logvar: torch.Tensor) -> torch.Tensor:
    """Per-sample population variance of log σ² over all non-batch dimensions."""
    return logvar.float().flatten(1).var(dim=1, unbiased=False)


def kl_per_sample(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    mu, logvar = mu.float().flatten(1), logvar.float().flatten(1)
    return 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1)


def variance_kl_per_sample(logvar: torch.Tensor) -> torch.Tensor:
    lv = logvar.float().flatten(1)
    return 0.5 * (lv.exp() - 1 - lv).sum(1)


def psnr(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB for images in [-1, 1] (peak-to-peak 2)."""
    mse = (x_hat.float().clamp(-1, 1) - x.float()).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(4.0 / mse.clamp_min(1e-12))


class LatentStatistics:
    """Accumulates posterior statistics over batches on their device (no host read per batch);
    `summary()` reads them once and gives the JSON-ready dict."""

    def __init__(self) -> None:
        self.n = 0
        self.sums: dict[str, torch.Tensor] = {}
        self.distortion: dict[str, torch.Tensor] = {}
        self.std_sum: torch.Tensor | None = None
        self.mu_sum: torch.Tensor | None = None
        self.mu_outer: torch.Tensor | None = None

    @torch.no_grad()
    def update(self, mu: torch.Tensor, logvar: torch.Tensor, x: torch.Tensor, x_hat: torch.Tensor) -> None:
        flat_mu = mu.double().flatten(1)
        self.n += mu.shape[0]
        batch = {"kl": kl_per_sample(mu, logvar), "variance_kl": variance_kl_per_sample(logvar),
                 "anisotropy": anisotropy(logvar), "psnr": psnr(x, x_hat)}
        for key, values in batch.items():
            self.sums[key] = self.sums.get(key, 0.0) + values.double().sum()
        std = (0.5 * logvar.double().flatten(1)).exp().sum(0)
        self.std_sum = std if self.std_sum is None else self.std_sum + std
        self.mu_sum = flat_mu.sum(0) if self.mu_sum is None else self.mu_sum + flat_mu.sum(0)
        outer = flat_mu.T @ flat_mu
        self.mu_outer = outer if self.mu_outer is None else self.mu_outer + outer

    @torch.no_grad()
    def add(self, name: str, batch_mean: torch.Tensor, count: int) -> None:
        """Accumulate a distortion given as the batch mean over ``count`` samples."""
        self.distortion[name] = self.distortion.get(name, 0.0) + batch_mean.double() * count

    def summary(self) -> dict[str, Any]:
        if self.n == 0 or self.std_sum is None or self.mu_sum is None or self.mu_outer is None:
            raise ValueError("no batches were accumulated")
        mean_mu = self.mu_sum / self.n
        cov = self.mu_outer / self.n - torch.outer(mean_mu, mean_mu)
        spectrum = torch.linalg.eigvalsh(cov.cpu()).flip(0).clamp_min(0.0)
        std_profile = torch.sort(self.std_sum / self.n).values
        return {
            **{k: float(v) / self.n for k, v in self.sums.items()},
            "distortion": {k: float(v) / self.n for k, v in self.distortion.items()},
            "active_units": int((cov.diagonal() > ACTIVE_UNIT_THRESHOLD).sum()),
            "latent_dims": int(mean_mu.numel()),
            "std_profile_sorted": std_profile.tolist(),
            "aggregate_covariance_spectrum": spectrum.tolist(),
            "samples": self.n,
        }


def write_json(path: str | Path, data: dict[str, Any]) -> None:
    """Atomic write: a reader never sees half a file, a crash never corrupts the last good one."""
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, default=_jsonable) + "\n")


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, torch.Tensor):
        return value.tolist()
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")
