"""What `rd-train inspect` reads: autoencoders from local directories and images from a folder.

An AUTOENCODER argument is either

* a diffusers ``AutoencoderKL`` directory (``config.json`` whose ``_class_name`` is ``AutoencoderKL``,
  and ``diffusion_pytorch_model.safetensors`` or ``.bin``), loaded with ``local_files_only=True``; its
  posterior is exactly ``vae.encode(x).latent_dist`` (mean, and logvar as diffusers clamps it); or
* a run directory of this project (``config.json`` and ``checkpoints/last.ckpt``), loaded with
  ``weights_only=True``, its BatchNorm statistics recalibrated on its own training images as every
  evaluation of a run does (module.py), so its numbers are the run's.

Images: a folder searched recursively for common formats, each center-cropped to a square and resized
to ``size`` (bicubic, antialiased), to [-1, 1]; or ``embedded``, the validation photographs of the
project's embedded dataset cropped at ``size``. Every mistake is a `UserError` naming the path.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from rd_train.errors import CheckpointError, ConfigError, MissingDataError, MissingWeightsError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
DIFFUSERS_WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin",
                     "diffusion_pytorch_model.fp16.safetensors", "diffusion_pytorch_model.fp16.bin")


@dataclass
class Autoencoder:
    """One inspected autoencoder: ``posterior(x) -> (mean, logvar)`` and ``decode(z) -> x̂``, both on
    images in [-1, 1]; ``config`` holds what a diffusion model on its latents would read from it."""

    name: str
    kind: str  # "diffusers" or "run"
    path: Path
    module: Any
    config: dict[str, Any] = field(default_factory=dict)
    run: Any = None  # a run of this project: its `rd_train.training.run.TrainedRun` (data included)

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.kind == "diffusers":
            dist = self.module.encode(x).latent_dist
            return dist.mean, dist.logvar
        return self.module.model.encode(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        if self.kind == "diffusers":
            return self.module.decode(z).sample
        return self.module.model.decode(z)

    def to(self, device: torch.device) -> Autoencoder:
        self.module.to(device)
        return self


def load_autoencoder(path: str | Path) -> Autoencoder:
    path = Path(path)
    if not path.is_dir():
        raise MissingDataError(f"{path}: not a directory; give a diffusers AutoencoderKL directory "
                               "(config.json + weights) or a run directory of this project")
    config_path = path / "config.json"
    if not config_path.is_file():
        raise MissingDataError(f"{path}: no config.json; a diffusers AutoencoderKL directory has one "
                               "(download the model's files beforehand), and so does every run directory")
    try:
        config = json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ConfigError(f"{config_path} is not valid JSON") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{config_path}: expected a JSON object")
    if "_class_name" in config:
        return _load_diffusers(path, config)
    if "model" in config and "data" in config:
        return _load_run(path)
    raise ConfigError(f"{config_path} is neither a diffusers config (no _class_name) nor a run's config: "
                      "point to an AutoencoderKL directory or a run directory")


def _load_diffusers(path: Path, config: dict[str, Any]) -> Autoencoder:
    if config["_class_name"] != "AutoencoderKL":
        raise ConfigError(f"{path / 'config.json'}: _class_name is {config['_class_name']!r}, not "
                          "'AutoencoderKL'; inspect reads KL autoencoders (e.g. the vae/ folder of a "
                          "Stable Diffusion checkpoint)")
    weights = [name for name in DIFFUSERS_WEIGHTS if (path / name).is_file()]
    if not weights:
        raise MissingWeightsError(f"{path}: no weights ({' or '.join(DIFFUSERS_WEIGHTS[:2])}); copy the "
                                  "model's weights file next to its config.json. Nothing is downloaded.")
    from diffusers import AutoencoderKL

    variant = "fp16" if ".fp16." in weights[0] else None
    vae = AutoencoderKL.from_pretrained(path, local_files_only=True, variant=variant,
                                        torch_dtype=torch.float32)
    vae.eval()
    keys = ("scaling_factor", "shift_factor", "latents_mean", "latents_std")
    return Autoencoder(path.name, "diffusers", path, vae, {k: config.get(k) for k in keys})


def _load_run(path: Path) -> Autoencoder:
    from rd_train.training.run import load_trained

    if not (path / "checkpoints" / "last.ckpt").is_file():
        raise CheckpointError(f"{path}: a run directory without checkpoints/last.ckpt; train it first "
                              f"(rd-train fit --set out_dir={path})")
    run = load_trained(path)  # the weights its metrics were measured on, BatchNorm recalibrated
    return Autoencoder(path.name, "run", path, run.module, {"image_size": run.config.data.image_size}, run)


def find_images(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def load_images(source: str, size: int, limit: int | None = None) -> tuple[torch.Tensor, list[str]]:
    """(N, 3, size, size) in [-1, 1] and the images' names."""
    if size < 8:
        raise ConfigError(f"--size {size}: give at least 8 pixels")
    if source == "embedded":
        from rd_train.training.data import VAL_PHOTOS, build_embedded

        n = limit or 64
        images = build_embedded(VAL_PHOTOS, n, size, seed=0).float() / 127.5 - 1
        return images, [f"embedded-val-{i}" for i in range(n)]
    root = Path(source)
    if not root.is_dir():
        raise MissingDataError(f"--images {root}: not a directory (give a folder of images, or 'embedded')")
    paths = find_images(root)
    if not paths:
        kinds = ", ".join(IMAGE_SUFFIXES)
        raise MissingDataError(f"--images {root}: no image files ({kinds}) in it or below")
    from PIL import Image, UnidentifiedImageError

    tensors: list[torch.Tensor] = []
    names: list[str] = []
    for path in paths:
        if limit is not None and len(tensors) >= limit:
            break
        try:
            with Image.open(path) as opened:
                image = opened.convert("RGB")
        except (UnidentifiedImageError, OSError):
            continue  # not an image after all; the count below says if none was
        if min(image.size) < size:
            raise ConfigError(f"{path}: {image.size[0]}x{image.size[1]} is smaller than --size {size}; "
                              "lower --size or remove the image (images are never upscaled)")
        side = min(image.size)
        left, top = (image.size[0] - side) // 2, (image.size[1] - side) // 2
        square = image.crop((left, top, left + side, top + side))
        image = square.resize((size, size), Image.Resampling.BICUBIC, reducing_gap=None)
        array = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8).view(size, size, 3)
        tensors.append(array.permute(2, 0, 1).float() / 127.5 - 1)
        names.append(str(path.relative_to(root)))
    if not tensors:
        raise MissingDataError(f"--images {root}: none of its {len(paths)} image files could be read")
    return torch.stack(tensors), names
