"""Second look at GECO's offset correction: the offset measured with matching lags
(rd_train/training/rate.py).

The first offset pilot (benchmarks/geco_offset_pilot.py, results/cpu-geco-offset-pilot.json) chose the
cosine schedule's floor 0.1 by its rule, with no candidate meeting the 3 % rule: PatchGAN at λ = 5 ended
13.6 % over its 20-nat target (+3.7 % at 5 nats). Its record shows why: at mid-training the PatchGAN run's
KL still rose fast, and the offset, then measured against GECO's fast training-KL EMA (decay 0.95, about
20 steps) while the evaluated weights average about 100 steps (EMA 0.99), measured that lag, not the
held-out offset: the clamp raised the target by 25 %, and the run overshot. The method now measures the
offset against the training KL averaged with the weights' own decay, so both sides lag alike.

This pilot reruns the same runs (seed 99; pixel SSE and each family at its largest λ; the lowest and the
highest target; the params' scale with ``optim.lr_floor`` 0.1, the first pilot's choice). The rule, fixed
before it ran: the sweep keeps the matched-lag offset if its worst |final evaluated KL / target - 1| is
below the first pilot's chosen variant's (13.63 %); the per-run errors and whether every run meets 3 %
are reported either way. It reads the KL only.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import yaml
from bench_params import benchmark_params

ROOT = Path(__file__).resolve().parents[1]
FIRST_PILOT_WORST = 0.1363
TOLERANCE = 0.03
SEED = 99


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default=str(ROOT / "params.yaml"))
    parser.add_argument("--work", default="runs/geco-offset-lag-pilot", help="the pilot's runs (resumable)")
    parser.add_argument("--out",
                        default=str(ROOT / "benchmarks" / "results" / "cpu-geco-offset-lag-pilot.json"))
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    from rd_train.params import load_params
    from rd_train.pipeline.sweep import run_sweep

    base = benchmark_params("geco_offset_lag_pilot", args.params)
    targets = sorted(float(t) for t in base["sweep"]["rate_targets"])
    base["sweep"].update(lams=[max(float(v) for v in base["sweep"]["lams"])],
                         rate_targets=[targets[0], targets[-1]], seeds=[SEED])
    base["optim"]["lr_floor"] = 0.1
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    (work / "params.yaml").write_text(yaml.safe_dump(base, sort_keys=False))
    start = time.perf_counter()
    rows = []
    for family in ["pixel", *base["losses"]]:
        run_sweep(load_params(work / "params.yaml"), "geco", family, work / family, args.jobs)
        for path in sorted((work / family).glob("*/metrics.json")):
            m = json.loads(path.read_text())
            rows.append({"run": path.parent.name, "family": family, "target": m["config"]["rate"]["target"],
                         "kl": m["kl"], "error": m["geco_tracking_error"],
                         "training_target": m["geco_training_target"], "beta": m["beta"]})
    worst = max(abs(r["error"]) for r in rows)
    keep = worst < FIRST_PILOT_WORST
    print("| run | target | evaluated KL | error | training target |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['run']} | {r['target']:g} | {r['kl']:.3f} | {r['error']:+.2%} | "
              f"{r['training_target']:.3f} |")
    print(f"\nworst |error| {worst:.2%} (first pilot's choice: {FIRST_PILOT_WORST:.2%}); every run within "
          f"{TOLERANCE:.0%}: {worst <= TOLERANCE}; keep the matched-lag offset: {keep}")
    out = {"rule": __doc__, "tolerance": TOLERANCE, "seed": SEED, "lr_floor": 0.1, "rows": rows,
           "worst": worst, "first_pilot_worst": FIRST_PILOT_WORST, "keep": keep,
           "seconds": time.perf_counter() - start, "params_steps": base["optim"]["max_steps"]}
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
