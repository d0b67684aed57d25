"""Where the AutoencoderKL's anisotropy lives: across channels at a position, or between positions.

A second look at the method behind a surprising result, not a test. The AutoencoderKL's matched-rate
anisotropy does not fall with λ at 1000 or 2000 steps (claims.md; benchmarks/spatial_length.py), where
the vector VAE's falls at both. For a spatial latent the anisotropy (rd_train.training.metrics) is
the variance of ℓ = log σ² over all C × P coordinates (channel c, position p). With equal weights it
splits exactly:

    Var_{c,p} ℓ  =  mean_p Var_c ℓ[:, p]  +  Var_p mean_c ℓ[:, p]
    (total)         (across channels)        (between positions)

The second part is the latent grid's spatial profile, for example its border against its centre. A
vector latent has only the first kind. If λ moved the two parts in opposite directions, the total could
hide a fall across channels. The script reads each finished spatial run's evaluated weights
(`rd_train.training.run.load_trained`), encodes the validation images and writes both parts per run. Per
length it then gives the λ = 5 against λ = 0 effect (`rd_train.protocol.paired.paired_log_ratio`) and
Page's p over the λ grid (`paired.page`). These are descriptive and pre-registered nowhere, so no verdict
reads them. The recomputed total is checked against each run's recorded anisotropy.

    python benchmarks/spatial_anisotropy_parts.py \
        --runs runs/spatial/geco /tmp/spatial-length/runs/spatial/length \
        --out benchmarks/results/cpu-spatial-anisotropy-parts.json
"""

from __future__ import annotations

import argparse
import platform
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch

PARTS = ("total", "across_channels", "between_positions")


def anisotropy_parts(logvar: torch.Tensor) -> dict[str, float]:
    """The module doc's split of a (B, C, H, W) log-variance's anisotropy, each averaged over images, in
    float64."""
    from rd_train.training.metrics import anisotropy

    ell = logvar.double().flatten(2)  # (B, C, P)
    total = anisotropy(ell)  # the anisotropy every table reports
    across = ell.var(1, unbiased=False).mean(1)
    between = ell.mean(1).var(1, unbiased=False)
    return {"total": float(total.mean()), "across_channels": float(across.mean()),
            "between_positions": float(between.mean())}


@torch.no_grad()
def run_parts(run_dir: Path) -> dict[str, Any]:
    """One finished run: its identity, its recorded anisotropy and the parts on its validation images."""
    from rd_train.training.run import load_trained

    run = load_trained(run_dir)
    images = run.images("val")
    logvars = [run.module.model.encode(batch)[1] for batch in images.split(run.config.data.batch_size)]
    return {"identity": run.metrics["identity"], "recorded_anisotropy": run.metrics["anisotropy"],
            **anisotropy_parts(torch.cat(logvars))}


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per length (steps) and part: the seeds × λ table, the λ_max vs λ = 0 effect and Page's p."""
    from rd_train.protocol.paired import page, paired_log_ratio

    by_steps: dict[int, dict[tuple[int, float], dict[str, Any]]] = defaultdict(dict)
    for row in rows:
        identity = row["identity"]
        by_steps[int(identity["steps"])][(int(identity["seed"]), float(identity["lam"]))] = row
    out: dict[str, Any] = {}
    for steps, cells in sorted(by_steps.items()):
        seeds = sorted({seed for seed, _ in cells})
        lams = sorted({lam for _, lam in cells})
        out[str(steps)] = {"seeds": seeds, "lams": lams}
        for part in PARTS:
            table = [[cells[(seed, lam)][part] for lam in lams] for seed in seeds]
            effect = paired_log_ratio([r[-1] for r in table], [r[0] for r in table])
            out[str(steps)][part] = {"table": table, "effect": effect.effect,
                                     "interval": [effect.low, effect.high], "page_p": page(table).p_value}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=Path, nargs="+", required=True,
                        help="folders of finished spatial runs (any depth)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    from rd_train.pipeline.workers import set_threads
    from rd_train.training.metrics import write_json

    set_threads(1)
    run_dirs = sorted(p.parent for root in args.runs for p in root.rglob("metrics.json"))
    rows = []
    for index, run_dir in enumerate(run_dirs, start=1):
        rows.append({"run": run_dir.name, **run_parts(run_dir)})
        print(f"[{index}/{len(run_dirs)}] {run_dir.name}", flush=True)
    worst = max(abs(r["total"] / r["recorded_anisotropy"] - 1) for r in rows)
    summary = summarise(rows)
    write_json(args.out, {"what": __doc__.split("\n\n")[0], "command": "python benchmarks/"
                          "spatial_anisotropy_parts.py --runs " + " ".join(p.as_posix() for p in args.runs),
                          "machine": platform.processor() or platform.machine(),
                          "total_against_recorded_worst_relative_difference": worst,
                          "by_steps": summary, "runs": rows})
    print(f"recomputed total against each run's recorded anisotropy: worst relative difference {worst:.2g}")
    print("| steps | part | effect λ max vs 0 [95 % CI] | Page p |")
    for steps, entry in summary.items():
        for part in PARTS:
            p = entry[part]
            low, high = p["interval"]
            print(f"| {steps} | {part} | {p['effect']:+.1%} [{low:+.1%}, {high:+.1%}] | {p['page_p']:.2g} |")


if __name__ == "__main__":
    main()
