"""The paper's sweeps as DVC stages: runs from ``params.yaml``, and the figures and tables from their metrics.

Two sweeps (spec §3.2, §4.2), each over loss families:

* ``fixed``: λ × β × seed at a fixed β (the rate each λ settles to);
* ``geco``: λ × rate target × seed, β adapted by GECO (the posterior shape at matched rate).

The family ``pixel`` is λ = 0 (pure pixel SSE), shared by both neural families as their baseline.
One stage runs one (sweep, family) in one process; finished runs are reused, so an interrupted
``dvc repro`` continues where it stopped. `rd_train.report` draws the figures and tables.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import yaml

from rd_train.config import TrainConfig, from_dict
from rd_train.metrics import write_json

FAMILY_LABELS = {
    "pixel": "pixel SSE only (λ = 0)",
    "features": "learned patch features (trained on embedded data)",
    "lpips": "LPIPS (VGG)",
    "dinov2": "DINOv2 ViT-S/14 features",
    "patchgan": "PatchGAN (hinge + feature matching)",
}


def family_label(params: dict[str, Any], family: str) -> str:
    """What a table calls a family: from its loss kind (params key names are not descriptions)."""
    kind = "pixel" if family == "pixel" else params["losses"][family]["neural"]
    return FAMILY_LABELS.get(kind, kind)


def load_params(path: str | Path) -> dict[str, Any]:
    params = yaml.safe_load(Path(path).read_text())
    for key in ("data", "model", "optim", "rate", "losses", "sweep"):
        if key not in params:
            raise ValueError(f"{path}: missing section {key!r}")
    return params


def neural_families(params: dict[str, Any]) -> list[str]:
    return list(params["losses"])


def run_configs(params: dict[str, Any], sweep: str, family: str, out: str | Path) -> list[TrainConfig]:
    if sweep not in ("fixed", "geco"):
        raise ValueError(f"sweep must be 'fixed' or 'geco', got {sweep!r}")
    if family != "pixel" and family not in params["losses"]:
        raise ValueError(f"family {family!r} is not in params.yaml losses {list(params['losses'])}")
    s = params["sweep"]
    lams = [0.0] if family == "pixel" else s["lams"]
    controls = s["betas"] if sweep == "fixed" else s["rate_targets"]
    configs = []
    for lam, control, seed in itertools.product(lams, controls, s["seeds"]):
        loss = {} if family == "pixel" else {**params["losses"][family], "lam": float(lam)}
        rate = dict(params["rate"])
        if sweep == "fixed":
            rate.update(mode="fixed", beta=float(control))
            for key in ("geco_step_size", "geco_ema_decay"):
                rate.pop(key, None)
            tag = f"beta{control:g}"
        else:
            rate.update(mode="geco", beta=1.0, target=float(control))
            tag = f"target{control:g}"
        name = f"{family}_lam{lam:g}_{tag}_seed{seed}"
        configs.append(
            from_dict(
                {
                    **params.get("trainer", {}),
                    "out_dir": str(Path(out) / name),
                    "seed": int(seed),
                    "data": params["data"],
                    "model": params["model"],
                    "optim": params["optim"],
                    "loss": loss,
                    "rate": rate,
                }
            )
        )
    return configs


def run_sweep(params_path: str | Path, sweep: str, family: str, out: str | Path, summary: str | Path) -> None:
    from rd_train.run import fit

    params = load_params(params_path)
    results = {}
    for config in run_configs(params, sweep, family, out):
        metrics = fit(config)
        results[Path(config.out_dir).name] = {
            k: metrics[k] for k in ("kl", "variance_kl", "anisotropy", "psnr")
        }
    write_json(summary, results)


