"""The DVC stage ``spatial``: train the AutoencoderKL grid of params.yaml ``spatial``.

Every (sweep, family) of the spatial grid goes through `rd_train.sweep.run_sweep`, from the derived params
(`spatial_params`) written to a scratch file: the runs are the vector sweep's runs with another model,
under ``runs/spatial/<sweep>/<family>/<run>``; finished runs are reused, so an interrupted stage resumes.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import yaml

from rd_train.config import ConfigError
from rd_train.errors import ParamsError
from rd_train.spatial.grid import spatial_params, spatial_sweeps
from rd_train.sweep import load_params, run_configs


def derived_params(params_path: str | Path) -> dict[str, Any]:
    """The spatial sweep's params from the params file, every run config checked before any run starts."""
    params = load_params(params_path)
    derived = spatial_params(params, str(params_path))
    try:
        for sweep in spatial_sweeps(derived):
            for family in ["pixel", *derived["losses"]]:
                run_configs(derived, sweep, family, "runs")
    except ConfigError as error:  # named by its run-config key; the values come from `spatial`
        raise ParamsError(f"{params_path} spatial (model or grid): {error}") from None
    return derived


def run_spatial_sweep(params_path: str | Path, out: str | Path, jobs: int = 1) -> None:
    """Train the spatial grid: the fixed-β sweep, then GECO; in each, pixel SSE and then each family."""
    from rd_train.sweep import run_sweep

    derived = derived_params(params_path)
    with tempfile.TemporaryDirectory(prefix="rd-train-spatial-") as scratch:
        derived_path = Path(scratch) / "spatial_params.yaml"
        derived_path.write_text(yaml.safe_dump(derived, sort_keys=False))
        for sweep in spatial_sweeps(derived):
            for family in ["pixel", *derived["losses"]]:
                where = Path(out) / sweep / family
                print(f"[spatial] {sweep}/{family}: AutoencoderKL runs -> {where}", flush=True)
                run_sweep(derived_path, sweep, family, where, jobs)
