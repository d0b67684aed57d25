"""The spatial architecture (diffusers AutoencoderKL): its grid (params.yaml ``spatial``), its sweep and its
report, by the vector sweep's code (`grid.py`, `sweep.py`, `report.py`)."""

from rd_train.spatial.grid import SpatialGrid, spatial_params
from rd_train.spatial.report import write_spatial_report
from rd_train.spatial.sweep import derived_params, run_spatial_sweep

__all__ = ["SpatialGrid", "derived_params", "run_spatial_sweep", "spatial_params", "write_spatial_report"]
