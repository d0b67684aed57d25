"""Pilot: does bf16 move a run's final KL and anisotropy by more than a change of rounding alone does?

The earlier pilot (commit 298b7b8, `benchmarks/results/cpu-precision-pilot.json`) compared bf16's shift
with the seed-to-seed spread and had no yardstick for what a perturbation of rounding alone does to
the same runs. This one measures that yardstick beside bf16, on the same seeds.

Design (fixed in this file in a commit before the pilot's first run):

* Families: those where bf16 trains faster on the 2-core project machine (AMD EPYC, ``avx512_bf16``,
  no AMX; ms per step fp32 -> bf16, one thread: VGG16 (HED) 69 -> 43, pixel 13.0 -> 10.7). PatchGAN is
  slower in bf16 (21.7 -> 22.8 ms), so it stays fp32 and is not run.
* Runs: the default profile's runs (params.yaml: data, model, optimiser, 1500 steps, validations, EMA
  evaluation) at the fixed-β cell β = 0.016, λ = 5 for VGG16 (HED) and λ = 0 for pixel SSE, seeds 0-4.
  Each seed is trained three times, with the same initialisation, noise and batch order, each run
  in one process of one thread (two such processes share the two cores):

  - ``fp32``: ``32-true``, convolutions through oneDNN (what the sweeps run);
  - ``fp32-reordered``: ``32-true`` with oneDNN switched off (``torch.backends.mkldnn.enabled =
    False``), so convolutions run PyTorch's own kernels: the same arithmetic, other summation orders.
    This is the rounding-only control. (Two threads instead of one, and oneDNN capped at AVX2, left
    every number bit-identical to ``fp32`` in a 40-step fp32 check of this script, so neither gives
    a yardstick on this machine.)
  - ``bf16``: ``bf16-mixed``, oneDNN on.

  A run's metrics are evaluated in fp32 whatever precision trained it (the validation history too).
* Rule. For each family f and quantity q (final validation KL, final anisotropy), with d(a, b) the
  absolute difference of q between variants a and b of the same seed:

      R = mean over seeds of d(fp32-reordered, fp32)    (the rounding-only shift)
      B = mean over seeds of d(bf16, fp32)              (bf16's shift)

  bf16 is adopted for f only where B <= 2 R for both quantities. Every seed counts; nothing is
  excluded but a run that stopped on a non-finite value, which is then listed and counts as not
  adopted for its family. If the two fp32 variants agree bit for bit on every seed of a family
  (R = 0), rounding alone moves nothing, and bf16, which does move the numbers, is not adopted there.
* Reported beside the verdict, not used by it: the signed mean shifts, the seed SD of ``fp32``, and
  B / R.

Adopting bf16 for a family changes the default profile's training, so it lands with the pipeline's
next re-run; until then the default profile stays fp32 (params.yaml `trainer.precision`). Writes JSON
(``--out``) and prints a Markdown table. Resumable: finished runs under ``--work`` are reused.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
FAMILIES = ("perceptual", "pixel")  # VGG16 (HED) and pixel SSE: where bf16 is faster here
QUANTITIES = ("kl", "anisotropy")
SEEDS = (0, 1, 2, 3, 4)
ADOPT_IF_AT_MOST = 2.0  # B / R, every quantity of a family
VARIANTS = {"fp32": ("32-true", True), "fp32-reordered": ("32-true", False), "bf16": ("bf16-mixed", True)}
REFERENCE, CONTROL, CANDIDATE = VARIANTS  # variant -> (trainer.precision, oneDNN enabled)


def prelude(onednn: bool) -> str:
    """The sweep's CLI, in this process (one worker), with oneDNN on or off for every run it trains."""
    return (f"import sys, torch; torch.backends.mkldnn.enabled = {onednn}; "
            "from rd_train.cli import main; sys.exit(main(sys.argv[1:]))")


def train(work: Path, base: dict, variant: str, family: str, seeds: list[int]) -> dict[int, dict]:
    """The variant's runs of one family, the seeds split over two one-thread processes that run at
    once (`rd-train sweep --jobs 1` each; resumable); seed -> metrics.json."""
    precision, onednn = VARIANTS[variant]
    processes = []
    for half, subset in enumerate((seeds[0::2], seeds[1::2])):
        if not subset:
            continue
        folder = work / variant / f"{family}-{half}"
        folder.mkdir(parents=True, exist_ok=True)
        params = {**base, "trainer": {**base["trainer"], "precision": precision},
                  "sweep": {**base["sweep"], "seeds": list(subset)}}
        (folder / "params.yaml").write_text(yaml.safe_dump(params))
        processes.append(subprocess.Popen(
            [sys.executable, "-c", prelude(onednn), "sweep", "--sweep", "fixed", "--family", family,
             "--out", str(folder / "runs"), "--jobs", "1"], cwd=folder,
            env={**os.environ, "MPLBACKEND": "Agg", "TRITON_INTERPRET": "0", "RD_TRAIN_CORES": "1"}))
    for process in processes:
        if process.wait() != 0:
            raise SystemExit(f"precision_pilot: a {variant} {family} sweep exited {process.returncode}")
    runs = {}
    for path in sorted((work / variant).glob(f"{family}-*/runs/*/metrics.json")):
        metrics = json.loads(path.read_text())
        runs[int(metrics["config"]["seed"])] = metrics
    return runs


