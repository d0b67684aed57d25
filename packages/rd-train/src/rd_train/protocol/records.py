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
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from rd_theory.atomic import atomic_write_text

from rd_train.errors import MissingDataError

IDENTITY_KEYS = ("sweep", "family", "architecture", "lam", "beta", "target", "seed", "steps")
LOGGED = ("train/kl", "train/beta")


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
    for stale in set(out.rglob("*.jsonl")) - set(written):  # a file of a sweep that no longer exists
        stale.unlink()
    return written


def write_from_runs(runs: str | Path, out: str | Path) -> str:
    """`rd-train records`: every finished run under ``runs`` written under ``out``; a one-line summary."""
    records = collect(runs)
    files = write(records, out)
    return f"records: {len(records)} runs -> {len(files)} files under {out}"


def read(records: str | Path) -> list[dict[str, Any]]:
    """Every record under ``records``, sorted by path; a malformed line is named by file and line."""
    root = Path(records)
    files = sorted(root.rglob("*.jsonl"))
    if not files:
        raise MissingDataError(f"no run records under {root} (<architecture>/<sweep>/<family>.jsonl): "
                               "write them from a runs folder with `rd-train records --runs runs --out "
                               f"{root}` (the DVC stage records)")
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
    return sorted(out, key=lambda r: r["path"])
