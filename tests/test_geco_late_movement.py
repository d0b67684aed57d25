"""benchmarks/geco_late_movement.py reads, from the run records, how far a GECO run's evaluated KL moves
between validations late in training. Hand-computed cases for the window and the moves, and a check
that it counts every committed GECO run once."""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from geco_late_movement import cell_rows, late_moves, run_row  # noqa: E402
from geco_tracking_runs import TOLERANCE  # noqa: E402

# (step, evaluated KL) at each validation of a 1000-step run aimed at 10 nats
HISTORY = [[500, 9.0], [600, 10.0], [700, 10.4], [800, 10.2], [1000, 10.5]]


def test_the_late_window_starts_at_60_percent_of_training_and_moves_are_relative_to_the_target():
    # 500 is outside the window; 600 opens it: |10.4 − 10.0|, |10.2 − 10.4|, |10.5 − 10.2|, over 10 nats
    assert late_moves(HISTORY, steps=1000, target=10.0) == pytest.approx([0.04, 0.02, 0.03])


def test_a_run_row_reads_the_final_interval_and_its_error():
    record = {"path": "geco/x/run", "identity": {"architecture": "vector", "sweep": "geco", "family": "pixel",
                                                "lam": 0.0, "target": 10.0, "seed": 0, "steps": 1000},
              "metrics": {"validation_history": HISTORY, "geco_tracking_error": 0.05}}
    row = run_row(record)
    assert row["final_move"] == pytest.approx(0.03)
    assert row["late_move_mean"] == pytest.approx(0.03) and row["late_move_max"] == pytest.approx(0.04)
    cell, = cell_rows([row, {**row, "seed": 1, "tracking_error": 0.01, "final_move": 0.01}])
    assert cell["runs"] == 2 and cell["within_tolerance"] == 1
    assert cell["largest_abs_error"] == 0.05 and cell["final_move_mean"] == pytest.approx(0.02)


def test_every_committed_geco_run_is_counted_once():
    from rd_train.protocol import records

    committed = [r for r in records.read(ROOT / "paper" / "records") if r["identity"]["target"] is not None]
    rows = [run_row(r) for r in committed]
    cells = cell_rows(rows)
    assert sum(c["runs"] for c in cells) == len(rows) == len({r["path"] for r in committed})
    within = sum(abs(r["tracking_error"]) <= TOLERANCE for r in rows)
    assert sum(c["within_tolerance"] for c in cells) == within
