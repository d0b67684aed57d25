"""Datasets: the embedded default (no download), CelebA and an ImageFolder tree (Tiny-ImageNet).

The embedded dataset is built deterministically from RGB photographs that ship inside the
scikit-image and scikit-learn wheels: crops at three scales (full, 1/2, 1/4 resolution, so patches
range from texture to whole-object structure), train and validation split *by source photograph*
so validation patches come from scenes never seen in training. Same seed, same bytes. A run may read
a built set at a smaller size that divides it (2x2 block averages for half the size): one pinned
32 px build serves the 16 px default profile and the 32 px GPU profile.

Images reach the model as float tensors in [-1, 1] (LPIPS' range and the spec's normalisation).
Horizontal flips are applied in the training step from a step-seeded generator, so a resumed run
sees exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import lightning as L
import numpy as np
import torch
from rd_theory.atomic import atomic_write
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate

from rd_train.config import DataConfig
from rd_train.errors import DataMismatchError, MissingDataError

TRAIN_PHOTOS = (
    "skimage:astronaut.png", "skimage:chelsea.png", "skimage:rocket.jpg",
    "skimage:motorcycle_left.png", "skimage:motorcycle_right.png", "skimage:hubble_deep_field.jpg",
    "skimage:retina.jpg", "skimage:ihc.png", "sklearn:china.jpg",
)
VAL_PHOTOS = ("skimage:coffee.png", "sklearn:flower.jpg")
SCALES = (1, 2, 4)


def photo_path(ref: str) -> Path:
    package, name = ref.split(":")
    if package == "skimage":
        import skimage

        return Path(skimage.__file__).parent / "data" / name
    import sklearn

    return Path(sklearn.__file__).parent / "datasets" / "images" / name


def load_photo(ref: str) -> torch.Tensor:
    """3 x H x W float in [0, 1] from a photograph inside an installed package."""
    from skimage import io

    path = photo_path(ref)
    if not path.is_file():
        raise MissingDataError(
            f"embedded photograph {path} is missing: reinstall scikit-image / scikit-learn")
    image = io.imread(path)
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    return torch.from_numpy(np.ascontiguousarray(image[..., :3])).permute(2, 0, 1).float() / 255.0


@functools.lru_cache(maxsize=32)
def _pyramid(ref: str, size: int) -> tuple[torch.Tensor, ...]:
    """The photograph at each of SCALES that is still at least ``size`` px (decoded once per process)."""
    image = load_photo(ref)
    levels = []
    for s in SCALES:
        h, w = image.shape[1] // s, image.shape[2] // s
        if min(h, w) >= size:
            levels.append(torch.nn.functional.interpolate(
                image[None], size=(h, w), mode="bilinear", antialias=True, align_corners=False)[0])
    return tuple(levels)


def build_embedded(photos: tuple[str, ...], n: int, size: int, seed: int) -> torch.Tensor:
    """``n`` crops of ``size`` px (uint8, N x 3 x size x size) from ``photos`` at SCALES."""
    return build_labelled(photos, n, size, seed)[0]


def build_labelled(
    photos: tuple[str, ...], n: int, size: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """`build_embedded`'s crops and, for each, the index of its source photograph."""
    pyramids = [_pyramid(ref, size) for ref in photos]
    rng = np.random.default_rng(seed)
    crops = torch.empty((n, 3, size, size), dtype=torch.uint8)
    labels = torch.empty(n, dtype=torch.long)
    for i in range(n):
        labels[i] = source = int(rng.integers(len(pyramids)))
        levels = pyramids[source]
        level = levels[rng.integers(len(levels))]
        top = rng.integers(level.shape[1] - size + 1)
        left = rng.integers(level.shape[2] - size + 1)
        crop = level[:, top:top + size, left:left + size]
        crops[i] = (crop * 255.0).round().clamp(0, 255).to(torch.uint8)
    return crops, labels


