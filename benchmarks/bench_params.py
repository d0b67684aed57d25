"""The params a benchmark or pilot starts from: a params file with its data root made absolute (the scripts
train in scratch folders, not in the repository), after checking that the embedded data is built."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def benchmark_params(script: str, path: str | Path = ROOT / "params.yaml") -> dict[str, Any]:
    """``path``'s params (`rd_train.pipeline.sweep.load_params`) with ``data.root`` absolute; when the
    embedded data is not built, one line naming the folder and how to build it, and exit status 2."""
    from rd_train.pipeline.sweep import load_params

    params = load_params(path)
    data = ROOT / params["data"]["root"]
    if not (data / "meta.json").is_file():
        print(f"{script}: {data} is missing: build it first (dvc repro prepare, or nox -s repro)",
              file=sys.stderr)
        raise SystemExit(2)
    params["data"]["root"] = str(data)
    return params
