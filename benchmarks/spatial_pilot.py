"""Pilot: where do the spatial (AutoencoderKL) runs' rates lie, to place the spatial sweep's rate targets?

Trains, for params.yaml's ``spatial.model`` on the default data and schedule, the pixel-SSE runs (λ = 0)
and the VGG16 (HED) runs at the largest λ at each β of ``--betas``, seed ``--seed`` (99: no sweep seed,
so no run of the sweep is a pilot run), and reads only their final validation KL (the anisotropy is
printed, not used). The rule, fixed before the pilot ran (params.yaml ``spatial`` comment): with lo the
largest of the two curves' lowest KL and hi the smallest of their highest, the targets are
ceil(1.25 lo) and floor(hi / 1.25), both inside every curve with a margin. Writes JSON (``--out``) with
each run's KL, anisotropy and wall time, and the targets the rule gives.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def pilot_params(params: dict, betas: list[float], seed: int) -> dict:
    """params.yaml with the spatial model, the largest λ of the spatial grid, the pilot's β and seed."""
    pilot = copy.deepcopy(params)
    spatial = pilot.pop("spatial")
    pilot["model"] = spatial["model"]
    pilot["losses"] = {f: params["losses"][f] for f in spatial["families"][:1]}
    pilot["sweep"].update(lams=[max(spatial["lams"])], betas=betas, seeds=[seed])
    return pilot


def targets(curves: dict[str, list[float]]) -> tuple[int, int]:
    lo = max(min(kl) for kl in curves.values())
    hi = min(max(kl) for kl in curves.values())
    return math.ceil(1.25 * lo), math.floor(hi / 1.25)


def main() -> int:
    from rd_train.params import load_params
    from rd_train.pipeline.sweep import run_sweep

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default=str(ROOT / "params.yaml"))
    parser.add_argument("--betas", type=float, nargs="+", default=[0.004, 0.016, 0.064])
    parser.add_argument("--seed", type=int, default=99)
    parser.add_argument("--runs", default="pilot_runs/spatial")
    parser.add_argument("--out", default="spatial_pilot.json")
    args = parser.parse_args()
    params = pilot_params(yaml.safe_load(Path(args.params).read_text()), args.betas, args.seed)
    family = next(iter(params["losses"]))
    results: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "params.yaml"
        path.write_text(yaml.safe_dump(params))
        for name in ("pixel", family):
            start = time.perf_counter()
            run_sweep(load_params(path), "fixed", name, Path(args.runs) / "fixed" / name, jobs=1)
            print(f"{name}: {time.perf_counter() - start:.0f} s", file=sys.stderr)
    for metrics_path in sorted(Path(args.runs).glob("fixed/*/*/metrics.json")):
        m = json.loads(metrics_path.read_text())
        results.setdefault(metrics_path.parent.parent.name, []).append(
            {"beta": m["config"]["rate"]["beta"], "lam": m["config"]["loss"].get("lam", 0.0), "kl": m["kl"],
             "anisotropy": m["anisotropy"], "train_s": m.get("train_seconds_this_process")})
    curves = {name: [r["kl"] for r in rows] for name, rows in results.items()}
    t_lo, t_hi = targets(curves)
    out = {"what": "spatial (AutoencoderKL) pilot: final validation KL per beta, pixel SSE and the family's "
                   "largest lambda; the rate targets by the rule in the docstring",
           "model": params["model"], "seed": args.seed, "results": results, "rate_targets": [t_lo, t_hi]}
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    for name, rows in results.items():
        print(name, ", ".join(f"β {r['beta']:g}: KL {r['kl']:.2f}" for r in rows))
    print(f"rate targets: {t_lo}, {t_hi}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
