"""The two VAE families of the spec (appendix B), behind one interface.

Both expose ``encode(x) -> (mu, logvar)``, ``decode(z) -> x_hat``, ``decode_statistics(z)`` (the decoder
only as far as BatchNorm recalibration needs) and ``latent_shape`` (one sample's latent, without the
batch dimension) so that losses, the rate controller and the metrics never ask which one they hold.

* `VectorVAE`: the pythae CelebA-style conv VAE. Encoder: stride-2 4x4 convs with BatchNorm + ReLU
  (widths ``channels``), flattened into linear μ and log σ² heads of ``latent_dim``; with
  ``channels=[128, 256, 512, 1024], latent_dim=64`` at 64 px it is pythae's ``Encoder_Conv_VAE_CELEBA``
  layer for layer (13,119,232 parameters). Two decoders (``decoder``):

  - ``mirror`` (default): a linear map back to the encoder's smallest map (1024 x 4 x 4 at 64 px),
    then 4x4 stride-2 transposed convs mirroring the encoder, linear output. At the CelebA setting
    the model has 25,203,075 parameters, the 25.2M the spec gives for its "pythae VAE"; the decoder
    (12,083,843) is not pythae's.
  - ``pythae``: pythae's ``Decoder_Conv_AE_CELEBA``: a linear map to 1024 x 8 x 8, three 5x5
    stride-2 transposed convs and a 5x5 stride-1 one (21,475,331 parameters; 34,594,563 with the
    encoder). Its final Sigmoid becomes 2·sigmoid − 1 (no parameters) because images here lie in
    [-1, 1], not pythae's [0, 1]. Needs four encoder stages.
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
        widths = list(reversed(config.channels))
        if config.decoder == "pythae":
            self.bottom = image_size // 8
        # Built in this order (expand, then the decoder) so that a seed gives the same initial weights
        # as before the decoder became an option.
        self.expand = nn.Linear(config.latent_dim, config.channels[-1] * self.bottom**2)
        pythae = config.decoder == "pythae"
        self.decoder = _pythae_celeba_decoder(widths) if pythae else _mirror_decoder(widths)
        self.top_channels = config.channels[-1]
        self.latent_shape: tuple[int, ...] = (config.latent_dim,)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x)
        return self.mu(h), self.logvar(h)

    def _decoder_input(self, z: torch.Tensor) -> torch.Tensor:
        return self.expand(z).view(z.shape[0], self.top_channels, self.bottom, self.bottom)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(self._decoder_input(z))

    def decode_statistics(self, z: torch.Tensor) -> None:
        """Run the decoder on ``z`` only as far as its last BatchNorm layer, for its statistics alone (the
        BatchNorm recalibration, evaluation.py): the layers after it hold none and their output would be
        thrown away. The default decoder's last transposed conv is 7 % of the model's forward FLOPs and
        took 29 % of a recalibration (benchmarks/step_host_costs.py)."""
        last = max((i for i, m in enumerate(self.decoder) if isinstance(m, nn.modules.batchnorm._BatchNorm)),
                   default=-1)
        if last >= 0:
            self.decoder[: last + 1](self._decoder_input(z))


def _mirror_decoder(widths: list[int]) -> nn.Sequential:
    """The encoder mirrored: each 4x4 stride-2 transposed conv exactly doubles the map."""
    up: list[nn.Module] = []
    for c_in, c_out in pairwise(widths):
        up += [nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1), nn.BatchNorm2d(c_out), nn.ReLU()]
    up += [nn.ConvTranspose2d(widths[-1], 3, 4, stride=2, padding=1)]
    return nn.Sequential(*up)


def _pythae_celeba_decoder(widths: list[int]) -> nn.Sequential:
    """pythae's Decoder_Conv_AE_CELEBA with its paddings, which take an n x n map to 8n x 8n
    (n -> 2n - 1 -> 4n - 1 -> 8n - 2 -> 8n), for widths [1024, 512, 256, 128] or any other four."""
    c3, c2, c1, c0 = widths
    return nn.Sequential(
        nn.ConvTranspose2d(c3, c2, 5, stride=2, padding=2), nn.BatchNorm2d(c2), nn.ReLU(),
        nn.ConvTranspose2d(c2, c1, 5, stride=2, padding=1), nn.BatchNorm2d(c1), nn.ReLU(),
        nn.ConvTranspose2d(c1, c0, 5, stride=2, padding=2, output_padding=1), nn.BatchNorm2d(c0), nn.ReLU(),
        nn.ConvTranspose2d(c0, 3, 5, stride=1, padding=1), SymmetricSigmoid(),
    )


class SymmetricSigmoid(nn.Module):
    """pythae's output Sigmoid moved to the [-1, 1] image range: 2·sigmoid(x) − 1 (= tanh(x / 2))."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2.0 * torch.sigmoid(x) - 1.0


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

    def decode_statistics(self, z: torch.Tensor) -> None:
        """`VectorVAE.decode_statistics`: GroupNorm keeps no running statistics, so nothing runs."""


def build_model(config: ModelConfig, image_size: int) -> VectorVAE | SpatialVAE:
    return VectorVAE(config, image_size) if config.kind == "vector" else SpatialVAE(config, image_size)
