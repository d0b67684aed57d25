r"""The posterior statistics of the project, in one place: what a run's evaluation writes into
``metrics.json`` (`LatentStatistics`, streamed over batches) and what `rd-train inspect` and the
diffusability study measure on a set of images (`posterior_statistics`, one pass in float64). Both use
the same per-sample quantities below, so the three readers cannot drift apart.

For a diagonal posterior N(μ_b, diag σ_b²) of image b over latent coordinates j (vector latents: one
coordinate per dimension; spatial latents: j = (channel c, position p)), with ℓ = log σ²:

* KL_b = ½ Σ_j (μ² + σ² − 1 − ℓ) nats (`kl_per_sample`), and its variance part ½ Σ_j (σ² − 1 − ℓ);
* the anisotropy (spec eq. 7 / Definition 38): A_b = (1/N) Σ_j (ℓ_j − mean_j ℓ)², the population variance
  of ℓ over all coordinates, averaged over images; for spatial latents also Var_c ℓ_bcp, averaged over
  images and positions;
* active units: coordinates whose posterior mean varies over the images by more than 0.01 (Burda et al.);
* the sorted mean posterior-std profile; PSNR of images in [−1, 1];
* the aggregate posterior: `LatentStatistics` gives the eigenvalues of the covariance of μ over the data;
  `posterior_statistics` draws one z = μ + σ ε per image (fixed seed) and gives per-channel mean and std
  (a diffusion model's ``latents_mean`` / ``latents_std``), LDM's single ``scale_by_std`` factor
  1 / std(z), the channel covariance's eigenvalues (positions pooled) and their participation ratio
  (Σλ)² / Σλ², and its KL to N(0, I) under a Gaussian fit of the channel covariance:
  ½ (tr Σ + |m|² − C − log det Σ) per position, times the positions.

Inputs keep float64 when given it; any other dtype (fp32, bf16) is computed in fp32.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from rd_theory.atomic import atomic_write_text

ACTIVE_UNIT_THRESHOLD = 0.01


def _real(t: torch.Tensor) -> torch.Tensor:
    return t if t.dtype == torch.float64 else t.float()


def anisotropy(logvar: torch.Tensor) -> torch.Tensor:
    """Per-sample population variance of log σ² over all non-batch dimensions."""
    return _real(logvar).flatten(1).var(dim=1, unbiased=False)


def kl_elements(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """The KL to N(0, 1) of each latent coordinate, in the inputs' shape."""
    mu, logvar = _real(mu), _real(logvar)
    return 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar)


def kl_per_sample(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    return kl_elements(mu.flatten(1), logvar.flatten(1)).sum(1)


def variance_kl_per_sample(logvar: torch.Tensor) -> torch.Tensor:
    lv = _real(logvar).flatten(1)
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


def as_spatial(t: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) for spatial latents; (B, D, 1, 1) for vector ones."""
    return t if t.dim() == 4 else t.reshape(t.shape[0], -1, 1, 1)


def posterior_statistics(mu: torch.Tensor, logvar: torch.Tensor, image_pixels: int,
                         seed: int = 0) -> dict[str, Any]:
    """Every statistic of the module doc for one set of images, in float64 (JSON-ready)."""
    mu, logvar = as_spatial(mu).double(), as_spatial(logvar).double()
    b, c, h, w = mu.shape
    var = logvar.exp()
    kl_map = kl_elements(mu, logvar)
    kl_image = kl_map.sum(dim=(1, 2, 3))
    std = var.sqrt()
    per_coordinate_std = std.mean(0).flatten()
    if b > 1:
        active = mu.flatten(1).var(0, unbiased=False) > ACTIVE_UNIT_THRESHOLD
    else:
        active = torch.zeros(c * h * w, dtype=torch.bool)

    g = torch.Generator().manual_seed(seed)
    z = mu + std * torch.randn(mu.shape, generator=g, dtype=torch.float64)
    pooled = z.permute(0, 2, 3, 1).reshape(-1, c)  # every position of every image, per channel
    channel_mean = pooled.mean(0)
    channel_std = pooled.std(0, unbiased=False)
    centered = pooled - channel_mean
    covariance = centered.T @ centered / pooled.shape[0]
    eigenvalues = torch.linalg.eigvalsh(covariance).flip(0).clamp_min(0)
    _, logdet = torch.linalg.slogdet(covariance)
    aggregate_kl = 0.5 * (covariance.trace() + channel_mean.pow(2).sum() - c - logdet) * h * w
    return {
        "images": b,
        "latent_shape": [c, h, w],
        "kl_nats": float(kl_image.mean()),
        "kl_nats_per_image": kl_image.tolist(),
        "kl_bits_per_pixel": float(kl_image.mean()) / (math.log(2) * image_pixels),
        "kl_per_channel": kl_map.sum(dim=(2, 3)).mean(0).tolist(),
        "kl_per_position": kl_map.sum(1).mean(0).tolist(),
        "std_per_channel": std.mean(dim=(0, 2, 3)).tolist(),
        "std_per_position": std.mean(dim=(0, 1)).tolist(),
        "std_per_channel_map": std.mean(0).tolist(),  # (C, H, W): the std maps' figure
        "std_profile_sorted": per_coordinate_std.sort(descending=True).values.tolist(),
        "anisotropy": float(anisotropy(logvar).mean()),
        "anisotropy_across_channels": float(logvar.var(1, unbiased=False).mean()),
        "active_units": int(active.sum()),
        "latent_coordinates": c * h * w,
        "aggregate": {
            "latents_mean": channel_mean.tolist(),
            "latents_std": channel_std.tolist(),
            "scaling_factor": float(1.0 / z.flatten().std(unbiased=True)),
            "channel_covariance_eigenvalues": eigenvalues.tolist(),
            "participation_ratio": float(eigenvalues.sum() ** 2 / eigenvalues.pow(2).sum().clamp_min(1e-300)),
            "gaussian_kl_to_standard_normal": float(aggregate_kl),
        },
    }


def reconstruction_statistics(x: torch.Tensor, x_hat: torch.Tensor, feature_distance: torch.Tensor | None
                              ) -> dict[str, Any]:
    """PSNR (dB, images in [-1, 1]) of the decoded posterior means, and the VGG16 (HED) distance."""
    out: dict[str, Any] = {"psnr_db": float(psnr(x, x_hat).double().mean())}
    if feature_distance is not None:
        out["vgg16_hed_distance"] = float(feature_distance.double().mean())
    return out


def write_json(path: str | Path, data: dict[str, Any]) -> None:
    """Atomic write: a reader never sees half a file, a crash never corrupts the last good one."""
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, default=_jsonable) + "\n")


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, torch.Tensor):
        return value.tolist()
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")
