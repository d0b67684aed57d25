"""The spatial-architecture sweep (params.yaml ``spatial``): diffusers' AutoencoderKL in place of the vector
VAE, on a grid of its own, with everything else (data, optimiser, rate control, losses, rules) shared.

`rd_train.params.Params.spatial_params` turns params.yaml into the params of that sweep: the same keys
every sweep reads, with ``model`` replaced by ``spatial.model`` and the grid (families, λ, β, targets,
seeds) by the spatial section's (`rd_train.params.sections.spatial_params`). So the spatial runs are built,
trained and tested by exactly the code of the vector sweep (`rd_train.pipeline.sweep`, `rd_train.protocol`).

`run_spatial_sweep` is the DVC stage ``spatial``: every (sweep, family) of the grid goes through
`rd_train.pipeline.sweep.run_sweep` with the derived params (`rd_train.params.Params.spatial_params`), so
the runs are the vector sweep's runs with another model, under ``runs/spatial/<sweep>/<family>/<run>``;
finished runs are reused, so an interrupted stage resumes.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from rd_train.pipeline.sweep import run_sweep

if TYPE_CHECKING:
    from rd_train.params import Params


def run_spatial_sweep(params: Params, out: str | Path, jobs: int = 1) -> None:
    """Train the spatial grid: the fixed-β sweep, then GECO; in each, pixel SSE and then each family."""
    derived = params.spatial_params()  # every run config of the grid checked before any run starts
    for sweep, family in derived.blocks:
        where = Path(out) / sweep / family
        print(f"[spatial] {sweep}/{family}: AutoencoderKL runs -> {where}", flush=True)
        run_sweep(derived, sweep, family, where, jobs)
