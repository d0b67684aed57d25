r"""The rate and posterior geometry of one autoencoder on a set of images.

For image b with posterior N(μ_b, diag σ_b²) over latent coordinates j = (channel c, position p) (vector
latents: one position, a channel per coordinate), all in float64 from the encoder's fp32 outputs:

* rate: KL_b = ½ Σ_j (μ² + σ² − 1 − log σ²) nats, and KL_b / (ln 2 · H · W) bits per image pixel;
  per channel (summed over positions) and per position (summed over channels), means over images;
* posterior std σ per channel and per position (means), the sorted per-coordinate profile;
* anisotropy (the paper's): Var_j log σ²_bj over all coordinates, mean over images; and across channels
  at a position, Var_c log σ²_bcp, mean over images and positions;
* active units: coordinates whose posterior mean varies over the images by more than 0.01 (Burda et al.,
  as metrics.py counts them);
* the aggregate posterior, from one sample z = μ + σ ε per image (fixed seed): per-channel mean and std
  (a diffusion model's ``latents_mean`` / ``latents_std``), LDM's single ``scale_by_std`` factor
  1 / std(z), the channel covariance's eigenvalues (positions pooled) and their participation ratio
  (Σλ)² / Σλ², and the aggregate's KL to N(0, I) under a Gaussian fit of the channel covariance
  (positions pooled): ½ (tr Σ + |m|² − C − log det Σ) per position, times the positions.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from rd_train.training.metrics import ACTIVE_UNIT_THRESHOLD


def as_spatial(t: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) for spatial latents; (B, D, 1, 1) for vector ones."""
    return t if t.dim() == 4 else t.reshape(t.shape[0], -1, 1, 1)


def posterior_statistics(mu: torch.Tensor, logvar: torch.Tensor, image_pixels: int,
                         seed: int = 0) -> dict[str, Any]:
    mu, logvar = as_spatial(mu).double(), as_spatial(logvar).double()
    b, c, h, w = mu.shape
    var = logvar.exp()
    kl_map = 0.5 * (mu.pow(2) + var - 1 - logvar)
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
        "anisotropy": float(logvar.flatten(1).var(1, unbiased=False).mean()),
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
    from rd_train.training.metrics import psnr

    out: dict[str, Any] = {"psnr_db": float(psnr(x, x_hat).double().mean())}
    if feature_distance is not None:
        out["vgg16_hed_distance"] = float(feature_distance.double().mean())
    return out


def summarise_weights(weights: torch.Tensor) -> list[float]:
    """Per channel (or coordinate) mean over the images of effective distortion weights (B, C)."""
    return np.asarray(weights.detach().double().mean(0).cpu()).tolist()
