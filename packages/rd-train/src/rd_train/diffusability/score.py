r"""One run's diffusability: encode, standardise, fit the sampler, draw, decode, score against floors.

1. Every training image with and without a horizontal flip (the augmentation the VAE trained with) is
   encoded to one posterior sample z = μ + σ ε (fixed seed); so are the held-out (validation) images.
2. Latents are standardised per coordinate (per channel for spatial latents, as diffusers'
   ``latents_mean`` / ``latents_std``) with the training latents' statistics; LDM's single global
   ``scaling_factor`` 1 / std(z) is reported beside.
3. The rectified flow of `flow.py` is fitted to the standardised training latents with the fixed budget;
   ``samples`` latents are drawn with Heun's method and the EMA weights.
4. Scores against the held-out reference:
   - latent space (standardised): sliced W₂ and RBF MMD² of (a) the sampler, (b) a Gaussian with the
     training latents' mean and full covariance (the baseline a sampler must beat), (c) training latents
     themselves (the floor: what a perfect sampler of the training distribution scores at this size);
     and the sampler's held-out flow-matching loss (how learnable the latents are at the budget);
   - image space, in each feature space: KID and k-NN precision / recall of the decoded samples, of the
     decoded Gaussian samples, of the VAE's reconstructions of the held-out images (decoded held-out
     posterior samples: the VAE's own floor) and of training images (the data floor, equal for all runs).
Geometry of the same latents: the run's validation anisotropy and active units (its metrics.json), and
the aggregate posterior's Gaussian KL to N(0, I) and covariance participation ratio on the training
split (`rd_train.training.metrics.posterior_statistics`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from rd_train.diffusability import metrics as m
from rd_train.diffusability.features import build_space, embed, standardiser
from rd_train.diffusability.flow import held_out_loss, sample_flow, train_flow
from rd_train.params.sections import DiffusabilityConfig


def split_images(dataset: Any, limit: int = 0) -> torch.Tensor:
    """A split's images in [-1, 1] (the embedded data's uint8 tensor is read in one go)."""
    n = len(dataset) if not limit else min(limit, len(dataset))
    images = getattr(dataset, "images", None)
    if isinstance(images, torch.Tensor) and images.dtype == torch.uint8:
        return images[:n].float() / 127.5 - 1.0
    return torch.stack([dataset[i] for i in range(n)])


def with_flips(images: torch.Tensor) -> torch.Tensor:
    return torch.cat([images, images.flip(-1)])


@torch.no_grad()
def encode(
    autoencoder: Any, images: torch.Tensor, seed: int, batch: int = 512
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(μ, log σ², one posterior sample) of every image; the sample's noise is seeded."""
    mus, logvars = [], []
    for i in range(0, images.shape[0], batch):
        mu, logvar = autoencoder.posterior(images[i : i + batch])
        mus.append(mu.float())
        logvars.append(logvar.float())
    mu, logvar = torch.cat(mus), torch.cat(logvars)
    g = torch.Generator().manual_seed(seed)
    z = mu + (0.5 * logvar).exp() * torch.randn(mu.shape, generator=g)
    return mu, logvar, z


@torch.no_grad()
def decode(autoencoder: Any, z: torch.Tensor, batch: int = 512) -> torch.Tensor:
    return torch.cat([autoencoder.decode(z[i : i + batch]).float() for i in range(0, z.shape[0], batch)])


class Standardiser:
    """Per coordinate (vector latents) or per channel (spatial latents) mean and std of training latents."""

    def __init__(self, z: torch.Tensor) -> None:
        dims = (0,) if z.dim() == 2 else (0, 2, 3)
        self.mean = z.mean(dim=dims, keepdim=True)
        self.std = z.std(dim=dims, keepdim=True).clamp_min(1e-8)
        self.scaling_factor = float(1.0 / z.flatten().std())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return (z - self.mean) / self.std

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        return z * self.std + self.mean


def gaussian_samples(z: torch.Tensor, count: int, seed: int) -> torch.Tensor:
    """Samples of the Gaussian with ``z``'s mean and full covariance (flattened coordinates)."""
    flat = z.flatten(1).double()
    mean = flat.mean(0)
    cov = torch.cov(flat.T).reshape(flat.shape[1], flat.shape[1])
    eye = torch.eye(cov.shape[0], dtype=torch.float64)
    chol = torch.linalg.cholesky(cov + 1e-9 * cov.diagonal().mean() * eye)
    g = torch.Generator().manual_seed(seed)
    draws = mean + torch.randn(count, flat.shape[1], generator=g, dtype=torch.float64) @ chol.T
    return draws.float().reshape(count, *z.shape[1:])


