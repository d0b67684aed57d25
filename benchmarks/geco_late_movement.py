"""Diagnostic, from the committed run records: how far each GECO run's evaluated KL moves between two
validations late in training, beside its tracking error (issue 30 C: every GECO run ends within 3 %).

GECO's outer correction acts only at a validation (every 50 steps at the default length), and its last one
is 50 steps before the end; whatever the evaluated KL (the weight average on the validation images, what
the tables report) does after it, no correction sees. This script reads how far that KL moves over one
validation interval in each run's last 40 % (convergence.md's window), and over the final interval in
particular, from the records alone (`rd_train.protocol.records.read`; no training, seconds):

* per run: the tracking error (final evaluated KL / target − 1), the final interval's move
  |K_end − K_before| / target, and the mean and largest move over consecutive validations at or after
  60 % of training;
* per cell (architecture, sweep, family, λ, target): the same, over its seeds;
* over every GECO run: Spearman's ρ between |tracking error| and the final interval's move
  (`scipy.stats.spearmanr`), i.e. whether the runs that end furthest off are those whose KL moved most
  after the last correction.

A description, not a rule: nothing is chosen, excluded or adopted on it. Writes JSON (``--out``) and prints a
table.

    python benchmarks/geco_late_movement.py --out benchmarks/results/records-geco-late-movement.json
"""

from __future__ import annotations

import argparse
import statistics
from collections import defaultdict
from itertools import pairwise
from pathlib import Path
from typing import Any

from geco_tracking_runs import TOLERANCE
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
LATE = 0.6  # the window starts at 60 % of training: convergence.md's last 40 %


def late_moves(history: list[list[float]], steps: int, target: float) -> list[float]:
    """|K_i − K_(i−1)| / target for consecutive validations (step, KL, ...) both at or after ``LATE`` ×
    ``steps``."""
    late = [kl for step, kl, *_ in history if step >= LATE * steps]
    return [abs(after - before) / target for before, after in pairwise(late)]


def run_row(record: dict[str, Any]) -> dict[str, Any]:
    """One GECO run's tracking error and late moves."""
    identity, metrics = record["identity"], record["metrics"]
    history, target = metrics["validation_history"], identity["target"]
    moves = late_moves(history, identity["steps"], target)
    return {"path": record["path"], "architecture": identity["architecture"], "sweep": identity["sweep"],
            "family": identity["family"], "lam": identity["lam"], "target": target, "seed": identity["seed"],
            "steps": identity["steps"], "tracking_error": metrics["geco_tracking_error"],
            "final_move": abs(history[-1][1] - history[-2][1]) / target,
            "late_move_mean": statistics.fmean(moves), "late_move_max": max(moves)}


def cell_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (architecture, sweep, family, λ, target): runs, the largest |error|, the final interval's move
    (mean, largest) and the late moves (mean of the runs' means, largest)."""
    cells: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        cells[(row["architecture"], row["sweep"], row["family"], row["lam"], row["target"])].append(row)
    return [{"architecture": a, "sweep": s, "family": f, "lam": lam, "target": t, "runs": len(runs),
             "within_tolerance": sum(abs(r["tracking_error"]) <= TOLERANCE for r in runs),
             "largest_abs_error": max(abs(r["tracking_error"]) for r in runs),
             "final_move_mean": statistics.fmean(r["final_move"] for r in runs),
             "final_move_max": max(r["final_move"] for r in runs),
             "late_move_mean": statistics.fmean(r["late_move_mean"] for r in runs),
             "late_move_max": max(r["late_move_max"] for r in runs)}
            for (a, s, f, lam, t), runs in sorted(cells.items())]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=Path, default=ROOT / "paper" / "records")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    from rd_train.protocol import records
    from rd_train.training.metrics import write_json

    rows = [run_row(r) for r in records.read(args.records) if r["identity"]["target"] is not None]
    cells = cell_rows(rows)
    rho, p = stats.spearmanr([abs(r["tracking_error"]) for r in rows], [r["final_move"] for r in rows])
    folder = args.records.relative_to(ROOT) if args.records.is_relative_to(ROOT) else args.records
    command = f"python benchmarks/geco_late_movement.py --records {folder} --out {args.out}"
    out = {"what": __doc__.split("\n\n")[0], "command": command,
           "records": str(folder),
           "late_window_starts_at": LATE, "tolerance": TOLERANCE, "runs": len(rows),
           "spearman_abs_error_vs_final_move": {"rho": float(rho), "p": float(p)}, "cells": cells,
           "per_run": rows}
    print(f"{len(rows)} GECO runs; Spearman ρ(|error|, final move) = {rho:.2f} (p {p:.2g})")
    print("| arch | sweep | family | λ | target | within 3 % | largest \\|error\\| "
          "| final move: mean / largest | late moves: mean / largest |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for c in cells:
        print(f"| {c['architecture']} | {c['sweep']} | {c['family']} | {c['lam']:g} | {c['target']:g} | "
              f"{c['within_tolerance']} / {c['runs']} | {c['largest_abs_error']:.2%} | "
              f"{c['final_move_mean']:.2%} / {c['final_move_max']:.2%} | "
              f"{c['late_move_mean']:.2%} / {c['late_move_max']:.2%} |")
    write_json(args.out, out)


if __name__ == "__main__":
    main()
