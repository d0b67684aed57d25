"""The spatial architecture (diffusers AutoencoderKL): its grid (params.yaml ``spatial``) and its sweep, by
the vector sweep's code (`grid.py`, `sweep.py`). Its report is the records' report (`rd_train.protocol`),
so importing this package for training imports no analysis code (the stage's dependencies, dvc.yaml)."""

from rd_train.spatial.grid import SpatialGrid, spatial_params
from rd_train.spatial.sweep import derived_params, run_spatial_sweep

__all__ = ["SpatialGrid", "derived_params", "run_spatial_sweep", "spatial_params"]
