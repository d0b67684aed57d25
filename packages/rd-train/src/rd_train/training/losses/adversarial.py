r"""PatchGAN adversarial loss (pix2pix NLayerDiscriminator, spec appendix B and C.5).

Discriminator (its own Adam, half the generator's learning rate, β1 = 0.5), hinge loss:

    L_D = mean relu(1 - D(x)) + mean relu(1 + D(x̂))

Generator: the score loss ``-mean D(x̂)`` (spec eq. 32) plus discriminator feature matching
``Σ_l mean (D_l(x) - D_l(x̂))²`` over the intermediate blocks (spec eq. 27), combined as one neural
term ``score + feature_matching_weight * FM`` that the balancer weighs against pixel SSE.
No pretrained weights are involved.
"""

from __future__ import annotations

import torch
from rd_theory.networks import nlayer_discriminator
from torch import nn


class PatchGANLoss(nn.Module):
    def __init__(self, channels: int = 64, n_layers: int = 3, spectral_norm: bool = False,
                 feature_matching_weight: float = 1.0) -> None:
        super().__init__()
        # Spectral norm replaces BatchNorm (the SN-GAN recipe): both constrain the same scale.
        self.discriminator = nlayer_discriminator(
            3, channels, n_layers, norm="none" if spectral_norm else "batch", spectral_norm=spectral_norm)
        self.feature_matching_weight = feature_matching_weight

    def blocks(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for block in self.discriminator:
            x = block(x)
            out.append(x)
        return out

    def discriminator_loss(self, x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
        real = self.discriminator(x.float())
        fake = self.discriminator(x_hat.detach().float())
        return torch.relu(1 - real).mean() + torch.relu(1 + fake).mean()

    def feature_matching_residual(self, x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
        """r(x, x̂) with ||r||² = feature_matching_weight · Σ_l mean (D_l(x) - D_l(x̂))² per image: the part of
        the generator loss that is a distance (the score term is not), flattened, (B, ·)."""
        with torch.no_grad():
            real = self.blocks(x.float())[:-1]
        scale = self.feature_matching_weight ** 0.5
        parts = [(scale * (f - r) / r[0].numel() ** 0.5).flatten(1)
                 for f, r in zip(self.blocks(x_hat.float())[:-1], real, strict=True)]
        return torch.cat(parts, dim=1)

    def generator_loss(self, x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            real = self.blocks(x.float())
        fake = self.blocks(x_hat.float())
        score = -fake[-1].mean()
        per_block = [(f - r).pow(2).mean() for f, r in zip(fake[:-1], real[:-1], strict=True)]
        matching = torch.stack(per_block).sum()
        return score + self.feature_matching_weight * matching
