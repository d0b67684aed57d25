"""``data.dvc``: the DVC file that versions the embedded dataset and pins its hash.

The embedded dataset is not downloaded or pulled: the `prepare` stage rebuilds it from photographs
inside installed wheels. DVC lets one owner write a path, so the rebuild lands in a staging
directory (``data/rebuilt/embedded``, the stage's output) and ``data.dvc`` brings it into
``data/embedded`` as a local import: its single dependency is the staging directory, its single
output the dataset directory, both with DVC's directory hash.

`check_pin` is the integrity check `prepare` runs after every rebuild: the rebuilt bytes must hash
to what ``data.dvc`` pins, or the pipeline stops before anything trains on different data (a changed
scikit-image photograph, a changed crop routine). `write_pin` writes a new pin on purpose, after the
embedded parameters changed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from rd_theory.atomic import atomic_write_text

from rd_train.errors import UserError
from rd_train.training.data import dataset_md5


class PinError(UserError, RuntimeError):
    """The rebuilt dataset and its DVC file disagree, or the file is not a dataset pin."""


def _directory_entry(directory: Path, path_in_file: str) -> dict[str, Any]:
    files = [p for p in directory.rglob("*") if p.is_file()]
    # DVC's key order, so that DVC rewriting the file leaves it byte-identical.
    return {"md5": dataset_md5(directory), "size": sum(p.stat().st_size for p in files),
            "nfiles": len(files), "hash": "md5", "path": path_in_file}


def _relative_to_file(path: str | Path, dvc_file: Path) -> str:
    return Path(path).resolve().relative_to(dvc_file.resolve().parent).as_posix()


def read_pin(dvc_file: str | Path) -> tuple[str, str, str]:
    """(staging path, dataset path, pinned md5) of a pin file, paths relative to the file's folder."""
    dvc_file = Path(dvc_file)
    if not dvc_file.is_file():
        raise PinError(f"{dvc_file} is missing: it pins the embedded dataset; restore it from git, or "
                       f"write a new pin with `rd-train prepare --out <dir> --pin {dvc_file}`")
    content = yaml.safe_load(dvc_file.read_text()) or {}
    deps, outs = content.get("deps") or [], content.get("outs") or []
    if len(deps) != 1 or len(outs) != 1 or "md5" not in outs[0]:
        raise PinError(f"{dvc_file}: expected one dependency (the rebuilt directory) and one output "
                       f"with an md5 (the dataset directory); found {len(deps)} and {len(outs)}")
    return deps[0]["path"], outs[0]["path"], outs[0]["md5"]


def check_pin(rebuilt: str | Path, dvc_file: str | Path) -> str:
    """Compare the rebuilt directory's DVC hash with the pin; return the hash, or raise PinError."""
    dvc_file = Path(dvc_file)
    staging, _, pinned = read_pin(dvc_file)
    if staging != _relative_to_file(rebuilt, dvc_file):
        raise PinError(f"{dvc_file} imports {staging!r}, but the dataset was rebuilt in {str(rebuilt)!r}; "
                       "build it where the pin expects it")
    built = dataset_md5(rebuilt)
    if built != pinned:
        raise PinError(
            f"the rebuilt dataset {rebuilt} hashes to {built}, but {dvc_file} pins {pinned}. Either the "
            "photographs inside the installed scikit-image / scikit-learn or the crop code changed (compare "
            "their versions with constraints.txt), or params.yaml `embedded` changed on purpose: then "
            f"write the new pin with `rd-train prepare --out {rebuilt} <the same --set options> --pin "
            f"{dvc_file}` and commit it")
    return built


def write_pin(rebuilt: str | Path, dvc_file: str | Path, dataset: str = "data/embedded") -> str:
    """Write ``dvc_file`` importing ``rebuilt`` into ``dataset`` (both relative to the file's folder)."""
    dvc_file = Path(dvc_file)
    entry = _directory_entry(Path(rebuilt), _relative_to_file(rebuilt, dvc_file))
    content: dict[str, Any] = {"deps": [entry], "outs": [{**entry, "path": dataset}]}
    atomic_write_text(dvc_file, yaml.safe_dump(content, sort_keys=False))
    stage_md5 = _dvc_stage_md5(dvc_file)
    if stage_md5 is not None:  # otherwise DVC adds it at the next `dvc repro`
        atomic_write_text(dvc_file, yaml.safe_dump({**content, "md5": stage_md5}, sort_keys=False))
    return entry["md5"]


def _dvc_stage_md5(dvc_file: Path) -> str | None:
    """The stage hash DVC keeps in an import's file, from DVC itself (None outside a DVC repository)."""
    try:
        from dvc.exceptions import NotDvcRepoError
        from dvc.repo import Repo
    except ImportError:
        return None
    try:
        with Repo(str(dvc_file.resolve().parent)) as repo:
            return str(repo.stage.load_one(str(dvc_file.resolve())).compute_md5())
    except NotDvcRepoError:
        return None
