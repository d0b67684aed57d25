"""Pilot: GECO with a ramp term and a smaller integral gain, against the default (issue 30 C: every GECO
run within 3 % of its target).

The default profile's GECO (held-out tracking, κ_p = 3 bounded at 0.5, η = 0.05, the offset correction)
brought 146 of the committed sweep's 150 GECO runs within 3 %, and 36 of the trained-heldout pilot's 40.
Every miss, in both, is PatchGAN λ = 5 and above its target. That arm differs from the others twice:
- at fixed β its KL keeps climbing to the end (+17.5 to +43.7 % over the last 400 steps, convergence.md),
  which a loop with one integrator follows only with a constant lag error, above the target;
- under GECO its evaluated KL rings, ±10-20 % with a period near 400 steps that decays over the whole run
  (the trained-heldout pilot's default runs), where pixel SSE and VGG16 (HED) settle in one overshoot:
  the loop's phase margin is smallest there.

The candidate answers both (rate.py, "Ramp term"): a second integrator on log β from 30 % of training
(η₂ = 1e-4, after the hold and the first transient) removes the lag error of a steady drift, and a smaller
integral gain (η = 0.03) moves the PI zero down from η / κ_p = 0.017 to 0.010 rad/step, below the ringing,
which buys back the phase the second integrator costs. Chosen on a model of the inner loop
(benchmarks/geco_loop_model.py, results/cpu-geco-loop-model.json, run before this pilot): over its 18 plants
the candidate's worst end error is 3.4 % against 11.9 % for the default. A model, so the pilot decides.

Candidates, in order: the default, then the ramp candidate; every other key as params.yaml has it, the
same in every family and architecture. The default's runs are the trained-heldout pilot's (the same
configs: ``--first-runs`` reuses them).

Runs, per candidate: the vector VAE's GECO runs of pixel SSE and of each family at its largest λ (5), at
every target (5, 10, 20 nats), and the AutoencoderKL's at λ = 5 and its target (19 nats); seeds 96-99, no
sweep seed. 36 + 4 = 40 runs, at the default length (1000 steps).

The rule, fixed in the commit before the pilot ran: the sweep takes the candidate with the fewest runs
whose evaluated KL ends more than 3 % off its target; ties: the smaller worst |error|; then the default.
It reads the KL only. Writes JSON (``--out``) and prints a table.
"""

from __future__ import annotations

from typing import Any

from geco_loop_model import controllers
from geco_tracking_runs import CHOSEN_KEYS

# The trained-heldout pilot's runs, seeds and rule, which `pilot_main` trains and applies; named here so
# that a reader and the tests see what this pilot runs.
from geco_trained_heldout_pilot import SEEDS as SEEDS
from geco_trained_heldout_pilot import choose_fewest_misses as choose_fewest_misses
from geco_trained_heldout_pilot import narrow as narrow
from geco_trained_heldout_pilot import pilot_main


def candidates(base: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The default's GECO keys as params.yaml sets them, then the ramp candidate (the loop model's)."""
    default = {key: base["rate"][key] for key in CHOSEN_KEYS}
    assert default["geco_tracks"] == "heldout", "the pilot compares against the held-out default"
    ramp = controllers(base["rate"])["ramp"]
    changed = {key: ramp[key] for key in ("geco_step_size", "geco_ramp_gain", "geco_ramp_start")}
    return [("default", default), ("ramp", {**default, **changed})]


def main() -> int:
    first_runs = "the default's runs from the trained-heldout pilot (its runs/.../heldout)"
    return pilot_main("geco_ramp_pilot", __doc__, candidates, first_runs_help=first_runs)


if __name__ == "__main__":
    raise SystemExit(main())
