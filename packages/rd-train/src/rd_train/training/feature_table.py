r"""The VGG16 (HED) features of a run's training images, computed once instead of at every step.

The perceptual distance d(x, x̂) runs the frozen feature network on the target images x at every step,
without a gradient: 19 of the 59 ms its forward and backward take at the default scale (batch 32,
16 px, relu1_2 + relu2_2; `benchmarks/run_costs.py`). A run of the default profile sees each (image,
flip) of its 8192 training images about 2.9 times (1500 steps x 32 / 16384), so a table of them built
in 512 forwards replaces 1500. The table is built in batches of the training batch size, because on
the CPU measured a block's features of an image are the same bit for bit whatever the other images of a
batch of that size are (and not at another size): a run with the table computes what it computes
without it, which a test checks on a short fit's metrics, bit for bit.

`with_target_table(loss, images, batch_size)` gives the loss a copy of its feature network
(`TabledFeatures`, same class, weights and state_dict keys) that answers a call from the table when the
input needs no gradient (a target), autocast is off and every image of the batch is in the table,
found by its bytes (an exact match: no two different images can share a key); any other call (the
reconstructions, validation images, a batch with an image outside the table) runs the network. So the
table changes what a step costs, never what it computes. `target_tabled_loss(config)` builds the loss
of a run config with the table of its training images and their flips, for
``rd_train.training.run.fit(config, neural_loss=...)``.

One table per sweep: `shared_table(network, images, batch_size, directory)` builds the table once into
``<directory>/<fingerprint>.pt`` and every worker memory-maps that file (``torch.load(mmap=True)``), so
the runs of a sweep that read the same training images share one copy in the page cache instead of
building and holding 1.6 GB each. The fingerprint is a SHA-256 of everything the features depend on:
the images' bytes, the network's blocks and weights, the batch size, the torch version, the CPU's
vector ISA and the threads (oneDNN picks its kernels, and so its summation order, by them). A table
built from other images, weights or on another machine therefore sits under another name and is never
read; a file whose stored fingerprint does not match its name is rebuilt. Two workers that need a new
table at once build it once: the second waits on a file lock, then maps the first's file.

CPU and fp32 only: the lookup reads the batch on the host (a host sync at every step on a GPU), and a
bf16 autocast step computes other features than an fp32 table. Every VGG16 (HED) run of a CPU sweep
uses the shared table (`rd_train.pipeline.sweep`).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from rd_theory.vgg16 import VGG16Features

from rd_train.config import ConfigError, TrainConfig
from rd_train.training.losses.vgg16 import VGG16FeatureLoss

MAX_BYTES = 4 << 30  # a table larger than this is refused (the default profile's is 1.6 GB)


@dataclass(frozen=True)
class FeatureTable:
    """Each block's features of a fixed set of images, and the row of each image found by its bytes."""

    rows: dict[bytes, int]
    features: tuple[torch.Tensor, ...]  # per block, (N, C, H, W)
    image_shape: tuple[int, ...]
    dtype: torch.dtype

    @classmethod
    @torch.no_grad()
    def build(cls, network: VGG16Features, images: torch.Tensor, batch_size: int,
              max_bytes: int = MAX_BYTES) -> FeatureTable:
        """The features of ``images`` (N, 3, H, W, CPU) from ``network``, computed in batches of exactly
        ``batch_size`` (the last one filled up with images from the start, whose rows are dropped)."""
        if images.device.type != "cpu" or images.ndim != 4 or images.shape[0] == 0:
            raise ValueError("FeatureTable.build: a non-empty (N, 3, H, W) batch of CPU images")
        images = images.contiguous()
        n = images.shape[0]
        filled = images if n >= batch_size else images.repeat((batch_size + n - 1) // n, 1, 1, 1)
        features: tuple[torch.Tensor, ...] = ()
        for start in range(0, n, batch_size):
            chunk = images[start:start + batch_size]
            k = chunk.shape[0]
            if k < batch_size:
                chunk = torch.cat([chunk, filled[:batch_size - k]])
            blocks = network(chunk)
            if not features:  # the first batch gives each block's shape: check the size, then allocate
                row_bytes = sum(f[0].numel() * f.element_size() for f in blocks)
                if row_bytes * n > max_bytes:
                    raise ValueError(f"a feature table of {n} images would take {row_bytes * n / 2**30:.1f} "
                                     f"GiB (limit {max_bytes / 2**30:.1f} GiB): train without it")
                features = tuple(torch.empty((n, *f.shape[1:]), dtype=f.dtype) for f in blocks)
            for table, block in zip(features, blocks, strict=True):
                table[start:start + k] = block[:k]
        return cls.from_images(images, features)

    def lookup(self, x: torch.Tensor) -> list[torch.Tensor] | None:
        """Each block's features of the batch ``x`` if every image of it is in the table, else None."""
        if x.device.type != "cpu" or x.dtype != self.dtype or tuple(x.shape[1:]) != self.image_shape:
            return None
        x = x.contiguous()
        found = []
        for image in x:
            row = self.rows.get(image.numpy().tobytes())
            if row is None:
                return None
            found.append(row)
        index = torch.tensor(found, dtype=torch.int64)
        return [table.index_select(0, index) for table in self.features]

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.features)

    @classmethod
    def from_images(cls, images: torch.Tensor, features: tuple[torch.Tensor, ...]) -> FeatureTable:
        rows = {images[i].numpy().tobytes(): i for i in range(images.shape[0])}
        return cls(rows, features, tuple(images.shape[1:]), images.dtype)


