r"""An offline perceptual distance: features of a conv net trained on the embedded data itself.

When no pretrained backbone (LPIPS' VGG, DINOv2) is on the machine, the default profile still needs
a *neural feature* distortion. This one is honest about what it is, and every table names it
"learned patch features (trained on embedded data)", never LPIPS.

Network: the VGG-shaped `rd_theory.networks.vgg_style_features` (3x3 conv + ReLU stages), trained
to tell which source photograph a crop comes from (cross-entropy on global-average-pooled features).
That task needs texture, colour and structure, so the stages learn image features without labels
beyond what the dataset already has. Distance, LPIPS-style without learned heads: at each stage,
unit-normalise every spatial position's feature vector, take the squared difference, average over
positions, and sum over stages:

    d(x, x̂) = Σ_s mean_{h,w} || f̂_s(x)[:, h, w] - f̂_s(x̂)[:, h, w] ||²,    f̂ = f / ||f||_channels
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from rd_theory.atomic import atomic_write
from rd_theory.networks import vgg_style_features
from torch import nn

from rd_train.losses.perceptual import MissingWeightsError

NAME = "learned patch features (trained on embedded data)"
STAGE_CHANNELS = (16, 32, 64)


def train_feature_network(out: str | Path, image_size: int = 32, n_train: int = 4096, steps: int = 600,
                          seed: int = 0) -> dict[str, Any]:
    """Train the feature net on embedded crops labelled by source photograph; save it atomically."""
    from rd_train.data import TRAIN_PHOTOS, build_labelled

    torch.manual_seed(seed)
    crops, labels = build_labelled(TRAIN_PHOTOS, n_train, image_size, seed + 101)
    held_crops, held_labels = build_labelled(TRAIN_PHOTOS, 512, image_size, seed + 202)
    images = crops.float() / 127.5 - 1
    features = vgg_style_features(3, STAGE_CHANNELS)
    head = nn.Linear(STAGE_CHANNELS[-1], len(TRAIN_PHOTOS))
    params = list(features.parameters()) + list(head.parameters())
    optimiser = torch.optim.Adam(params, lr=2e-3)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(0, n_train, (64,), generator=g)
        logits = head(features(images[idx]).mean(dim=(2, 3)))
        loss = nn.functional.cross_entropy(logits, labels[idx])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        held = head(features(held_crops.float() / 127.5 - 1).mean(dim=(2, 3)))
        accuracy = float((held.argmax(1) == held_labels).float().mean())
    record = {"state_dict": features.state_dict(), "stage_channels": list(STAGE_CHANNELS),
              "heldout_accuracy": accuracy, "chance_accuracy": 1 / len(TRAIN_PHOTOS),
              "steps": steps, "image_size": image_size, "seed": seed, "name": NAME}
    atomic_write(out, lambda tmp: torch.save(record, tmp))
    return {k: v for k, v in record.items() if k != "state_dict"}


class LearnedFeatureLoss(nn.Module):
    def __init__(self, weights_path: str | None) -> None:
        super().__init__()
        if not weights_path or not Path(weights_path).is_file():
            raise MissingWeightsError(
                f"learned feature network {weights_path!r} not found; train it with "
                "`rd-train train-features --out <path>` and set loss.weights_path to that file")
        record = torch.load(weights_path, map_location="cpu", weights_only=True)
        self.features = vgg_style_features(3, tuple(record["stage_channels"]))
        self.features.load_state_dict(record["state_dict"])
        self.features.eval().requires_grad_(False)

    def stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for stage in self.features:
            x = stage(x)
            out.append(nn.functional.normalize(x, dim=1, eps=1e-8))
        return out

    def forward(self, x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            target = self.stages(x.float())
        pred = self.stages(x_hat.float())
        per_stage = [(p - t).pow(2).sum(1).mean() for p, t in zip(pred, target, strict=True)]
        return torch.stack(per_stage).sum()
