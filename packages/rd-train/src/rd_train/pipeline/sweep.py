"""The paper's sweeps as DVC stages: runs from ``params.yaml``, and the figures and tables from their metrics.

Two sweeps (spec §3.2, §4.2), each over loss families:

* ``fixed``: λ × β × seed at a fixed β (the rate each λ settles to);
* ``geco``: λ × rate target × seed, β adapted by GECO from ``geco_initial_beta`` (the posterior shape at
  matched rate);
* ``length``: the training-length replicate of ``geco`` (``sweep.length_replicate``): its ``targets`` ×
  every λ × seed at ``steps_factor`` times the steps, the warm-up and the validation cadence scaled with
  them (both are fixed fractions of training), so a matched-rate effect is seen at two lengths;
* ``control``: the balancer control, neural families only: ``norm_matched.lams`` × ``norm_matched.betas``
  × seed at a fixed β with ``loss.norm_match`` (the balanced gradient rescaled to the norm pixel SSE
  alone gets), beside the same cells of ``fixed`` (does the rate drop at fixed β survive?).

The family ``pixel`` is λ = 0 (pure pixel SSE), shared by both neural families as their baseline. One stage
runs one (sweep, family) in one process; finished runs are reused, so an interrupted ``dvc repro`` continues
where it stopped. Every VGG16 (HED) run of a CPU sweep reads its targets' features from one table shared by
the whole pipeline (`rd_train.training.feature_table.shared_table`: built once, memory-mapped by every
worker, keyed by a fingerprint of the images and the network, bit-identical to the network's features) under
``.cache/feature-tables`` or ``$RD_TRAIN_FEATURE_TABLES``: outside every DVC output, since it is a cache of
the network's values, not a result. `rd_train.protocol` draws the figures and tables from the runs' records.
The params arrive as one validated `rd_train.params.Params`: a file that is malformed or names an unknown
family stopped the command, with a `ParamsError` naming the file and the key, before any run started.
"""

from __future__ import annotations

import itertools
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rd_train.config import GECO_KEYS, TrainConfig, from_dict
from rd_train.errors import ParamsError

if TYPE_CHECKING:
    from torch import nn

    from rd_train.params import Params

SWEEPS = ("fixed", "geco", "length", "control")


def length_replicate(params: Mapping[str, Any]) -> tuple[list[float], int]:
    """(targets, steps factor) of ``sweep.length_replicate``."""
    section = params["sweep"].get("length_replicate")
    if not isinstance(section, dict) or set(section) != {"targets", "steps_factor"}:
        raise ParamsError("the length sweep reads the params' sweep.length_replicate {targets, steps_factor}")
    targets, factor = section["targets"], section["steps_factor"]
    if not isinstance(targets, list) or not targets or any(float(t) <= 0 for t in targets):
        raise ParamsError(f"sweep.length_replicate.targets must be a non-empty list of rates > 0, "
                          f"got {targets}")
    if isinstance(factor, bool) or not isinstance(factor, int) or factor < 2:
        raise ParamsError(f"sweep.length_replicate.steps_factor must be an integer >= 2, got {factor!r}")
    return [float(t) for t in targets], factor


def run_configs(params: Mapping[str, Any], sweep: str, family: str, out: str | Path) -> list[TrainConfig]:
    if sweep not in SWEEPS:
        raise ParamsError(f"sweep must be one of {list(SWEEPS)}, got {sweep!r}")
    if family != "pixel" and family not in params["losses"]:
        raise ParamsError(f"family {family!r} is neither 'pixel' nor a key of the params' losses section "
                          f"{list(params['losses'])}")
    s = params["sweep"]
    missing = [key for key in ("lams", "betas", "rate_targets", "seeds", "geco_initial_beta") if key not in s]
    if missing:
        raise ParamsError(f"sweep: lacks {missing}")
    lams = [0.0] if family == "pixel" else s["lams"]
    controls = s["betas"] if sweep == "fixed" else s["rate_targets"]
    factor = 1
    if sweep == "length":
        controls, factor = length_replicate(params)
    if sweep == "control":
        matched = s.get("norm_matched")
        if family == "pixel" or not isinstance(matched, dict) or not {"lams", "betas"} <= set(matched):
            raise ParamsError("the control sweep runs neural families only, from the params' "
                              "sweep.norm_matched {lams, betas}")
        lams, controls = matched["lams"], matched["betas"]
    configs = []
    for lam, control, seed in itertools.product(lams, controls, s["seeds"]):
        loss = {} if family == "pixel" else {**params["losses"][family], "lam": float(lam)}
        rate = dict(params["rate"])
        if sweep in ("fixed", "control"):
            rate.update(mode="fixed", beta=float(control))
            for key in GECO_KEYS:  # a fixed β reads none of them: its config keeps their defaults
                rate.pop(key, None)
            tag = f"beta{control:g}"
            if sweep == "control":
                loss["norm_match"] = True
                tag += "_normmatched"
        else:
            rate.update(mode="geco", beta=float(s["geco_initial_beta"]), target=float(control))
            tag = f"target{control:g}"
        trainer, optim = dict(params.get("trainer", {})), dict(params["optim"])
        if factor > 1:  # a pure dilation: warm-up and validation cadence stay the same fractions
            optim["max_steps"] = int(optim["max_steps"]) * factor
            rate["warmup_steps"] = int(rate.get("warmup_steps", 0)) * factor
            if "val_every_n_steps" in trainer:
                trainer["val_every_n_steps"] = int(trainer["val_every_n_steps"]) * factor
            if "geco_correct_every_n_steps" in rate:
                rate["geco_correct_every_n_steps"] = int(rate["geco_correct_every_n_steps"]) * factor
            tag += f"_steps{optim['max_steps']}"
        name = f"{family}_lam{lam:g}_{tag}_seed{seed}"
        identity = {
            "sweep": sweep, "family": family, "architecture": params["model"].get("kind", "vector"),
            "lam": float(lam), "beta": float(control) if sweep in ("fixed", "control") else None,
            "target": None if sweep in ("fixed", "control") else float(control), "seed": int(seed),
            "steps": int(optim["max_steps"]),
        }
        configs.append(
            from_dict(
                {
                    **trainer,
                    "out_dir": str(Path(out) / name),
                    "seed": int(seed),
                    "data": params["data"],
                    "model": params["model"],
                    "optim": optim,
                    "loss": loss,
                    "rate": rate,
                    "identity": identity,
                }
            )
        )
    return configs


