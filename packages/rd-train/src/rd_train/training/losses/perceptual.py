"""Perceptual distances whose backbones load only from local files: LPIPS (VGG / AlexNet) and DINOv2.

No weights are ever downloaded. LPIPS' small linear heads ship inside the ``lpips`` wheel; the
torchvision backbone (``vgg16-397923af.pth`` / ``alexnet-owt-7be5be79.pth``) is read from
``weights_path`` or the torch hub cache (``$TORCH_HOME/hub/checkpoints``). DINOv2 (timm
``vit_small_patch14_dinov2``) is read from ``weights_path`` or the HuggingFace cache. A missing file
stops at start-up with the file name, where it was looked for, and how to provide it.

DINOv2 distance: images are mapped from [-1, 1] to ImageNet normalisation and resized to a multiple
of the patch size; the token features of the chosen blocks are unit-normalised per token, and the
distance is the mean over blocks of the mean squared difference (an LPIPS-style, unlearned sum).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rd_train.errors import MissingWeightsError

TORCHVISION_FILES = {"vgg": "vgg16-397923af.pth", "alex": "alexnet-owt-7be5be79.pth"}
DINOV2_HF_DIR = "models--timm--vit_small_patch14_dinov2.lvd142m"


def torch_hub_checkpoint(filename: str) -> Path:
    home = Path(os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch"))
    return home / "hub" / "checkpoints" / filename


def find_weights(explicit: str | None, candidates: list[Path], what: str, how: str) -> Path:
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise MissingWeightsError(f"{what}: loss.weights_path={explicit} does not exist. {how}")
        return path
    for path in candidates:
        if path.is_file():
            return path
    looked = ", ".join(str(p) for p in candidates) or "(no cache locations)"
    raise MissingWeightsError(f"{what} weights not found; looked in {looked}. {how} "
                              "Nothing is downloaded at run time.")


class LPIPSLoss(nn.Module):
    """Mean LPIPS over the batch, from the ``lpips`` package with a locally loaded backbone."""

    def __init__(self, net: str = "vgg", weights_path: str | None = None) -> None:
        super().__init__()
        import lpips

        filename = TORCHVISION_FILES[net]
        path = find_weights(
            weights_path, [torch_hub_checkpoint(filename)], f"LPIPS {net} backbone ({filename})",
            f"Copy torchvision's {filename} into $TORCH_HOME/hub/checkpoints/ or set loss.weights_path.",
        )
        # pnet_rand=True builds the backbone without torchvision's download; we load it ourselves.
        self.model = lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False)
        load_backbone(self.model.net, torch.load(path, map_location="cpu", weights_only=True))
        self.model.eval().requires_grad_(False)

    def forward(self, x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
        return self.model(x_hat.float(), x.float(), normalize=False).mean()


def load_backbone(net: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Copy torchvision ``features.<i>.*`` weights into lpips' ``slice<k>.<i>.*`` modules."""
    target = {}
    for name, _ in net.named_parameters():
        _, index, param = name.split(".")
        key = f"features.{index}.{param}"
        if key not in state:
            raise MissingWeightsError(f"backbone file lacks {key}: is it the torchvision checkpoint?")
        target[name] = state[key]
    net.load_state_dict(target, strict=True)


class DINOv2Loss(nn.Module):
    """Normalised token-feature distance over chosen blocks of a timm ViT (DINOv2 by default)."""

    mean: torch.Tensor
    std: torch.Tensor
    MEAN = (0.485, 0.456, 0.406)
    STD = (0.229, 0.224, 0.225)

    def __init__(
        self,
        model_name: str = "vit_small_patch14_dinov2",
        layers: list[int] | None = None,
        weights_path: str | None = None,
        *,
        model: nn.Module | None = None,
    ) -> None:
        super().__init__()
        import timm

        if model is None:
            hf = Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")) / "hub"
            snapshots = sorted((hf / DINOV2_HF_DIR / "snapshots").glob("*/model.safetensors"))
            how = "Place timm's model.safetensors in the HuggingFace cache or set loss.weights_path."
            path = find_weights(weights_path, snapshots, f"DINOv2 ({model_name})", how)
            model = timm.create_model(model_name, pretrained=False, dynamic_img_size=True)
            model.load_state_dict(_read_state(path), strict=True)
        vit: Any = model.eval().requires_grad_(False)
        self.model = vit
        self.layers = layers if layers is not None else [len(vit.blocks) - 1]
        self.patch = int(vit.patch_embed.patch_size[0])
        self.register_buffer("mean", torch.tensor(self.MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(self.STD).view(1, 3, 1, 1))

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = ((x.float() + 1) / 2 - self.mean) / self.std
        size = max(self.patch, round(x.shape[-1] / self.patch) * self.patch)
        if x.shape[-1] != size or x.shape[-2] != size:
            x = nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        vit: Any = self.model
        feats = vit.forward_intermediates(x, indices=self.layers, intermediates_only=True)
        return [nn.functional.normalize(f.flatten(2), dim=1) for f in feats]

    def forward(self, x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            target = self.features(x)
        pred = self.features(x_hat)
        per_layer = [(p - t).pow(2).sum(1).mean() for p, t in zip(pred, target, strict=True)]
        return torch.stack(per_layer).mean()


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    return torch.load(path, map_location="cpu", weights_only=True)
