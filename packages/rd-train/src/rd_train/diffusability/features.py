r"""Image feature spaces for KID and precision / recall.

* ``random`` (the primary space): a randomly initialised VGG-style conv net, fixed by its seed — three
  stages of two 3×3 convs (ReLU; the second of each stage strided) of widths w, 2w, 4w; the features are
  every stage's global average, concatenated. No compared model was trained with it or against it, so no
  loss family is favoured by construction. Random conv embeddings keep much of what a pretrained one
  tells apart on small images (Naeem et al. 2020, "Reliable fidelity and diversity metrics", §5), and
  there is no ImageNet Inception offline here anyway.
* ``vgg16_hed``: the VGG16 (HED) blocks whose receptive field fits the image (`rd_theory.vgg16`), global
  averages of each block's last ReLU. The perceptual family (λ > 0) trained on these very features, so
  this space is reported second, never alone.

Features are centred on the held-out real images' mean and divided by one scale, the root mean variance
of their coordinates (the same images for every run, so the same affine map for every run): the kernel
of KID sees every space on a common scale, and a coordinate that is nearly constant on real images (a
ReLU that rarely fires) is not blown up, as a per-coordinate standardisation would.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from rd_train.params.sections import SPACES


class RandomConvFeatures(nn.Module):
    def __init__(self, width: int = 32, seed: int = 0) -> None:
        super().__init__()
        generator_state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        stages, channels = [], 3
        for k in range(3):
            out = width * 2**k
            stages.append(
                nn.Sequential(
                    nn.Conv2d(channels, out, 3, padding=1),
                    nn.ReLU(),
                    nn.Conv2d(out, out, 3, stride=2, padding=1),
                    nn.ReLU(),
                )
            )
            channels = out
        self.stages = nn.ModuleList(stages)
        torch.random.set_rng_state(generator_state)  # building the probe leaves the caller's draws alone
        self.requires_grad_(False).eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = []
        for stage in self.stages:
            x = stage(x)
            pooled.append(x.mean(dim=(2, 3)))
        return torch.cat(pooled, dim=1)


class PooledVGG16(nn.Module):
    def __init__(self, image_size: int) -> None:
        super().__init__()
        from rd_theory.vgg16 import default_blocks

        from rd_train.training.losses import vgg16_hed_features

        self.net = vgg16_hed_features(None, default_blocks(image_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([f.mean(dim=(2, 3)) for f in self.net(x)], dim=1)


def build_space(name: str, image_size: int, width: int = 32, seed: int = 0) -> nn.Module:
    if name == "random":
        return RandomConvFeatures(width, seed)
    if name == "vgg16_hed":
        return PooledVGG16(image_size)
    raise ValueError(f"unknown feature space {name!r}; known: {SPACES}")


@torch.no_grad()
def embed(net: nn.Module, images: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """Features of images in [-1, 1] (decoder outputs are clamped to that range first), float64."""
    rows = [
        net(images[i : i + batch].float().clamp(-1, 1)).double() for i in range(0, images.shape[0], batch)
    ]
    return torch.cat(rows)


def standardiser(reference: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """Centre on ``reference``'s mean, divide by its root mean coordinate variance (module docstring)."""
    mean = reference.mean(0)
    scale = float(reference.var(0).mean().sqrt())
    scale = scale if scale > 0 else 1.0
    return lambda f: (f - mean) / scale
