"""Protocol v3's convergence.md (rd_train.protocol.diagnostics): drift and tracking error, reported per run
and per group, never a filter."""

import pytest
from rd_train.analysis.stationarity import WindowRule, stationarity
from rd_train.protocol.diagnostics import document, run_diagnostics

RULE = WindowRule(window=0.4, relative=0.05, floors=(0.1, 0.0, 0.02), min_points=4)


def _record(sweep, family, seed, kl, anisotropy_slope, own_error=None):
    history = [[step, kl, 100.0, 0.5 + anisotropy_slope * step / 1000] for step in range(50, 1001, 50)]
    metrics = {"steps": 1000, "kl": kl, "anisotropy": history[-1][3], "validation_history": history}
    if own_error is not None:
        metrics["geco_tracking_error"] = own_error
    identity = {"sweep": sweep, "family": family, "architecture": "vector", "lam": 1.0, "seed": seed,
                "beta": 0.016 if sweep == "fixed" else None, "target": None if sweep == "fixed" else 10.0,
                "steps": 1000}
    return {"path": f"{sweep}/{family}/run{seed}", "identity": identity, "metrics": metrics}


def test_drift_is_the_window_rules_relative_to_its_mean():
    record = _record("fixed", "perceptual", 0, 12.0, anisotropy_slope=0.25)
    d = run_diagnostics(record, RULE)
    window = stationarity(record["metrics"], RULE)
    assert d.relative_drifts[2] == pytest.approx(window.drifts[2] / window.means[2])
    assert d.relative_drifts[2] > 0.05 and not d.settled  # rising anisotropy: beyond the rule, still reported
    assert d.tracking_error is None  # a fixed-β run has no target


def test_tracking_error_from_the_run_or_from_its_target():
    from_target = run_diagnostics(_record("geco", "pixel", 0, 10.4, 0.0), RULE)
    assert from_target.tracking_error == pytest.approx(0.04)
    own = run_diagnostics(_record("length", "pixel", 0, 10.4, 0.0, own_error=-0.01), RULE)
    assert own.tracking_error == -0.01  # what the run measured, when it did


def test_the_document_counts_every_run_and_filters_none():
    records = [_record("geco", "perceptual", s, kl, slope) for s, (kl, slope) in
               enumerate([(10.1, 0.0), (10.5, 0.0), (9.6, 0.3)])]
    records.append(_record("fixed", "perceptual", 0, 12.0, 0.0))
    text = document(records, RULE)
    assert "never a filter" in text
    summary = {line.split(" | ")[1]: line for line in text.splitlines() if line.startswith("| vector |")}
    assert summary["geco"].endswith("| 3 | 1 | +0.0% | 1 of 3 | +5.0% |")  # 10.1 within 3 %; worst 10.5
    assert summary["fixed"].endswith("| 1 | 0 | +0.0% | – | – |")
    assert sum(line.startswith("| geco/") or line.startswith("| fixed/") for line in text.splitlines()) == 4
