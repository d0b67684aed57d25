"""Beyond the paper: does the posterior shape that neural losses produce make latents easier to generate?

Public face: `run_stage` (the DVC stage ``diffusability``), `score_run` (one run), `DiffusabilityConfig`
and `FlowConfig` (params.yaml ``diffusability``), the sampler (`train_flow`, `sample_flow`) and the
distances (`sliced_wasserstein`, `mmd_rbf`, `kid`, `precision_recall`). One job per module: config.py
validates the params, flow.py is the rectified-flow sampler, metrics.py the distances, features.py the
image feature spaces, score.py one run end to end, summary.py the verdicts and relations, report.py the
table, claims section and figures, stage.py the parallel, resumable stage.
"""

from rd_train.diffusability.config import ENDPOINTS, DiffusabilityConfig
from rd_train.diffusability.flow import FlowConfig, sample_flow, train_flow
from rd_train.diffusability.metrics import kid, mmd_rbf, precision_recall, sliced_wasserstein
from rd_train.diffusability.score import score_run
from rd_train.diffusability.stage import run_stage

__all__ = [
    "ENDPOINTS",
    "DiffusabilityConfig",
    "FlowConfig",
    "kid",
    "mmd_rbf",
    "precision_recall",
    "run_stage",
    "sample_flow",
    "score_run",
    "sliced_wasserstein",
    "train_flow",
]
