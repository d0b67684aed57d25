"""How long must a default-profile run train to pass the pre-registered window rule? A length pilot.

At 1500 steps, 18 of the default sweep's 126 runs pass `rules`/`stationarity` (paper/tables/
convergence.md), and 101 of the 108 that fail do so on the anisotropy's drift. This pilot trains the
middle of the β grid (β = 0.016, the fixed-β sweep; λ = 5 for VGG16 (HED) and PatchGAN, the pixel-SSE
baseline at λ = 0) with seeds 0 and 1 at longer lengths, everything else as params.yaml, and applies
the same rule with the same code as `aggregate` (`rd_train.analysis.convergence.check`). Fixed before
it ran: the cells, the seeds, the lengths (2x and 4x; chosen by time: about 20 min of the 2-core
machine), and that the profile's fractions of training stay fractions (the warm-up 10 %, a
validation every 5 %, so the rule's window always holds 8 validations); no run is left out.

Run from the repository root after `dvc repro prepare data.dvc` (nothing else running):

    python benchmarks/convergence_pilot.py --out benchmarks/results/cpu-convergence-pilot.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
CELLS = {"pixel": 0.0, "perceptual": 5.0, "adversarial": 5.0}
BETA = 0.016
SEEDS = [0, 1]


def pilot_params(params: dict[str, Any], steps: int) -> dict[str, Any]:
    """params.yaml at ``steps`` steps, its warm-up and validation cadence kept as fractions of training."""
    base = params["optim"]["max_steps"]
    derived = json.loads(json.dumps(params))
    derived["data"]["root"] = str(ROOT / params["data"]["root"])
    derived["optim"]["max_steps"] = steps
    derived["rate"]["warmup_steps"] = round(params["rate"]["warmup_steps"] * steps / base)
    derived["trainer"]["val_every_n_steps"] = round(params["trainer"]["val_every_n_steps"] * steps / base)
    derived["sweep"].update(lams=[CELLS["perceptual"]], betas=[BETA], seeds=SEEDS)
    return derived


def verdicts(runs: Path, params: dict[str, Any]) -> list[dict[str, Any]]:
    from rd_train.analysis.convergence import Rules, check
    from rd_train.analysis.stationarity import WindowRule, stationarity

    rules, window = Rules.from_params(params), WindowRule.from_params(params)
    rows = []
    for path in sorted(runs.glob("*/*/metrics.json")):
        metrics = json.loads(path.read_text())
        verdict = check(metrics, rules, window)
        drift = stationarity(metrics, window)
        rows.append({
            "run": path.parent.name, "steps": metrics["steps"], "passed": verdict.passed,
            "reason": verdict.reason, "kl": metrics["kl"], "anisotropy": metrics["anisotropy"],
            "drift_over_tolerance": dict(zip(("kl", "pixel_sse", "anisotropy"),
                                             (abs(d) / t for d, t in zip(drift.drifts, drift.tolerances,
                                                                         strict=True)), strict=True)),
            "train_seconds": metrics.get("train_seconds_this_process"),
        })
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[3000, 6000])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    from rd_train.params import load_params
    from rd_train.pipeline.sweep import run_sweep

    params = dict(load_params(ROOT / "params.yaml").raw)
    result: dict[str, Any] = {"what": __doc__.split("\n\n")[0], "cells": {"beta": BETA, "lams": CELLS,
                              "seeds": SEEDS}, "command": "python benchmarks/convergence_pilot.py "
                              f"--lengths {' '.join(map(str, args.lengths))}", "lengths": {}}
    with tempfile.TemporaryDirectory(prefix="rd-convergence-pilot-") as scratch:
        for steps in args.lengths:
            derived = pilot_params(params, steps)
            where = Path(scratch) / str(steps)
            where.mkdir()
            path = where / "params.yaml"
            path.write_text(yaml.safe_dump(derived, sort_keys=False))
            start = time.perf_counter()
            for family in CELLS:
                run_sweep(load_params(path), "fixed", family, where / "runs" / family, args.jobs)
            rows = verdicts(where / "runs", derived)
            result["lengths"][str(steps)] = {
                "warmup_steps": derived["rate"]["warmup_steps"],
                "val_every_n_steps": derived["trainer"]["val_every_n_steps"],
                "passed": sum(r["passed"] for r in rows), "runs": len(rows),
                "wall_seconds": time.perf_counter() - start, "verdicts": rows}
            print(f"{steps} steps: {result['lengths'][str(steps)]['passed']}/{len(rows)} pass", flush=True)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(result, indent=1) + "\n")  # each length as it finishes


if __name__ == "__main__":
    main()