def dataset_md5(directory: str | Path) -> str:
    """DVC's hash of a directory: md5 of the sorted (relpath, md5) listing as JSON, plus ".dir"."""
    root = Path(directory)
    entries = sorted(
        ({"md5": hashlib.md5(p.read_bytes()).hexdigest(), "relpath": p.relative_to(root).as_posix()}
         for p in root.rglob("*") if p.is_file()),
        key=lambda e: e["relpath"],
    )
    return hashlib.md5(json.dumps(entries, sort_keys=True).encode()).hexdigest() + ".dir"


def save_embedded(out_dir: str | Path, config: DataConfig) -> None:
    """Write train.pt / val.pt / meta.json (atomically) for the DVC `prepare` stage."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    splits = {
        "train": build_embedded(TRAIN_PHOTOS, config.n_train, config.image_size, config.seed),
        "val": build_embedded(VAL_PHOTOS, config.n_val, config.image_size, config.seed + 1),
    }
    for name, tensor in splits.items():
        atomic_write(out / f"{name}.pt", functools.partial(_save_tensor, tensor))
    meta = {"train_photos": TRAIN_PHOTOS, "val_photos": VAL_PHOTOS, "scales": SCALES,
            "image_size": config.image_size, "n_train": config.n_train, "n_val": config.n_val,
            "seed": config.seed}
    atomic_write(out / "meta.json", lambda p: Path(p).write_text(json.dumps(meta, indent=2) + "\n"))


def _save_tensor(tensor: torch.Tensor, path: str) -> None:
    torch.save(tensor, path)


def _check_built_as_configured(root: Path, config: DataConfig) -> int:
    """A built dataset whose size or seed differs from the run's config would train silently on other
    data. Returns the factor by which the built images are downsampled to ``config.image_size``."""
    meta_path = root / "meta.json"
    if not meta_path.is_file():
        raise MissingDataError(f"{meta_path} is missing; rebuild it: `rd-train prepare --out {root}`")
    meta = json.loads(meta_path.read_text())
    for key in ("n_train", "n_val", "seed"):
        if meta.get(key) != getattr(config, key):
            raise DataMismatchError(
                f"{root} was built with {key}={meta.get(key)}, but the run's data.{key} is "
                f"{getattr(config, key)}; in params.yaml the `embedded` section (what `prepare` builds) and "
                "the `data` section (what runs read) must agree")
    built = int(meta.get("image_size", 0))
    if built < config.image_size or built % config.image_size:
        raise DataMismatchError(
            f"{root} holds {built} px images; data.image_size={config.image_size} must divide it (runs "
            "read the "
            "built images at their size or averaged down by an integer factor)")
    return built // config.image_size


def downsample(images: torch.Tensor, factor: int) -> torch.Tensor:
    """uint8 images averaged over ``factor`` x ``factor`` blocks (the box filter of an exact 1/factor
    resize)."""
    if factor == 1:
        return images
    pooled = torch.nn.functional.avg_pool2d(images.float(), factor)
    return pooled.round().clamp(0, 255).to(torch.uint8)


class UInt8Images(Dataset):
    """uint8 N x 3 x H x W images served as float in [-1, 1].

    A DataLoader fetches a whole batch through ``__getitems__``: one gather and one conversion on the
    host instead of a few small ops per image and a stack (at batch 64 that was the host's largest cost
    of loading a batch). The values are the per-image ones, bit for bit (tested).
    """

    def __init__(self, images: torch.Tensor) -> None:
        self.images = images

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.images[index].float() / 127.5 - 1.0

    def __getitems__(self, indices: list[int]) -> torch.Tensor:
        return self.images[torch.as_tensor(indices, dtype=torch.int64)].float() / 127.5 - 1.0


def collate_images(batch: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
    """A batch that `UInt8Images.__getitems__` built already passes through; a list of images (other
    datasets) is stacked as the default collation does."""
    return batch if isinstance(batch, torch.Tensor) else default_collate(batch)


class EpochSeededSampler(Sampler[int]):
    """A shuffle that depends only on (seed, epoch): resuming at an epoch replays its order."""

    def __init__(self, size: int, seed: int) -> None:
        self.size, self.seed, self.epoch = size, seed, 0

    def set_epoch(self, epoch: int) -> None:  # Lightning calls this at every epoch start
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter(torch.randperm(self.size, generator=g).tolist())

    def __len__(self) -> int:
        return self.size


class ImageDataModule(L.LightningDataModule):
    """The train and validation splits of ``config``. ``pin_memory`` (set when the run trains on CUDA):
    batches are built in page-locked memory, so Lightning's ``non_blocking`` copy to the device is
    queued without waiting. From pageable memory the CUDA driver stages the copy and may first
    synchronise with the stream (CUDA runtime API, "API synchronization behavior"): a hidden host sync
    per step, which ``torch.cuda.set_sync_debug_mode`` does not report."""

    def __init__(self, config: DataConfig, pin_memory: bool = False) -> None:
        super().__init__()
        self.config = config
        self.pin_memory = pin_memory
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        c = self.config
        if c.name == "embedded":
            self.train_set, self.val_set = self._embedded()
        else:
            self.train_set, self.val_set = self._torchvision()

    def _embedded(self) -> tuple[Dataset, Dataset]:
        c = self.config
        if c.root:
            root = Path(c.root)
            files = [root / "train.pt", root / "val.pt"]
            missing = [str(f) for f in files if not f.is_file()]
            if missing:
                raise MissingDataError(f"embedded dataset files {missing} are missing; build them with "
                                        f"`rd-train prepare --out {root}` (the DVC prepare stage)")
            factor = _check_built_as_configured(root, c)
            train, val = (UInt8Images(downsample(torch.load(f, weights_only=True), factor)) for f in files)
            return train, val
        return (UInt8Images(build_embedded(TRAIN_PHOTOS, c.n_train, c.image_size, c.seed)),
                UInt8Images(build_embedded(VAL_PHOTOS, c.n_val, c.image_size, c.seed + 1)))

    def _torchvision(self) -> tuple[Dataset, Dataset]:
        from torchvision import datasets, transforms

        c = self.config
        root = Path(c.root or "")
        # Center crop then resize (CelebA: the usual 148 px face crop), to [-1, 1].
        crop = 148 if c.name == "celeba" else None
        steps = ([transforms.CenterCrop(crop)] if crop else []) + [
            transforms.Resize(c.image_size, antialias=True), transforms.CenterCrop(c.image_size),
            transforms.ToTensor(), transforms.Normalize([0.5] * 3, [0.5] * 3)]
        tf = transforms.Compose(steps)
        if c.name == "celeba":
            if not (root / "celeba" / "img_align_celeba").is_dir():
                raise MissingDataError(
                    f"CelebA not found under {root}/celeba/img_align_celeba (and list_eval_partition.txt); "
                    "place the official files there, no download is attempted")
            return (datasets.CelebA(str(root), split="train", transform=tf, download=False),
                    datasets.CelebA(str(root), split="valid", transform=tf, download=False))
        for split in ("train", "val"):
            if not (root / split).is_dir():
                raise MissingDataError(f"ImageFolder root {root} needs class folders under {root / split}; "
                                       "set data.root to the dataset's top folder")
        # ImageFolder yields (image, label); the VAE needs only the image.
        return (_ImagesOnly(datasets.ImageFolder(str(root / "train"), transform=tf)),
                _ImagesOnly(datasets.ImageFolder(str(root / "val"), transform=tf)))

    def train_dataloader(self) -> DataLoader:
        assert self.train_set is not None
        return DataLoader(self.train_set, batch_size=self.config.batch_size, drop_last=True,
                          sampler=EpochSeededSampler(len(self.train_set), self.config.seed),  # type: ignore[arg-type]
                          num_workers=self.config.num_workers, collate_fn=collate_images,
                          pin_memory=self.pin_memory)

    def val_dataloader(self) -> DataLoader:
        assert self.val_set is not None
        return DataLoader(self.val_set, batch_size=self.config.batch_size, shuffle=False,
                          num_workers=self.config.num_workers, collate_fn=collate_images,
                          pin_memory=self.pin_memory)


class _ImagesOnly(Dataset):
    def __init__(self, inner: Dataset) -> None:
        self.inner = inner

    def __len__(self) -> int:
        return len(self.inner)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> torch.Tensor:
        item = self.inner[index]
        return item[0] if isinstance(item, tuple) else item
