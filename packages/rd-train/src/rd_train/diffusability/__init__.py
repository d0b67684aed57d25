"""Beyond the paper: does the posterior shape that neural losses produce make latents easier to generate?

Public face: `run_stage` (the DVC stage ``diffusability``), `score_run` (one run), the sampler
(`train_flow`, `sample_flow`) and the distances (`sliced_wasserstein`, `mmd_rbf`, `kid`,
`precision_recall`). The study's params (``diffusability``: `DiffusabilityConfig`, `FlowConfig`, the
endpoints) are typed and validated with the rest of params.yaml, in `rd_train.params.sections`. One job per
module: flow.py is the rectified-flow sampler, metrics.py the distances, features.py the
image feature spaces, score.py one run end to end, summary.py the verdicts and relations, report.py the
table, claims section and figures, stage.py the parallel, resumable stage.
"""

from rd_train.diffusability.flow import sample_flow, train_flow
from rd_train.diffusability.metrics import kid, mmd_rbf, precision_recall, sliced_wasserstein
from rd_train.diffusability.score import score_run
from rd_train.diffusability.stage import run_stage

__all__ = [
    "kid",
    "mmd_rbf",
    "precision_recall",
    "run_stage",
    "sample_flow",
    "score_run",
    "sliced_wasserstein",
    "train_flow",
]
