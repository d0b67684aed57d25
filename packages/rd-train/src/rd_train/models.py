"""The two VAE families of the spec (appendix B), behind one interface.

Both expose ``encode(x) -> (mu, logvar)``, ``decode(z) -> x_hat`` and ``latent_shape`` (one sample's
latent, without the batch dimension) so that losses, the rate controller and the metrics never ask
which one they hold.

* `VectorVAE`: the pythae CelebA-style conv VAE. Encoder: stride-2 4x4 convs with BatchNorm + ReLU
  (widths ``channels``), flattened into linear μ and log σ² heads of ``latent_dim``. Decoder: a
  linear map back to the smallest feature map, then stride-2 transposed convs mirroring the encoder.
  ``channels=[128, 256, 512, 1024], latent_dim=64`` at 64 px is pythae's CelebA setting.
* `SpatialVAE`: diffusers' ``AutoencoderKL`` configured as in the spec's Table 1 (latent channels,
  block widths, layers per block, mid-block attention). μ and log σ² are the two halves of the
  quant-conv output, exactly what ``AutoencoderKL.encode`` turns into its latent distribution.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import torch
from torch import nn

from rd_train.config import ModelConfig
from rd_train.errors import ConfigError


class VectorVAE(nn.Module):
    def __init__(self, config: ModelConfig, image_size: int) -> None:
        super().__init__()
        depth = len(config.channels)
        if image_size % (2**depth):
            raise ConfigError(f"image_size {image_size} must be divisible by 2^{depth} (one halving per "
                             f"encoder stage, model.channels={config.channels})")
        self.bottom = image_size // 2**depth
        layers: list[nn.Module] = []
        c_in = 3
        for c in config.channels:
            layers += [nn.Conv2d(c_in, c, 4, stride=2, padding=1), nn.BatchNorm2d(c), nn.ReLU()]
            c_in = c
        self.encoder = nn.Sequential(*layers, nn.Flatten())
        flat = config.channels[-1] * self.bottom**2
        self.mu = nn.Linear(flat, config.latent_dim)
        self.logvar = nn.Linear(flat, config.latent_dim)
        self.expand = nn.Linear(config.latent_dim, flat)
        up: list[nn.Module] = []
        widths = list(reversed(config.channels))
        for c_in, c_out in pairwise(widths):
            up += [nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1), nn.BatchNorm2d(c_out), nn.ReLU()]
        up += [nn.ConvTranspose2d(widths[-1], 3, 4, stride=2, padding=1)]
        self.decoder = nn.Sequential(*up)
        self.top_channels = config.channels[-1]
        self.latent_shape: tuple[int, ...] = (config.latent_dim,)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x)
        return self.mu(h), self.logvar(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        h = self.expand(z).view(z.shape[0], self.top_channels, self.bottom, self.bottom)
        return self.decoder(h)


class SpatialVAE(nn.Module):
    def __init__(self, config: ModelConfig, image_size: int) -> None:
        super().__init__()
        from diffusers import AutoencoderKL

        n = len(config.block_out_channels)
        if image_size % (2 ** (n - 1)):
            raise ConfigError(f"image_size {image_size} must be divisible by 2^{n - 1} for "
                             f"block_out_channels={config.block_out_channels}")
        self.vae: Any = AutoencoderKL(
            in_channels=3, out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * n, up_block_types=("UpDecoderBlock2D",) * n,
            block_out_channels=tuple(config.block_out_channels), layers_per_block=config.layers_per_block,
            act_fn="silu", latent_channels=config.latent_channels, norm_num_groups=config.norm_num_groups,
            sample_size=image_size, mid_block_add_attention=config.mid_block_add_attention,
            use_quant_conv=True, use_post_quant_conv=True, force_upcast=True,
        )
        side = image_size // 2 ** (n - 1)
        self.latent_shape: tuple[int, ...] = (config.latent_channels, side, side)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        moments = self.vae.quant_conv(self.vae.encoder(x))
        mu, logvar = torch.chunk(moments, 2, dim=1)
        # diffusers clamps log σ² to [-30, 20] inside DiagonalGaussianDistribution; keep the same range.
        return mu, logvar.clamp(-30.0, 20.0)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(z).sample


def build_model(config: ModelConfig, image_size: int) -> VectorVAE | SpatialVAE:
    return VectorVAE(config, image_size) if config.kind == "vector" else SpatialVAE(config, image_size)
