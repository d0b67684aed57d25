"""Pilot: does bf16 mixed precision change a converged run's final KL and anisotropy by much less than
the seed-to-seed spread? (The condition for `precision: auto` in the default profile.)

The default profile's runs (params.yaml: model, data, 1500 steps, validations) at one fixed-β cell per
family, β = 0.016 with λ = 5 for the neural families and λ = 0 for pixel SSE, seeds ``--seeds``, trained
once in fp32 (32-true) and once in bf16-mixed through `rd-train sweep --jobs 2`. For each family and
quantity the table gives the fp32 seeds' mean and standard deviation, the per-seed difference
bf16 − fp32 (same seed: same initialisation and batches), and |mean difference| / seed SD. A run's metrics
are evaluated in fp32 whatever precision trained it. Writes JSON (``--out``) and prints a Markdown table.

The rule, fixed before the pilot ran: the default profile adopts ``precision: auto`` only if, for every
family and both quantities, |mean over seeds of bf16 − fp32| ≤ 0.5 × the fp32 seeds' standard deviation.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CLI = "import sys; from rd_train.cli import main; sys.exit(main(sys.argv[1:]))"
PRECISIONS = ("32-true", "bf16-mixed")
ADOPT_IF_AT_MOST = 0.5  # |mean bf16 − fp32 difference| / fp32 seed SD, every family and quantity
FAMILIES = ("pixel", "perceptual", "adversarial")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default="runs/precision-pilot",
                        help="where the pilot's runs live (resumable)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "cpu-precision-pilot.json"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, help="override optim.max_steps (a quick check of the script)")
    args = parser.parse_args()
    work = Path(args.work).resolve()
    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    data = work / "embedded"  # the default profile's embedded dataset, built once for the pilot
    if not (data / "meta.json").is_file():
        sys.path[:0] = [str(ROOT / "packages" / p / "src") for p in ("rd-theory", "rd-kernels", "rd-train")]
        from rd_train.config import DataConfig
        from rd_train.data import save_embedded

        save_embedded(data, DataConfig(**base["embedded"]))
    base["data"]["root"] = str(data)
    base["sweep"].update(lams=[5.0], betas=[0.016], seeds=args.seeds)
    if args.steps:
        base["optim"]["max_steps"] = args.steps
        base["trainer"]["val_every_n_steps"] = max(1, args.steps // 20)
        base["rate"]["warmup_steps"] = args.steps // 10
    runs: dict[str, dict[str, dict[str, dict]]] = {}
    seconds = {}
    for precision in PRECISIONS:
        params = {**base, "trainer": {**base["trainer"], "precision": precision}}
        folder = work / precision
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "params.yaml").write_text(yaml.safe_dump(params))
        start = time.perf_counter()
        for family in FAMILIES:
            done = subprocess.run([sys.executable, "-c", CLI, "sweep", "--sweep", "fixed", "--family", family,
                                   "--out", str(folder / family), "--jobs", "2"], cwd=folder, check=False,
                                  env={**os.environ, "MPLBACKEND": "Agg", "TRITON_INTERPRET": "0"})
            if done.returncode != 0:
                return done.returncode
            for path in sorted((folder / family).glob("*/metrics.json")):
                m = json.loads(path.read_text())
                runs.setdefault(family, {}).setdefault(precision, {})[str(m["config"]["seed"])] = {
                    k: m[k] for k in ("kl", "anisotropy", "psnr", "precision")}
        seconds[precision] = time.perf_counter() - start

    table = ["| family | quantity | fp32 mean ± seed SD | bf16 − fp32 per seed | abs(mean diff) / seed SD |",
             "|---|---|---:|---:|---:|"]
    summary: dict[str, dict] = {}
    for family, by_precision in runs.items():
        for quantity in ("kl", "anisotropy"):
            seeds = sorted(by_precision["32-true"])
            fp32 = [by_precision["32-true"][s][quantity] for s in seeds]
            bf16 = [by_precision["bf16-mixed"][s][quantity] for s in seeds]
            diffs = [b - f for b, f in zip(bf16, fp32, strict=True)]
            sd = statistics.stdev(fp32) if len(fp32) > 1 else float("nan")
            ratio = abs(statistics.fmean(diffs)) / sd if sd > 0 else float("nan")
            summary[f"{family}/{quantity}"] = {"fp32": fp32, "bf16_minus_fp32": diffs, "seed_sd": sd,
                                               "abs_mean_diff_over_sd": ratio}
            table.append(f"| {family} | {quantity} | {statistics.fmean(fp32):.3f} ± {sd:.3f} | "
                         + ", ".join(f"{d:+.3f}" for d in diffs) + f" | {ratio:.2f} |")
    adopt = all(v["abs_mean_diff_over_sd"] <= ADOPT_IF_AT_MOST for v in summary.values())
    table.append("")
    table.append(f"Rule: |mean difference| / seed SD <= {ADOPT_IF_AT_MOST} everywhere -> "
                 f"{'adopt precision: auto' if adopt else 'keep 32-true'}")
    print("\n".join(table))
    print({k: f"{v:.0f} s" for k, v in seconds.items()})
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]), "runs": runs,
                               "summary": summary, "wall_seconds": seconds, "table": table,
                               "rule": f"adopt if every |mean diff| / SD <= {ADOPT_IF_AT_MOST}",
                               "adopt": adopt}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
