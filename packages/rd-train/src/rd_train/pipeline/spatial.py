"""The spatial-architecture sweep (params.yaml ``spatial``): diffusers' AutoencoderKL in place of the vector
VAE, on a grid of its own, with everything else (data, optimiser, rate control, losses, rules) shared.

`spatial_params` turns params.yaml into the params of that sweep: the same keys every sweep reads, with
``model`` replaced by ``spatial.model`` and the grid (families, λ, β, targets, seeds) by the spatial
section's. So the spatial runs are built, trained, filtered and tested by exactly the code of the vector
sweep (`rd_train.pipeline.sweep`, `rd_train.protocol`), and only this module decides what differs.

`run_spatial_sweep` is the DVC stage ``spatial``: every (sweep, family) of the grid goes through
`rd_train.pipeline.sweep.run_sweep`, from the derived params (`derived_params`) written to a scratch file, so
the runs are the vector sweep's runs with another model, under ``runs/spatial/<sweep>/<family>/<run>``;
finished runs are reused, so an interrupted stage resumes.
"""

from __future__ import annotations

import copy
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from rd_train.config import ConfigError
from rd_train.errors import ParamsError
from rd_train.pipeline.sweep import load_params, run_configs, run_sweep

GRID_KEYS = ("lams", "betas", "rate_targets", "seeds", "geco_initial_beta")


@dataclass(frozen=True)
class SpatialGrid:
    model: dict[str, Any]
    families: list[str]
    lams: list[float]
    betas: list[float]
    rate_targets: list[float]
    seeds: list[int]
    geco_initial_beta: float

    @classmethod
    def from_params(cls, params: dict[str, Any], source: str = "params.yaml") -> SpatialGrid:
        section = params.get("spatial")
        if not isinstance(section, dict):
            raise ParamsError(f"{source} has no `spatial` section (the AutoencoderKL sweep: model, families, "
                              f"{', '.join(GRID_KEYS)}); see params.yaml")
        missing = [key for key in ("model", "families", *GRID_KEYS) if key not in section]
        if missing:
            raise ParamsError(f"{source} spatial: missing key(s) {missing}")
        unknown_keys = sorted(set(section) - {"model", "families", "preregistered_in", *GRID_KEYS})
        if unknown_keys:
            raise ParamsError(f"{source} spatial: unknown key(s) {unknown_keys}; valid: model, families, "
                              f"{', '.join(GRID_KEYS)}, preregistered_in")
        model = section["model"]
        if not isinstance(model, dict) or model.get("kind") != "spatial":
            raise ParamsError(f"{source} spatial.model must be a mapping with kind: spatial (AutoencoderKL)")
        families = [str(f) for f in section["families"]]
        unknown = [f for f in families if f not in params.get("losses", {})]
        if not families or unknown:
            raise ParamsError(f"{source} spatial.families: {unknown or 'empty'}; each must be a key of the "
                              f"losses section {list(params.get('losses', {}))}")
        lists = {key: section[key] for key in ("lams", "betas", "rate_targets", "seeds")}
        for key, values in lists.items():
            # An empty β list runs no fixed-β sweep (the matched-rate claim only, as protocol v3's budget
            # rule can choose).
            if not isinstance(values, list) or (not values and key != "betas"):
                raise ParamsError(f"{source} spatial.{key} must be a non-empty list"
                                  + (" (betas may be empty: no fixed-β sweep)" if key == "betas" else ""))
        if any(float(lam) <= 0 for lam in lists["lams"]):
            raise ParamsError(f"{source} spatial.lams: λ > 0 only (λ = 0 is the family `pixel`, run anyway)")
        for key in ("betas", "rate_targets"):
            if any(float(v) <= 0 for v in lists[key]):
                raise ParamsError(f"{source} spatial.{key} must be positive")
        if float(section["geco_initial_beta"]) <= 0:
            raise ParamsError(f"{source} spatial.geco_initial_beta must be positive")
        return cls(
            model=dict(model),
            families=families,
            lams=sorted(float(v) for v in lists["lams"]),
            betas=sorted(float(v) for v in lists["betas"]),
            rate_targets=sorted(float(v) for v in lists["rate_targets"]),
            seeds=[int(s) for s in lists["seeds"]],
            geco_initial_beta=float(section["geco_initial_beta"]),
        )


def spatial_sweeps(derived: dict[str, Any]) -> list[str]:
    """The sweeps the spatial grid runs, in order: the fixed-β sweep only when it has a β."""
    return [sweep for sweep in ("fixed", "geco") if sweep != "fixed" or derived["sweep"]["betas"]]


def spatial_params(params: dict[str, Any], source: str = "params.yaml") -> dict[str, Any]:
    """The params of the spatial sweep: ``params`` with its model and grid replaced (a new dict)."""
    grid = SpatialGrid.from_params(params, source)
    derived = copy.deepcopy(params)
    derived.pop("spatial")
    derived["profile"] = f"{params.get('profile', 'default')}, spatial (AutoencoderKL)"
    # The commit that fixed this grid before its first run (claims.md names it), not the vector sweep's.
    derived["preregistered_in"] = params["spatial"].get("preregistered_in")
    derived["model"] = copy.deepcopy(grid.model)
    derived["losses"] = {family: copy.deepcopy(params["losses"][family]) for family in grid.families}
    # The spatial grid has no balancer control and no length replicate of its own.
    sweep = {key: value for key, value in params["sweep"].items()
             if key not in ("norm_matched", "length_replicate")}
    sweep.update(lams=grid.lams, betas=grid.betas, rate_targets=grid.rate_targets, seeds=grid.seeds,
                 geco_initial_beta=grid.geco_initial_beta)
    derived["sweep"] = sweep
    return derived


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
    derived = derived_params(params_path)
    with tempfile.TemporaryDirectory(prefix="rd-train-spatial-") as scratch:
        derived_path = Path(scratch) / "spatial_params.yaml"
        derived_path.write_text(yaml.safe_dump(derived, sort_keys=False))
        for sweep in spatial_sweeps(derived):
            for family in ["pixel", *derived["losses"]]:
                where = Path(out) / sweep / family
                print(f"[spatial] {sweep}/{family}: AutoencoderKL runs -> {where}", flush=True)
                run_sweep(derived_path, sweep, family, where, jobs)
