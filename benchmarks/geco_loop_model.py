"""GECO's inner loop on a model plant: how a rate controller follows a KL that answers β with a lag and
drifts, before any run trains with it (what chose benchmarks/geco_ramp_pilot.py's candidate).

The plant, per step t, with u = log β from the real controller (`rd_train.training.rate.GECO`):

    K*_t = R* · (β_t / β₀)^(-K) · exp(r t)     the trained weights' equilibrium KL (sensitivity K, drift r)
    y_{t+1} = y_t + (K*_t - y_t) / τ            the trained weights' KL answers after τ steps
    a_{t+1} = 0.99 a_t + 0.01 y_t              the weight average's KL (optim.ema_decay), what GECO reads
                                               (geco_tracks: heldout) and what a run's tables report

GECO reads a_t · (1 + σ ξ_t), ξ standard normal (a held-out batch's noise). Without the offset correction
(the model has no validations): it reads what is reported. The grid spans the committed sweep's behaviour:
K and τ for loops that settle in one overshoot (pixel SSE, VGG16 (HED)) to ones that ring for the whole run
(PatchGAN λ = 5, whose evaluated KL swings ±10-20 % with a period near 400 steps in the trained-heldout
pilot's default runs); r from none to the +0.1 %/step that PatchGAN λ = 5's KL climbs at at fixed β over
its last 400 steps (convergence.md: +17.5 to +43.7 %).

A model, not evidence: it chose which candidate the pilot trains, never which the sweep takes. Writes JSON
(``--out``) and prints, per controller and plant, the RMS error over steps 600-1000 and the worst end error
over the seeds, relative to the target.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
GAINS, LAGS, DRIFTS = (0.3, 0.5, 0.8), (30, 60), (0.0, 0.0005, 0.001)
NOISE, SEEDS, STEPS, TARGET = 0.05, (0, 1, 2, 3), 1000, 10.0
INITIAL_BETA = 0.032  # sweep.geco_initial_beta


def controllers(rate: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The default's GECO keys (``rate``, params.yaml's), and the pilot's candidate: a smaller integral
    gain, with the ramp term from 30 % of training."""
    return {"default": dict(rate),
            "ramp": {**rate, "geco_step_size": 0.03, "geco_ramp_gain": 1e-4, "geco_ramp_start": 0.3}}


def simulate(rate: dict[str, Any], gain: float, lag: float, drift: float, seed: int) -> list[float]:
    """The reported (weight-average) KL at every step, for the controller ``rate`` on one plant."""
    import torch
    from rd_train.config import RateConfig
    from rd_train.training.rate import GECO

    keys = {k: v for k, v in rate.items() if k not in ("geco_outer_gain", "geco_outer_start")}
    geco = GECO(RateConfig(**{**keys, "mode": "geco", "target": TARGET, "beta": INITIAL_BETA}), STEPS)
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(STEPS, generator=generator, dtype=torch.float64) * NOISE
    beta0 = 0.01  # where the equilibrium KL starts at the target
    trained = averaged = TARGET / 2
    finite, reported = torch.tensor(True), []
    for step in range(STEPS):
        beta = float(geco.value(step))
        equilibrium = TARGET * (beta / beta0) ** (-gain) * math.exp(drift * step)
        trained += (equilibrium - trained) / lag
        averaged = 0.99 * averaged + 0.01 * trained
        geco.update(step, torch.tensor(averaged * (1.0 + float(noise[step])), dtype=torch.float64), finite)
        reported.append(averaged)
    return reported


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default=str(ROOT / "params.yaml"))
    parser.add_argument("--out", default=str(RESULTS / "cpu-geco-loop-model.json"))
    args = parser.parse_args()
    from rd_train.params import load_params

    chosen = controllers(dict(load_params(args.params).raw["rate"]))
    rows = []
    for label, keys in chosen.items():
        for gain in GAINS:
            for lag in LAGS:
                for drift in DRIFTS:
                    late, ends = [], []
                    for seed in SEEDS:
                        kl = simulate(keys, gain, lag, drift, seed)
                        errors = [v / TARGET - 1 for v in kl[600:]]
                        late.append(math.sqrt(sum(e * e for e in errors) / len(errors)))
                        ends.append(errors[-1])
                    rows.append({"controller": label, "K": gain, "tau": lag, "drift": drift,
                                 "late_rms": sum(late) / len(late), "worst_end": max(ends, key=abs)})
    print("| K | τ | drift/step | " + " | ".join(f"{c}: late RMS, worst end" for c in chosen) + " |")
    print("|---:|---:|---:|" + "---:|" * len(chosen))
    per_plant: dict[tuple[float, float, float], list[str]] = {}
    for r in rows:
        per_plant.setdefault((r["K"], r["tau"], r["drift"]), []).append(
            f"{r['late_rms']:.1%}, {r['worst_end']:+.1%}")
    for (gain, lag, drift), cells in per_plant.items():
        print(f"| {gain} | {lag} | {drift:g} | " + " | ".join(cells) + " |")
    report = {"model": __doc__, "noise": NOISE, "seeds": list(SEEDS), "steps": STEPS,
              "controllers": chosen, "rows": rows}
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
