"""Reference conv nets for the neural-distortion checks (random init unless weights are loaded).

`vgg_style_features` mirrors VGG's structure (3x3 conv + ReLU stages separated by 2x2 max-pool)
at a configurable width; `nlayer_discriminator` is pix2pix's PatchGAN ``NLayerDiscriminator``
(4x4 convs, stride 2, LeakyReLU 0.2, optional BatchNorm and spectral norm), which rd-train reuses.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm


def vgg_style_features(
    in_channels: int = 3,
    stage_channels: Sequence[int] = (16, 32, 64),
    convs_per_stage: int = 2,
) -> nn.Sequential:
    """VGG-shaped feature extractor: each stage is ``convs_per_stage`` x (conv3x3 + ReLU), then pool.

    The returned ``nn.Sequential`` has one child per stage so feature taps can be taken per stage.
    """
    if not stage_channels or convs_per_stage < 1:
        raise ValueError("need at least one stage and one conv per stage")
    stages: list[nn.Module] = []
    channels = in_channels
    for i, width in enumerate(stage_channels):
        layers: list[nn.Module] = [nn.MaxPool2d(2)] if i > 0 else []
        for _ in range(convs_per_stage):
            layers += [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU()]
            channels = width
        stages.append(nn.Sequential(*layers))
    return nn.Sequential(*stages)


def nlayer_discriminator(
    in_channels: int = 3,
    base_channels: int = 64,
    n_layers: int = 3,
    *,
    norm: str = "batch",
    spectral_norm: bool = False,
) -> nn.Sequential:
    """pix2pix PatchGAN: a grid of logits, each judging one receptive-field patch.

    One child per block (conv [+ norm] + LeakyReLU), the last child the 1-channel logit conv, so
    discriminator features for feature matching are the outputs of the blocks.
    """
    if norm not in ("batch", "none"):
        raise ValueError(f"norm must be 'batch' or 'none', got {norm!r}")
    if n_layers < 1:
        raise ValueError(f"n_layers must be >= 1, got {n_layers}")

    def conv(c_in: int, c_out: int, stride: int, bias: bool) -> nn.Module:
        layer = nn.Conv2d(c_in, c_out, kernel_size=4, stride=stride, padding=1, bias=bias)
        return _spectral_norm(layer) if spectral_norm else layer

    use_bias = norm == "none"  # BatchNorm's shift makes a conv bias redundant (as in pix2pix)
    blocks: list[nn.Module] = [
        nn.Sequential(conv(in_channels, base_channels, 2, True), nn.LeakyReLU(0.2))
    ]
    channels = base_channels
    for n in range(1, n_layers + 1):
        out = base_channels * min(2**n, 8)
        stride = 2 if n < n_layers else 1
        layers: list[nn.Module] = [conv(channels, out, stride, use_bias)]
        if norm == "batch":
            layers.append(nn.BatchNorm2d(out))
        layers.append(nn.LeakyReLU(0.2))
        blocks.append(nn.Sequential(*layers))
        channels = out
    blocks.append(conv(channels, 1, 1, True))
    return nn.Sequential(*blocks)
