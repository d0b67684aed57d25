"""Diagnostic: how far PatchGAN λ = 5's rate wanders with no rate loop at all, at the β GECO settles to.

Every GECO run that ends more than 3 % off its target (the sweep's four, the tracking pilots') is PatchGAN
at λ = 5, and under every GECO setting piloted its evaluated KL keeps swinging by ±5-20 % to the end of
training. Is that the loop ringing, or the rate itself moving? This trains the pilots' PatchGAN λ = 5 runs
(seeds 96-99, the default length) at fixed β = 0.004 and 0.008, the range GECO's β ends in at 10 and
20 nats (the pilots' runs: 0.002-0.04), and reports each run's validation KL: its range over the second
half of training relative to its mean there, and its drift over the last 40 % (convergence.md's measure).

No rule and no choice: a measurement. Writes JSON (``--out``) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from bench_params import benchmark_params

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SEEDS = [96, 97, 98, 99]  # the tracking pilots' seeds
BETAS = [0.004, 0.008]


def narrow(base: dict[str, Any]) -> dict[str, Any]:
    """``base``'s fixed-β sweep reduced to its largest λ, at `BETAS` and `SEEDS` (main trains PatchGAN's)."""
    params = json.loads(json.dumps(base))
    params["sweep"].update(lams=[max(float(v) for v in params["sweep"]["lams"])], betas=BETAS, seeds=SEEDS)
    return params


def summarise(metrics: dict[str, Any]) -> dict[str, Any]:
    """The validation KL's range over the second half and its drift over the last 40 %, both relative."""
    from rd_train.analysis.stationarity import window_drift

    history = np.asarray(metrics["validation_history"], dtype=float)
    steps, kl = history[:, 0], history[:, 1]
    end = steps[-1]
    half, window = kl[steps > end / 2], steps >= 0.6 * end
    return {"seed": metrics["identity"]["seed"], "beta": metrics["identity"]["beta"], "kl": metrics["kl"],
            "range_second_half": float((half.max() - half.min()) / half.mean()),
            "drift_last_40": window_drift(steps[window], kl[window]) / float(kl[window].mean()),
            "validation_kl": [[float(s), float(v)] for s, v in zip(steps, kl, strict=True)]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default=str(ROOT / "params.yaml"))
    parser.add_argument("--work", default="runs/fixed-beta-wander", help="the runs (resumable)")
    parser.add_argument("--out", default=str(RESULTS / "cpu-patchgan-fixed-beta-wander.json"))
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    from rd_train.params import load_params
    from rd_train.pipeline.sweep import run_sweep

    start = time.perf_counter()
    folder = Path(args.work).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    params = narrow(benchmark_params("fixed_beta_wander", args.params))
    (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    loaded = load_params(folder / "params.yaml")
    (family,) = [k for k, v in loaded.raw["losses"].items() if v.get("neural") == "patchgan"]
    run_sweep(loaded, "fixed", family, folder / family, args.jobs)
    rows = [summarise(json.loads(p.read_text())) for p in sorted((folder / family).glob("*/metrics.json"))]
    print("| β | seed | final KL | range, second half | drift, last 40 % | validation KL, every 100 steps |")
    print("|---:|---:|---:|---:|---:|---|")
    for r in rows:
        trace = " ".join(f"{v:.1f}" for s, v in r["validation_kl"] if s % 100 == 0)
        print(f"| {r['beta']:g} | {r['seed']} | {r['kl']:.2f} | {r['range_second_half']:.0%} | "
              f"{r['drift_last_40']:+.1%} | {trace} |")
    report = {"question": __doc__, "seeds": SEEDS, "betas": BETAS, "rows": rows,
              "seconds": time.perf_counter() - start}
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