def fingerprint(network: VGG16Features, images: torch.Tensor, batch_size: int) -> str:
    """What the table's features depend on, hashed (module docstring)."""
    digest = hashlib.sha256()
    images = images.contiguous()
    digest.update(repr((tuple(images.shape), str(images.dtype), len(network), batch_size, torch.__version__,
                        torch.backends.cpu.get_cpu_capability(), torch.get_num_threads())).encode())
    digest.update(images.numpy().tobytes())
    for name, tensor in sorted(network.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().contiguous().cpu().numpy().tobytes())
    return digest.hexdigest()[:32]


def shared_table(network: VGG16Features, images: torch.Tensor, batch_size: int, directory: str | Path,
                 max_bytes: int = MAX_BYTES) -> FeatureTable:
    """The table of ``images`` from ``<directory>/<fingerprint>.pt``, memory-mapped; built there first
    (once, under a file lock) when it is missing or does not hold that fingerprint."""
    key = fingerprint(network, images, batch_size)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{key}.pt"
    with open(directory / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second worker waits for the first's file
        try:
            table = _mapped(path, key, images)
            if table is None:
                built = FeatureTable.build(network, images, batch_size, max_bytes)
                partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
                saved = {"fingerprint": key, "images": images.contiguous(), "features": list(built.features)}
                torch.save(saved, partial)
                os.replace(partial, path)  # a kill never leaves a truncated table under the real name
                table = _mapped(path, key, images)
                assert table is not None
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return table


def _mapped(path: Path, key: str, images: torch.Tensor) -> FeatureTable | None:
    """The table in ``path``, memory-mapped, if it is there and holds ``key`` for exactly ``images``."""
    if not path.is_file():
        return None
    try:
        saved = torch.load(path, mmap=True, weights_only=True)
    except (RuntimeError, OSError, EOFError, ValueError):  # unreadable: rebuilt, never trusted
        return None
    if saved.get("fingerprint") != key or not torch.equal(saved["images"], images):
        return None
    return FeatureTable.from_images(saved["images"], tuple(saved["features"]))


class TabledFeatures(VGG16Features):
    """`VGG16Features` that answer target calls from a `FeatureTable` (module docstring)."""

    def __init__(self, n_blocks: int, table: FeatureTable | None = None) -> None:
        super().__init__(n_blocks)
        self.table = table
        self.answered = 0  # calls answered from the table (a run's training steps, when it works)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if self.table is not None and not x.requires_grad and not torch.is_autocast_enabled(x.device.type):
            found = self.table.lookup(x)
            if found is not None:
                self.answered += 1
                return found
        return super().forward(x)


def with_target_table(loss: VGG16FeatureLoss, images: torch.Tensor, batch_size: int,
                      max_bytes: int = MAX_BYTES, directory: str | Path | None = None) -> VGG16FeatureLoss:
    """``loss`` with its feature network replaced by a `TabledFeatures` copy holding the table of
    ``images`` (the exact tensors the training step gives the loss as targets): built for this loss, or
    with ``directory`` the sweep's shared, memory-mapped one (`shared_table`)."""
    network = loss.features
    tabled = TabledFeatures(len(network))
    tabled.load_state_dict(network.state_dict())
    tabled.train(network.training).requires_grad_(False)
    if directory is None:
        tabled.table = FeatureTable.build(network, images, batch_size, max_bytes)
    else:
        tabled.table = shared_table(network, images, batch_size, directory, max_bytes)
    loss.features = tabled
    return loss


def training_targets(config: TrainConfig) -> torch.Tensor:
    """Every image a training step of ``config`` can give the loss as a target: each training image as
    the data module serves it and, with ``data.hflip``, its mirror (the step flips with ``flip(-1)``)."""
    from rd_train.training.run import data_module

    data = data_module(config)
    data.setup("fit")
    assert data.train_set is not None
    n = len(data.train_set)  # type: ignore[arg-type]
    images = torch.stack([data.train_set[i] for i in range(n)])  # the batched gather's values, bit for bit
    return torch.cat([images, images.flip(-1)]) if config.data.hflip else images


def table_problems(config: TrainConfig) -> list[str]:
    """Why a target-feature table cannot serve ``config`` (empty: it can)."""
    from rd_train.training.run import training_device

    return [problem for problem, bad in (
        (f"loss.neural={config.loss.neural!r} with lam={config.loss.lam} (it needs vgg16_hed, lam > 0)",
         config.loss.neural != "vgg16_hed" or config.loss.lam == 0),
        (f"precision={config.precision!r} (it needs 32-true)", config.precision != "32-true"),
        ("a CUDA device (it needs the CPU)", training_device(config).type != "cpu"),
        (f"devices={config.devices} (it needs 1)", config.devices != 1),
    ) if bad]


def target_tabled_loss(config: TrainConfig, max_bytes: int = MAX_BYTES,
                       directory: str | Path | None = None) -> VGG16FeatureLoss:
    """The VGG16 (HED) loss of ``config`` with the table of its training targets, for ``fit``; with
    ``directory``, the table shared by every run of the sweep (`shared_table`)."""
    from rd_train.training.losses import build_neural_loss

    problems = table_problems(config)
    if problems:
        raise ConfigError("a target-feature table cannot serve " + ", ".join(problems))
    loss = build_neural_loss(config)
    assert isinstance(loss, VGG16FeatureLoss)
    return with_target_table(loss, training_targets(config), config.data.batch_size, max_bytes, directory)
