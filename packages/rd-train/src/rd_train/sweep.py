"""The paper's sweeps as DVC stages: runs from ``params.yaml``, and the figures and tables from their metrics.

Two sweeps (spec §3.2, §4.2), each over loss families:

* ``fixed``: λ × β × seed at a fixed β (the rate each λ settles to);
* ``geco``: λ × rate target × seed, β adapted by GECO from ``geco_initial_beta`` (the posterior shape at
  matched rate).

The family ``pixel`` is λ = 0 (pure pixel SSE), shared by both neural families as their baseline.
One stage runs one (sweep, family) in one process; finished runs are reused, so an interrupted
``dvc repro`` continues where it stopped. `rd_train.report` draws the figures and tables from the
runs' ``metrics.json``. A params file that is malformed or names an unknown family stops the stage
with a `ParamsError` naming the file and the key.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from rd_train.config import ConfigError, TrainConfig, from_dict, read_yaml
from rd_train.errors import ParamsError

FAMILY_LABELS = {
    "pixel": "pixel SSE only (λ = 0)",
    "vgg16_hed": "VGG16 (HED) features",
    "lpips": "LPIPS (VGG)",
    "dinov2": "DINOv2 ViT-S/14 features",
    "patchgan": "PatchGAN (hinge + feature matching)",
}


def family_label(params: dict[str, Any], family: str) -> str:
    """What a table calls a family: from its loss kind (params key names are not descriptions)."""
    kind = "pixel" if family == "pixel" else params["losses"][family]["neural"]
    return FAMILY_LABELS.get(kind, kind)


SECTIONS = ("data", "model", "optim", "rate", "losses", "sweep")


def load_params(path: str | Path) -> dict[str, Any]:
    params = read_yaml(path, "params file")
    missing = [key for key in SECTIONS if not isinstance(params.get(key), dict)]
    if missing:
        raise ParamsError(f"{path}: missing or non-mapping section(s) {missing}; each of {list(SECTIONS)} "
                          "is required (see params.yaml)")
    return params


def neural_families(params: dict[str, Any]) -> list[str]:
    return list(params["losses"])


def run_configs(params: dict[str, Any], sweep: str, family: str, out: str | Path) -> list[TrainConfig]:
    if sweep not in ("fixed", "geco"):
        raise ParamsError(f"sweep must be 'fixed' or 'geco', got {sweep!r}")
    if family != "pixel" and family not in params["losses"]:
        raise ParamsError(f"family {family!r} is neither 'pixel' nor a key of the params' losses section "
                          f"{list(params['losses'])}")
    s = params["sweep"]
    missing = [key for key in ("lams", "betas", "rate_targets", "seeds", "geco_initial_beta") if key not in s]
    if missing:
        raise ParamsError(f"the params' sweep section lacks {missing}")
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
            rate.update(mode="geco", beta=float(s["geco_initial_beta"]), target=float(control))
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


def run_sweep(params_path: str | Path, sweep: str, family: str, out: str | Path, jobs: int = 1) -> None:
    """Train every run of (sweep, family); finished runs are reused. ``jobs`` > 1 trains that many runs
    at once in worker processes that share the machine's cores (one thread each on a 2-core CPU):
    small models use two single-threaded processes better than one two-threaded one."""
    params = load_params(params_path)
    try:
        configs = run_configs(params, sweep, family, out)
    except ConfigError as error:  # a value of params.yaml, named by its run-config key
        raise ParamsError(f"{params_path}: {error}") from None
    if jobs < 1:
        raise ParamsError(f"--jobs must be >= 1, got {jobs}")
    if jobs == 1:
        from rd_train.run import fit  # torch and Lightning: only once the params are known to be good

        for config in configs:
            fit(config)
        return
    import multiprocessing
    import os
    from concurrent.futures import ProcessPoolExecutor

    # OMP_NUM_THREADS, when set, is the threads of each run (several stages may share the machine).
    threads = int(os.environ.get("OMP_NUM_THREADS") or max(1, (os.cpu_count() or 1) // jobs))
    context = multiprocessing.get_context("spawn")  # no forked torch or CUDA state
    with ProcessPoolExecutor(jobs, mp_context=context, initializer=_worker_init, initargs=(threads,)) as pool:
        futures = [pool.submit(_fit_in_worker, config) for config in configs]
        try:
            for future in futures:
                future.result()
        except BaseException:  # the first failure: runs already started finish, the rest are not started
            pool.shutdown(cancel_futures=True)
            raise


def _worker_init(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _fit_in_worker(config: TrainConfig) -> None:
    from rd_train.run import fit

    fit(config)