def verdicts(runs: dict[str, dict[str, dict[int, dict]]]) -> dict[str, dict]:
    """The rule above, per family: R, B, B / R per quantity, and whether bf16 is adopted."""
    out: dict[str, dict] = {}
    for family, by_variant in runs.items():
        seeds = sorted(set.intersection(*(set(v) for v in by_variant.values())))
        finite = all(all(map(_finite, (by_variant[v][s][q] for v in VARIANTS for q in QUANTITIES)))
                     for s in seeds)
        family_out: dict[str, object] = {"seeds": seeds}
        adopt = finite and len(seeds) == len(SEEDS)
        for q in QUANTITIES:
            value = {v: [float(by_variant[v][s][q]) for s in seeds] for v in VARIANTS}
            rounding = [a - b for a, b in zip(value[CONTROL], value[REFERENCE], strict=True)]
            bf16 = [a - b for a, b in zip(value[CANDIDATE], value[REFERENCE], strict=True)]
            r = float(np.mean(np.abs(rounding)))
            b = float(np.mean(np.abs(bf16)))
            ratio = b / r if r > 0 else float("inf")  # NaN when a value is NaN: never <= 2
            adopt = adopt and ratio <= ADOPT_IF_AT_MOST
            family_out[q] = {
                "values": value, "rounding_shift_per_seed": rounding, "bf16_shift_per_seed": bf16,
                "R_mean_abs_rounding_shift": r, "B_mean_abs_bf16_shift": b, "B_over_R": ratio,
                "signed_mean_rounding_shift": float(np.mean(rounding)),
                "signed_mean_bf16_shift": float(np.mean(bf16)),
                "fp32_seed_sd": (float(np.std(value[REFERENCE], ddof=1)) if len(seeds) > 1
                                    else float("nan")),
            }
        family_out["adopt_bf16"] = adopt
        out[family] = family_out
    return out


def _finite(x: object) -> bool:
    return isinstance(x, int | float) and math.isfinite(x)


def machine() -> dict[str, object]:
    """The CPU the pilot ran on: bf16 is native only with avx512_bf16 or AMX, emulated elsewhere."""
    from rd_train.training.precision import CPUINFO, cpu_bf16_flags

    text = CPUINFO.read_text() if CPUINFO.is_file() else ""
    model = next((line.split(":", 1)[1].strip() for line in text.splitlines()
                  if line.startswith("model name")), "unknown")
    return {"cpu": model, "native_bf16_flags": cpu_bf16_flags()}


def table(summary: dict[str, dict]) -> list[str]:
    lines = ["| family | quantity | fp32 mean ± seed SD | R: rounding-only shift | "
             "B: bf16 shift | B / R | signed mean shift, rounding / bf16 | bf16 adopted |",
             "|---|---|---:|---:|---:|---:|---:|---|"]
    for family, f in summary.items():
        for q in QUANTITIES:
            v = f[q]
            mean = statistics.fmean(v["values"][REFERENCE])
            lines.append(f"| {family} | {q} | {mean:.4g} ± {v['fp32_seed_sd']:.3g} | "
                         f"{v['R_mean_abs_rounding_shift']:.3g} | {v['B_mean_abs_bf16_shift']:.3g} | "
                         f"{v['B_over_R']:.2f} | {v['signed_mean_rounding_shift']:+.3g} / "
                         f"{v['signed_mean_bf16_shift']:+.3g} | {'yes' if f['adopt_bf16'] else 'no'} |")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default="runs/precision-pilot-v2",
                        help="where the pilot's runs live (resumable)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "cpu-precision-control.json"))
    parser.add_argument("--steps", type=int, help="override optim.max_steps (a quick check of the script)")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS),
                        help="only for a quick check of the script: the rule needs all five")
    args = parser.parse_args()
    work = Path(args.work).resolve()
    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    data = work / "embedded"  # the default profile's embedded dataset, built once for the pilot
    if not (data / "meta.json").is_file():
        sys.path[:0] = [str(ROOT / "packages" / p / "src") for p in ("rd-theory", "rd-kernels", "rd-train")]
        from rd_train.config import DataConfig
        from rd_train.training.data import save_embedded

        save_embedded(data, DataConfig(**base["embedded"]))
    base["data"]["root"] = str(data)
    base["sweep"].update(lams=[5.0], betas=[0.016])
    if args.steps:
        base["optim"]["max_steps"] = args.steps
        base["trainer"]["val_every_n_steps"] = max(1, args.steps // 20)
        base["rate"]["warmup_steps"] = args.steps // 10
    runs: dict[str, dict[str, dict[int, dict]]] = {}
    for variant in VARIANTS:
        for family in FAMILIES:
            trained = train(work, base, variant, family, args.seeds)
            runs.setdefault(family, {})[variant] = {
                seed: {**{k: m[k] for k in ("kl", "anisotropy", "psnr", "precision", "threads")},
                       "onednn": VARIANTS[variant][1]}
                for seed, m in trained.items()}
    summary = verdicts(runs)
    lines = table(summary)
    print("\n".join(lines))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "machine": machine(),
        "rule": f"adopt bf16 for a family only where B <= {ADOPT_IF_AT_MOST} R for KL and anisotropy "
                "(R, B: mean over seeds of |fp32 with oneDNN off - fp32|, |bf16 - fp32|)",
        "runs": {f: {v: {str(s): m for s, m in by_seed.items()} for v, by_seed in by_v.items()}
                 for f, by_v in runs.items()},
        "summary": summary, "table": lines}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