def run_sweep(params: Params, sweep: str, family: str, out: str | Path, jobs: int = 1) -> None:
    """Train every run of (sweep, family); finished runs are reused. ``jobs`` > 1 trains that many runs
    at once in worker processes, the cores divided among them (workers.py: threads × workers ≤ the
    cores, whatever OMP_NUM_THREADS says; ``RD_TRAIN_CORES`` sets the cores). Small models use two
    single-threaded processes better than one two-threaded one. Each run's output goes to its
    ``train.log``; the sweep prints one line per finished run and the stage's ETA (progress.py)."""
    configs = params.run_configs(sweep, family, out)
    if jobs < 1:
        raise ParamsError(f"--jobs must be >= 1, got {jobs}")
    from rd_train.pipeline.progress import SweepProgress
    from rd_train.pipeline.workers import plan_workers, set_threads, worker_pool

    plan = plan_workers(jobs)
    progress = SweepProgress(f"{sweep}/{family}", len(configs), note=plan.describe())
    if plan.workers == 1:
        set_threads(plan.threads)
        for config in configs:
            progress.finished(*fit_quietly(config))
        progress.close()
        return
    from concurrent.futures import as_completed

    with worker_pool(plan, stop_on_signals=True) as pool:
        futures = {pool.submit(fit_quietly, config): config for config in configs}
        try:
            for future in as_completed(futures):
                progress.finished(*future.result())
        except BaseException:  # the first failure: runs already started finish, the rest are not started
            failed = [f for f in futures if f.done() and not f.cancelled() and f.exception() is not None]
            for f in failed[:1]:
                log = Path(futures[f].out_dir) / "train.log"
                print(f"[{sweep}/{family}] {Path(futures[f].out_dir).name} failed; its output: {log}",
                      file=sys.stderr, flush=True)
            pool.shutdown(cancel_futures=True)
            raise
    progress.close()


TABLES_ENV = "RD_TRAIN_FEATURE_TABLES"


def feature_table_directory() -> Path:
    """Where the sweep's shared target-feature tables live (module doc)."""
    return Path(os.environ.get(TABLES_ENV) or Path(".cache") / "feature-tables")


def sweep_neural_loss(config: TrainConfig, tables: Path | None = None) -> nn.Module | None:
    """The neural loss a CPU sweep trains ``config`` with: a VGG16 (HED) run reads its targets' features
    from the sweep's shared table (under ``tables``, by default `feature_table_directory`; built on first
    use); every other run builds its own loss in `fit` (None)."""
    from rd_train.training.feature_table import table_problems, target_tabled_loss

    if table_problems(config):
        return None
    return target_tabled_loss(config, directory=tables if tables is not None else feature_table_directory())


def fit_quietly(config: TrainConfig) -> tuple[str, dict[str, Any], float, bool]:
    """Fit one run with its output in ``<run>/train.log``: (name, headline metrics, seconds, reused)."""
    import time

    from rd_train.pipeline.workers import output_to, running
    from rd_train.training.run import fit, is_finished

    out = Path(config.out_dir)
    reused = is_finished(config)
    start = time.perf_counter()
    if reused:
        metrics = fit(config)
    else:
        with running(), output_to(out / "train.log"):
            metrics = fit(config, sweep_neural_loss(config))
    keys = ("kl", "anisotropy", "psnr", "beta", "precision")
    return out.name, {k: metrics.get(k) for k in keys}, time.perf_counter() - start, reused
