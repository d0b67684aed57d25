"""`rd-train report --records` (rd_train.protocol.report): every table, metric and figure from hand-made
records of known answer, and the same bytes from the same records."""

import csv
import json
from pathlib import Path

from hand_made_records import _design
from rd_train.params import load_params
from rd_train.protocol.records import write
from rd_train.protocol.report import write_report

ROOT = Path(__file__).resolve().parents[3]


def _complete(records):
    """The hand-made records with what a run's metrics also hold: KL and anisotropy, a flat history."""
    for r in records:
        m = r["metrics"]
        m.setdefault("kl", 10.0)
        m.setdefault("anisotropy", 0.5)
        m["psnr"], m["steps"] = 20.0, r["identity"]["steps"]
        every = m["steps"] // 20
        m["validation_history"] = [[every * k, m["kl"], 100.0, m["anisotropy"]] for k in range(1, 21)]
        if r["identity"]["sweep"] in ("geco", "length"):
            m["geco_tracking_error"] = 0.01
    return records


def test_the_report_writes_every_table_metric_and_figure_and_the_same_bytes_twice(tmp_path):
    write(_complete(_design()), tmp_path / "records")
    summary = write_report(load_params(ROOT / "params.yaml"), tmp_path / "records", tmp_path / "a")
    assert summary.startswith("report: ") and "3 figures" in summary
    claims = (tmp_path / "a" / "tables" / "claims.md").read_text()
    assert claims.index("## Summary") < claims.index("## Every cell")
    assert "| rate falls with λ at fixed β | VGG16 (HED) features | vector | **holds** |" in claims
    assert "**holds at both lengths**" in claims  # the matched-rate claim at both lengths
    metrics = json.loads((tmp_path / "a" / "metrics" / "rate_vgg16_vector.json").read_text())
    assert metrics["verdict"] == "holds" and metrics["effect"] < 0 and metrics["runs"] == 2 * 3 * 6
    assert sorted(p.name for p in (tmp_path / "a" / "metrics").glob("*.json")) == [
        "anisotropy_patchgan_vector.json", "anisotropy_vgg16_vector.json", "rate_patchgan_vector.json",
        "rate_vgg16_vector.json"]
    with (tmp_path / "a" / "tables" / "runs.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(_design()) and {r["sweep"] for r in rows} == {"fixed", "geco", "length"}
    sweeps = (tmp_path / "a" / "tables" / "sweeps.md").read_text()
    assert "| vector | length | VGG16 (HED) features | 10 | 2000 | 5 | 3 |" in sweeps  # per cell and λ
    with (tmp_path / "a" / "plots" / "matched_rate.csv").open() as f:
        plotted = list(csv.DictReader(f))
    assert {(r["target"], r["steps"]) for r in plotted} == {("5", "1000"), ("10", "1000"), ("20", "1000"),
                                                            ("10", "2000")}  # both lengths, no fixed-β run
    for figure in ("rate_vs_lambda.png", "anisotropy_vs_lambda.png", "geco_tracking.png"):
        assert (tmp_path / "a" / "figures" / figure).stat().st_size > 10_000
    write_report(load_params(ROOT / "params.yaml"), tmp_path / "records", tmp_path / "b")
    for table in ("claims.md", "convergence.md", "sweeps.md", "runs.csv"):
        first, second = (tmp_path / run / "tables" / table for run in ("a", "b"))
        assert first.read_bytes() == second.read_bytes()
