"""Encode a set of images with one autoencoder and measure it: batches sized to memory, a progress bar,
the device and precision asked for (bf16 autocast only for the networks; every statistic in float64
from fp32 posterior parameters, as in training's evaluations)."""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from rd_train.errors import ConfigError
from rd_train.inspection.loading import Autoencoder
from rd_train.training.metrics import posterior_statistics, reconstruction_statistics

PIXELS_PER_BATCH = 2**20  # images × pixels per forward pass on a CPU (a 256 px batch of 16)


@dataclass(frozen=True)
class Options:
    device: str = "auto"  # auto | cpu | cuda
    precision: str = "32-true"  # exact by default (a measuring tool); auto | bf16-mixed approximate
    weight_images: int = 4  # images for the effective distortion weights (JVPs through the decoder)
    weight_probes: int = 4  # Rademacher probes per channel (spatial latents)
    vgg_weights: bool = False  # also the weights under VGG16 (HED) features
    vgg_distance: bool = True
    seed: int = 0


def summarise_weights(weights: torch.Tensor) -> list[float]:
    """Per channel (or coordinate) mean over the images of effective distortion weights (B, C)."""
    return np.asarray(weights.detach().double().mean(0).cpu()).tolist()


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is available here; use --device cpu or auto")
    return torch.device(name)


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast for a resolved ``precision`` of bf16-mixed, else nothing."""
    if precision == "bf16-mixed":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def batch_size(images: torch.Tensor, device: torch.device) -> int:
    pixels = images.shape[-1] * images.shape[-2]
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        per_image = pixels * 3 * 4 * 400  # bytes: ~400 fp32 activations per input value
        return max(1, min(len(images), int(free / per_image)))
    return max(1, min(len(images), PIXELS_PER_BATCH // pixels))


@torch.no_grad()
def encode_all(ae: Autoencoder, images: torch.Tensor, device: torch.device, precision: str,
               feature_loss: Any | None) -> dict[str, Any]:
    """Posterior parameters of every image, the decoded means and their distances, batch by batch
    (halving the batch on a CUDA out-of-memory)."""
    from tqdm import tqdm

    size = batch_size(images, device)
    mus, logvars, recon, distances = [], [], [], []
    bar = tqdm(total=len(images), desc=f"encoding {ae.name}", unit="img", file=sys.stderr,
               disable=not sys.stderr.isatty())
    start = 0
    while start < len(images):
        x = images[start:start + size].to(device)
        try:
            with autocast(device, precision):
                mu, logvar = ae.posterior(x)
                x_hat = ae.decode(mu)
        except torch.cuda.OutOfMemoryError:
            if size == 1:
                raise
            size = max(1, size // 2)
            torch.cuda.empty_cache()
            continue
        mus.append(mu.float().cpu())
        logvars.append(logvar.float().cpu())
        recon.append(x_hat.float().clamp(-1, 1).cpu())
        if feature_loss is not None:
            distances.append(feature_loss.distance(x.float(), x_hat.float().clamp(-1, 1)).cpu())
        bar.update(len(x))
        start += len(x)
    bar.close()
    return {"mu": torch.cat(mus), "logvar": torch.cat(logvars), "x_hat": torch.cat(recon),
            "distance": torch.cat(distances) if distances else None, "batch_size": size}


def effective_weights(ae: Autoencoder, images: torch.Tensor, mu: torch.Tensor, residuals: dict[str, Any],
                      options: Options, device: torch.device) -> dict[str, list[float]]:
    """Per latent channel (spatial) or coordinate (vector): the Gauss–Newton effective distortion weight
    under each residual map, on the first ``weight_images`` images (fp32)."""
    from rd_train.mechanism.curvature import channel_weights, gauss_newton_weights

    count = min(options.weight_images, len(images))
    if count == 0:
        return {}
    x, m = images[:count].to(device), mu[:count].to(device)
    out = {}
    with torch.enable_grad():
        for name, residual in residuals.items():
            if m.dim() == 4:
                g = torch.Generator().manual_seed(options.seed)
                w = channel_weights(ae.decode, residual, x, m, probes=options.weight_probes, generator=g)
            else:
                w = gauss_newton_weights(ae.decode, residual, x, m)
            out[name] = summarise_weights(w)
    return out


def measure(ae: Autoencoder, images: torch.Tensor, options: Options) -> dict[str, Any]:
    device = pick_device(options.device)
    ae.to(device)
    feature_loss = None
    if options.vgg_distance or options.vgg_weights:
        from rd_train.training.losses.vgg16 import VGG16FeatureLoss, stages_for

        feature_loss = VGG16FeatureLoss(stages_for(None, images.shape[-1])).to(device).eval()
    from rd_train.training.precision import resolve

    precision = resolve(options.precision, device).precision  # once: it reads the CPU's flags
    encoded = encode_all(ae, images, device, precision,
                         feature_loss if options.vgg_distance else None)
    result = posterior_statistics(encoded["mu"], encoded["logvar"], images.shape[-1] * images.shape[-2],
                                  options.seed)
    result.update(reconstruction_statistics(images, encoded["x_hat"], encoded["distance"]))
    residuals: dict[str, Any] = {"pixel_sse": lambda x, x_hat: (x_hat - x).flatten(1)}
    if options.vgg_weights and feature_loss is not None:
        residuals["vgg16_hed"] = feature_loss.residual
    try:
        result["effective_weights"] = effective_weights(ae, images, encoded["mu"], residuals, options, device)
    except (RuntimeError, NotImplementedError) as error:  # an op of the decoder without forward-mode AD
        result["effective_weights"] = {}
        result["effective_weights_error"] = " ".join(str(error).split())[:300]
    result["effective_weights_images"] = min(options.weight_images, len(images))
    result["latent_is_spatial"] = encoded["mu"].dim() == 4
    result["precision"] = precision
    result["batch_size"] = encoded["batch_size"]
    result["device"] = str(device)
    return result
