"""Run records: what the reports read of each finished run, as git-tracked text (protocol v3, issue 30 H).

A run directory holds checkpoints and logs that are not committed; its record is what every table and
figure derived from the run's results needs, so that, committed, the records let the reports be rebuilt
in minutes on a fresh clone, with no retraining (`rd-train records` writes them, the DVC stage
``records``; `rd-train report --records` reads them, the stage ``aggregate``). A record is one JSON object:

* ``path``: the run directory relative to the runs root (``<sweep>/<family>/<run>``, or under
  ``spatial/``), to name the run in tables;
* ``identity``: who the run is (sweep, family, architecture, λ, β or target, seed, steps), from its
  ``metrics.json`` (written by the sweep), never parsed from the folder name;
* ``metrics``: its ``metrics.json`` whole: the config, the final metrics, the validation history and,
  for GECO, the training-KL target and each correction;
* ``training_log``: the training curves the figures draw (``train/kl``, ``train/beta``, every
  ``log_every_n_steps`` steps), from Lightning's CSV log.

Records are written one JSON line per run, sorted by path, into ``<out>/<architecture>/<sweep>/<family>
.jsonl`` with sorted keys: the same runs give the same bytes, so a rebuild is checked byte for byte.

Runs trained outside ``dvc repro``, because they do not fit its time budget (the AutoencoderKL at twice
the steps), are committed in a folder of their own under ``<out>/outside/`` (`OUTSIDE`), beside the
stage's files: it holds a ``source.json`` that says what they are, the command and commit that trained
them, why not in the main job, and the dvc.lock entry of the stage whose code, data and params they
trained with (`Source`). The stage never writes or removes anything in such a folder. Reading a records
folder reads the stage's records and each such folder as a source of its own, so ``rd-train report
--records paper/records`` reads every run; claims.md names every source and its runs, a source trained
under other params than the report's is set aside, and a run that two sources both hold is refused.
The reports also take several records folders joined by ``os.pathsep``, as in ``PATH``.
"""

from __future__ import annotations

import csv
import json
import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rd_theory.atomic import atomic_write_text

from rd_train.errors import MissingDataError

IDENTITY_KEYS = ("sweep", "family", "architecture", "lam", "beta", "target", "seed", "steps")
LOGGED = ("train/kl", "train/beta")
SOURCE = "source.json"  # in a records folder trained outside `dvc repro`: what trained it (`Source`)
OUTSIDE = "outside"  # <records>/outside/<name>/: the committed folders of runs trained outside `dvc repro`
SOURCE_KEYS = ("what", "command", "commit", "why_outside")  # and ``lock``: {stage, deps, params}


@dataclass(frozen=True)
class Source:
    """One records folder the reports read: its records (read once), and for a folder trained outside
    ``dvc repro`` its ``source.json`` (``what``, ``command``, ``commit``, ``why_outside``, ``lock``; None
    for the records stage's own)."""

    folder: str  # as given, e.g. ``paper/records``
    records: list[dict[str, Any]] = field(compare=False, repr=False)
    origin: dict[str, Any] | None

    @property
    def runs(self) -> int:
        return len(self.records)

    def trained_under(self, raw_params: dict[str, Any]) -> bool:
        """Whether these runs were trained under ``raw_params`` (a params file's sections): every params
        entry of their stage's lock has the file's value. The stage's own records always were."""
        if self.origin is None:
            return True
        (entries,) = self.origin["lock"]["params"].values()  # {"params.yaml": {dotted key: value}}
        return all(_lookup(raw_params, key) == value for key, value in entries.items())

    def describe(self) -> str:
        """One clause for claims.md: the folder, its runs and where they come from."""
        if self.origin is None:
            return f"`{self.folder}` ({self.runs} runs, trained by `dvc repro`)"
        o = self.origin
        return (f"`{self.folder}` ({self.runs} runs, {o['what']}: trained outside `dvc repro` by "
                f"`{o['command']}` at commit {o['commit']}, because {o['why_outside']})")

    def describe_set_aside(self, params_file: str) -> str:
        """The clause for a folder `trained_under` other params than ``params_file``'s."""
        return f"`{self.folder}` set aside ({self.runs} runs trained under other params than {params_file}'s)"


def training_log(run_dir: Path) -> dict[str, list[float]]:
    """The logged training curves of ``LOGGED`` with their steps (empty lists without a log)."""
    path = run_dir / "logs" / "version_0" / "metrics.csv"
    curves: dict[str, list[float]] = {"step": [], **{key: [] for key in LOGGED}}
    if not path.is_file():
        return curves
    with path.open() as f:
        for row in csv.DictReader(f):
            if all(row.get(key) for key in LOGGED):
                curves["step"].append(float(row["step"]))
                for key in LOGGED:
                    curves[key].append(float(row[key]))
    return curves


def record_of(run_dir: Path, root: Path) -> dict[str, Any]:
    """The record of the finished run in ``run_dir`` (its ``metrics.json``), named relative to ``root``."""
    metrics_path = run_dir / "metrics.json"
    metrics = json.loads(metrics_path.read_text())
    identity = metrics.get("identity")
    if not isinstance(identity, dict) or not set(IDENTITY_KEYS) <= set(identity):
        raise MissingDataError(f"{metrics_path}: no run identity {list(IDENTITY_KEYS)} (a run trained before "
                               "protocol v3); re-run its sweep stage")
    return {"path": run_dir.relative_to(root).as_posix(), "identity": identity, "metrics": metrics,
            "training_log": training_log(run_dir)}


