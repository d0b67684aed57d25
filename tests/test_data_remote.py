"""The paper profile's data flow, offline: `dvc add` a dataset, push it to a local-directory remote,
clone the repo elsewhere, `dvc pull`, and train-time loading finds the same images."""

import shutil
import subprocess
import sys
from pathlib import Path

from rd_train.config import DataConfig
from rd_train.training.data import TRAIN_PHOTOS, ImageDataModule, build_embedded

BIN = Path(sys.executable).parent


def test_dataset_round_trips_through_a_local_remote(tmp_path):
    from PIL import Image

    dvc = shutil.which("dvc", path=str(BIN)) or "dvc"
    env = {"PATH": f"{BIN}:/usr/bin:/bin", "DVC_NO_ANALYTICS": "1", "HOME": str(tmp_path),
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}

    def run(cwd: Path, *args: str) -> None:
        done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, check=False)
        assert done.returncode == 0, f"{' '.join(args)}:\n{done.stdout}\n{done.stderr}"

    origin = tmp_path / "origin"
    crops = build_embedded(TRAIN_PHOTOS, 12, 16, seed=4)
    for i, crop in enumerate(crops):  # Tiny-ImageNet layout: root/{train,val}/<class>/*.png
        folder = origin / "data" / "tiny" / ("train" if i < 8 else "val") / f"c{i % 2}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(crop.permute(1, 2, 0).numpy()).save(folder / f"{i}.png")
    run(origin, "git", "init", "-q")
    run(origin, dvc, "init", "-q")
    run(origin, dvc, "add", "-q", "data/tiny")
    run(origin, dvc, "remote", "add", "-d", "shared", str(tmp_path / "remote"))
    run(origin, "git", "add", "-A")
    run(origin, "git", "commit", "-q", "-m", "data")
    run(origin, dvc, "push", "-q")

    clone = tmp_path / "clone"
    run(tmp_path, "git", "clone", "-q", str(origin), str(clone))
    assert not (clone / "data" / "tiny").exists()  # only data/tiny.dvc travels through git
    run(clone, dvc, "pull", "-q")
    originals = sorted(p.relative_to(origin) for p in (origin / "data" / "tiny").rglob("*.png"))
    pulled = sorted(p.relative_to(clone) for p in (clone / "data" / "tiny").rglob("*.png"))
    assert pulled == originals and len(pulled) == 12
    for rel in pulled:
        assert (clone / rel).read_bytes() == (origin / rel).read_bytes()

    module = ImageDataModule(DataConfig(name="imagefolder", root=str(clone / "data" / "tiny"), image_size=16,
                                        batch_size=4))
    module.setup()
    assert next(iter(module.train_dataloader())).shape == (4, 3, 16, 16)