def subset(x: torch.Tensor, count: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return x[torch.randperm(x.shape[0], generator=g)[:count]]


def latent_scores(
    candidate: torch.Tensor, reference: torch.Tensor, config: DiffusabilityConfig
) -> dict[str, float]:
    a, b = candidate.flatten(1), reference.flatten(1)
    return {
        "sw": m.sliced_wasserstein(a, b, config.sw_projections, seed=config.seed),
        "mmd": m.mmd_rbf(a, b, config.mmd_bandwidths),
    }


def image_scores(
    candidate: torch.Tensor, reference: torch.Tensor, config: DiffusabilityConfig
) -> dict[str, float]:
    precision, recall = m.precision_recall(reference, candidate, config.k_nearest)
    return {
        "kid": m.kid(candidate, reference, config.kid_subsets, config.kid_subset_size, config.seed),
        "precision": precision,
        "recall": recall,
    }


def encode_grid(images: torch.Tensor) -> dict[str, Any]:
    """Images in [-1, 1] as uint8 bytes in base64 with their shape (small enough to keep in JSON)."""
    import base64

    data = ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).contiguous().numpy()
    return {"shape": list(data.shape), "uint8_base64": base64.b64encode(data.tobytes()).decode()}


def decode_grid(grid: dict[str, Any]) -> Any:
    """(N, C, H, W) uint8 array of `encode_grid`'s output."""
    import base64

    import numpy as np

    return np.frombuffer(base64.b64decode(grid["uint8_base64"]), dtype=np.uint8).reshape(grid["shape"])


def score_run(run_dir: str | Path, config: DiffusabilityConfig) -> dict[str, Any]:
    """Every number of one run (module docstring), JSON-ready; ``grid``: the first decoded samples."""
    from rd_train.inspection import load_autoencoder
    from rd_train.training.metrics import posterior_statistics

    start = time.perf_counter()
    run_dir = Path(run_dir)
    autoencoder = load_autoencoder(run_dir)  # `load_trained`: weights only, BatchNorm recalibrated
    metrics, data = autoencoder.run.metrics, autoencoder.run.data
    train = with_flips(split_images(data.train_set, config.train_images))
    held_out = with_flips(split_images(data.val_set))
    image_pixels = train.shape[-1] * train.shape[-2]

    mu, logvar, z_train = encode(autoencoder, train, config.seed)
    geometry = posterior_statistics(
        mu[: mu.shape[0] // 2], logvar[: mu.shape[0] // 2], image_pixels, config.seed
    )
    _, _, z_held = encode(autoencoder, held_out, config.seed + 1)
    scale = Standardiser(z_train)
    s_train, s_held = scale.forward(z_train), scale.forward(z_held)

    flow = train_flow(s_train, config.flow)
    count, shape = config.samples, tuple(s_train.shape[1:])
    generated = sample_flow(flow.model, count, shape, config.flow.solver_steps, seed=config.seed + 2)
    candidates = {
        "generated": generated,
        "gaussian": gaussian_samples(s_train, count, config.seed + 3),
        "data": subset(s_train, count, config.seed + 4),
    }
    latent = {name: latent_scores(z, s_held, config) for name, z in candidates.items()}

    decoded = {
        "generated": decode(autoencoder, scale.inverse(generated)),
        "gaussian": decode(autoencoder, scale.inverse(candidates["gaussian"])),
        "reconstruction": decode(autoencoder, z_held),
        "data": subset(train, count, config.seed + 5),
    }
    image: dict[str, dict[str, dict[str, float]]] = {}
    for space in config.spaces:
        net = build_space(space, train.shape[-1], config.random_width, config.seed)
        reference = embed(net, held_out)
        standard = standardiser(reference)
        reference = standard(reference)
        image[space] = {
            name: image_scores(standard(embed(net, x)), reference, config) for name, x in decoded.items()
        }
    primary = config.spaces[0]
    return {
        "run": run_dir.name,
        "train_latents": int(z_train.shape[0]),
        "held_out_latents": int(z_held.shape[0]),
        "latent_shape": list(shape),
        "scaling_factor": scale.scaling_factor,
        "geometry": {
            "anisotropy": float(metrics["anisotropy"]),
            "active_units": int(metrics["active_units"]),
            "validation_kl": float(metrics["kl"]),
            "aggregate_kl": geometry["aggregate"]["gaussian_kl_to_standard_normal"],
            "participation_ratio": geometry["aggregate"]["participation_ratio"],
            "train_anisotropy": geometry["anisotropy"],
        },
        "flow": {
            "final_train_loss": flow.final_train_loss,
            "held_out_loss": held_out_loss(flow.model, s_held),
        },
        "latent": latent,
        "image": image,
        "endpoints": {
            "latent_sw": latent["generated"]["sw"],
            "excess_kid": image[primary]["generated"]["kid"] - image[primary]["reconstruction"]["kid"],
        },
        "grid": encode_grid(decoded["generated"][: config.grid_images]),
        "reference_grid": encode_grid(held_out[: config.grid_images]),
        "seconds": time.perf_counter() - start,
    }
