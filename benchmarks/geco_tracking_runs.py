"""What the GECO tracking pilots (geco_pi_pilot.py, geco_average_pilot.py) share: the params narrowed to
the runs that end off their target in the committed sweep, training a candidate's runs, reading their final
tracking errors, and the table. Each pilot keeps its own candidates and rule."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

TOLERANCE = 0.03  # protocol v3: every GECO run ends within 3 % of its target
SEEDS = [98, 99]  # no sweep seed
# The GECO keys the pilots choose. Their base is params.yaml with these keys at the schema's defaults
# (integral only, unbounded, the trained weights' KL), as it was when the pilots ran, so a pilot re-run
# after the sweep adopted its choice trains the same configs and reuses its runs.
CHOSEN_KEYS = ("geco_proportional", "geco_proportional_limit", "geco_tracks")
# params.yaml's GECO keys while these pilots ran (from the held-out pilot's adoption until the trained-heldout
# gain pilot's): every pilot here starts from them, so that a pilot re-run after the default moved on trains
# the configs it trained then (geco_step_size has been 0.05 in every params.yaml that set it). Every GECO
# key params.yaml sets is here (tests/test_geco_pilots.py checks), so none follows a later default.
PILOTS_RATE = {"geco_tracks": "heldout", "geco_proportional": 3.0, "geco_proportional_limit": 0.5,
               "geco_step_size": 0.05, "geco_ema_decay": 0.95, "geco_outer_gain": 0.5,
               "geco_outer_start": 0.5, "geco_offset_average": "geco_ema", "geco_outer_terminal": False,
               "geco_correct_every_n_steps": 0}  # a key added since: 0 is the one cadence they validated at


def as_the_pilots_read_it(base: dict[str, Any]) -> dict[str, Any]:
    """``base`` (params.yaml's mapping) with its GECO keys as the pilots read them (`PILOTS_RATE`)."""
    params = json.loads(json.dumps(base))
    params["rate"].update(PILOTS_RATE)
    return params


def narrowed(base: dict[str, Any], rate: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``rate`` set, reduced to the pilots' runs: the vector VAE's GECO runs of pixel SSE and
    of each loss family at the largest λ, at the lowest and highest target; the AutoencoderKL's at its
    largest λ and its target; seeds `SEEDS`."""
    params = json.loads(json.dumps(base))
    for key in CHOSEN_KEYS:
        params["rate"].pop(key, None)
    params["rate"].update(rate)
    targets = sorted(float(t) for t in params["sweep"]["rate_targets"])
    params["sweep"].update(lams=[max(float(v) for v in params["sweep"]["lams"])],
                           rate_targets=[targets[0], targets[-1]], seeds=SEEDS)
    spatial = params["spatial"]
    spatial.update(lams=[max(float(v) for v in spatial["lams"])], seeds=SEEDS, betas=[])
    return params


def train(params: dict[str, Any], folder: Path, jobs: int) -> list[dict[str, Any]]:
    """Train (or reuse) ``params``' pilot runs under ``folder``; one row per run."""
    from rd_train.params import load_params
    from rd_train.pipeline.sweep import run_sweep

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    loaded = load_params(folder / "params.yaml")
    rows = []
    for family in ["pixel", *loaded.raw["losses"]]:
        run_sweep(loaded, "geco", family, folder / "vector" / family, jobs)
        rows += rows_of(folder / "vector" / family, "vector")
    spatial = loaded.spatial_params()
    for sweep, family in spatial.blocks:
        if sweep == "geco" and family != "pixel":
            run_sweep(spatial, sweep, family, folder / "spatial" / family, jobs)
            rows += rows_of(folder / "spatial" / family, "AutoencoderKL")
    return rows


def rows_of(folder: Path, architecture: str) -> list[dict[str, Any]]:
    rows = []
    for path in sorted(folder.glob("*/metrics.json")):
        m = json.loads(path.read_text())
        rows.append({"architecture": architecture, "run": path.parent.name,
                     "family": m["identity"]["family"], "seed": m["identity"]["seed"],
                     "target": m["config"]["rate"]["target"], "kl": m["kl"],
                     "error": m["geco_tracking_error"], "training_target": m["geco_training_target"],
                     "beta": m["beta"], "active_units": m.get("active_units"),
                     "train_seconds": m.get("train_seconds_this_process")})
    return rows


def worst(errors: list[float]) -> float:
    return max(abs(e) for e in errors)


def print_table(heading: str, results: dict[str, list[dict[str, Any]]]) -> None:
    print(f"| {heading} | architecture | run | target | evaluated KL | error | training target "
          "| active units |")
    print("|---:|---|---|---:|---:|---:|---:|---:|")
    for label, rows in results.items():
        for r in rows:
            print(f"| {label} | {r['architecture']} | {r['run']} | {r['target']:g} | {r['kl']:.3f} | "
                  f"{r['error']:+.2%} | {r['training_target']:.3f} | {r['active_units']} |")
    for label, rows in results.items():
        errors = [r["error"] for r in rows]
        within = sum(abs(e) <= TOLERANCE for e in errors)
        print(f"{heading} {label}: {within} of {len(errors)} runs within {TOLERANCE:.0%}, "
              f"worst {worst(errors):.2%}")


def choose_in_order(errors: dict[str, list[float]], order: list[str]) -> str:
    """The first of ``order`` whose every error is within `TOLERANCE`, else the smallest worst error
    (ties: the earlier)."""
    passing = [label for label in order if worst(errors[label]) <= TOLERANCE]
    if passing:
        return passing[0]
    return min(order, key=lambda label: worst(errors[label]))


def choose_fewest_misses(errors: dict[str, list[float]], order: list[str]) -> str:
    """The fewest errors beyond `TOLERANCE`, then the smaller worst error, then the earlier in ``order``.

    (Its first line is the rule `compare_in_order` prints.)"""
    def misses(label: str) -> int:
        return sum(abs(e) > TOLERANCE for e in errors[label])

    return min(order, key=lambda label: (misses(label), worst(errors[label])))


Narrowing = Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]]
Choice = Callable[[dict[str, list[float]], list[str]], str]


def compare_in_order(base: dict[str, Any], pairs: list[tuple[str, dict[str, Any]]], first_runs: Path | None,
                     work: Path, jobs: int, out: Path, rule: str | None, narrow: Narrowing = narrowed,
                     choose: Choice = choose_in_order, seeds: list[int] = SEEDS) -> str:
    """Train (or reuse) each candidate's runs (``narrow`` of ``base`` with the candidate's GECO keys), the
    first's in ``first_runs`` (an earlier pilot's) if given, the others' under ``work``; apply ``choose``
    (default `choose_in_order`); print the table and write ``out``. The chosen label."""
    start = time.perf_counter()
    results: dict[str, list[dict[str, Any]]] = {}
    for i, (label, rate) in enumerate(pairs):
        folder = first_runs.resolve() if i == 0 and first_runs is not None else work.resolve() / label
        results[label] = train(narrow(base, rate), folder, jobs)
    errors = {g: [r["error"] for r in rows] for g, rows in results.items()}
    chosen = choose(errors, [label for label, _ in pairs])
    print_table("GECO", results)
    print(f"\nchosen: {chosen} (rule: {(choose.__doc__ or '').split(chr(10))[0].strip()})")
    report = {"rule": rule, "candidates": [[label, rate] for label, rate in pairs], "tolerance": TOLERANCE,
              "seeds": seeds, "results": results, "chosen": chosen, "seconds": time.perf_counter() - start,
              "params_steps": base["optim"]["max_steps"]}
    out.write_text(json.dumps(report, indent=1) + "\n")
    return chosen
