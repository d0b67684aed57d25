"""The params a benchmark or pilot starts from: a params file with its data root made absolute (the scripts
train in scratch folders, not in the repository), after checking that the embedded data is built."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def benchmark_params(script: str, path: str | Path = ROOT / "params.yaml") -> dict[str, Any]:
    """``path``'s params (validated by `rd_train.params.load_params`), as a mapping a script may change,
    with ``data.root`` absolute; when the embedded data is not built, one line naming the folder and how
    to build it, and exit status 2."""
    import copy

    from rd_train.params import load_params

    params = copy.deepcopy(dict(load_params(path).raw))
    data = ROOT / params["data"]["root"]
    if not (data / "meta.json").is_file():
        print(f"{script}: {data} is missing: build it first (dvc repro prepare, or nox -s repro)",
              file=sys.stderr)
        raise SystemExit(2)
    params["data"]["root"] = str(data)
    return params