def collect(runs: str | Path) -> list[dict[str, Any]]:
    """The records of every finished run under ``runs`` (any depth), sorted by path."""
    root = Path(runs)
    found = sorted(p.parent for p in root.rglob("metrics.json"))
    if not found:
        raise MissingDataError(f"no finished runs under {root} (…/<run>/metrics.json): run the sweep stages "
                               "first (dvc repro)")
    return [record_of(run_dir, root) for run_dir in found]


def file_of(record: dict[str, Any]) -> str:
    identity = record["identity"]
    return f"{identity['architecture']}/{identity['sweep']}/{identity['family']}.jsonl"


def write(records: list[dict[str, Any]], out: str | Path) -> list[Path]:
    """Write ``records`` under ``out`` (module doc), replacing every ``*.jsonl`` there; the files written."""
    out = Path(out)
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        groups[file_of(record)].append(record)
    written = []
    for name, members in sorted(groups.items()):
        members.sort(key=lambda r: r["path"])
        text = "".join(json.dumps(r, sort_keys=True, allow_nan=True) + "\n" for r in members)
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, text)
        written.append(path)
    # A file of a sweep that no longer exists; a folder of runs trained outside dvc repro is not the stage's.
    for stale in set(_own_files(out)) - set(written):
        stale.unlink()
    return written


def write_from_runs(runs: str | Path, out: str | Path) -> str:
    """`rd-train records`: every finished run under ``runs`` written under ``out``; a one-line summary."""
    records = collect(runs)
    files = write(records, out)
    return f"records: {len(records)} runs -> {len(files)} files under {out}"


def folders(records: str | Path | Sequence[str | Path]) -> list[Path]:
    """``records`` as folders: a list of them, or one path, or several joined by ``os.pathsep``."""
    if isinstance(records, (str, Path)):
        return [Path(part) for part in str(records).split(os.pathsep) if part]
    return [Path(folder) for folder in records]


def read(records: str | Path | Sequence[str | Path]) -> list[dict[str, Any]]:
    """Every record under ``records`` (one folder or several, `folders`), sorted by path; a malformed line
    is named by file and line, and a run that two folders both hold is refused (`merged`)."""
    return merged(sources(records))


def merged(folders_read: Sequence[Source]) -> list[dict[str, Any]]:
    """The records of ``folders_read``, sorted by path; a run that two of them both hold is refused."""
    out: list[dict[str, Any]] = []
    seen: dict[str, str] = {}
    for source in folders_read:
        for record in source.records:
            if record["path"] in seen:
                raise MissingDataError(f"{source.folder}: run {record['path']} is also under "
                                       f"{seen[record['path']]}; a run's record belongs in one records "
                                       "folder only")
            seen[record["path"]] = source.folder
            out.append(record)
    return sorted(out, key=lambda r: r["path"])


def sources(records: str | Path | Sequence[str | Path]) -> list[Source]:
    """Each folder of ``records``, read once, and inside each every folder of runs trained outside ``dvc
    repro`` (one holding a ``source.json``, e.g. under ``outside/``) as a source of its own, named by the
    folder as given joined with its relative path; a folder must hold at least one record."""
    out = []
    for root in folders(records):
        found = [Source(folder.as_posix(), _read_files(_own_files(folder)), _origin(folder))
                 for folder in [root, *_outside_folders(root)]]
        if not any(source.records for source in found):
            raise MissingDataError(f"no run records under {root} (<architecture>/<sweep>/<family>.jsonl): "
                                   "write them from a runs folder with `rd-train records --runs runs --out "
                                   f"{root}` (the DVC stage records)")
        out += [source for source in found if source.records]
    return out


def _origin(root: Path) -> dict[str, Any] | None:
    """``root``'s ``source.json``, checked (`SOURCE_KEYS` and a lock of one params file), or None."""
    if not (root / SOURCE).is_file():
        return None
    try:
        origin = json.loads((root / SOURCE).read_text())
    except json.JSONDecodeError as error:
        raise MissingDataError(f"{root / SOURCE}: not JSON ({error.msg})") from None
    missing = [key for key in SOURCE_KEYS if not isinstance(origin.get(key), str)]
    if not isinstance(origin.get("lock"), dict) or len(origin["lock"].get("params") or {}) != 1:
        missing.append("lock")
    if missing:
        raise MissingDataError(f"{root / SOURCE}: no {missing}; it says what trained these records "
                               f"outside dvc repro ({', '.join(SOURCE_KEYS)}, lock)")
    return origin


def _outside_folders(root: Path) -> list[Path]:
    """The folders under ``root`` (not ``root`` itself) that hold a ``source.json``."""
    return sorted(path.parent for path in root.rglob(SOURCE) if path.parent != root)


def _own_files(root: Path) -> list[Path]:
    """``root``'s record files, less those of the folders of runs trained outside dvc repro inside it."""
    inside = _outside_folders(root)
    return sorted(path for path in root.rglob("*.jsonl")
                  if not any(path.is_relative_to(folder) for folder in inside))


def _lookup(raw: dict[str, Any], dotted: str) -> Any:
    """``raw``'s value at a dotted key as dvc.lock writes it (``spatial.model``), or None."""
    value: Any = raw
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _read_files(files: list[Path]) -> list[dict[str, Any]]:
    out = []
    for path in files:
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            try:
                record = json.loads(line)
                missing = [key for key in ("path", "identity", "metrics") if key not in record]
            except json.JSONDecodeError as error:
                raise MissingDataError(f"{path}:{number}: not a JSON record ({error.msg})") from None
            if missing:
                raise MissingDataError(f"{path}:{number}: a record without {missing}")
            out.append(record)
    return out
