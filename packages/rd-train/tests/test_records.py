"""Run records (rd_train.protocol.records): complete, byte-stable, and loud about what they cannot read."""

import json
from pathlib import Path

import pytest
from rd_train.errors import MissingDataError
from rd_train.protocol import records


def _run(root: Path, rel: str, identity: dict | None, kl: float, log: bool = True) -> Path:
    run = root / rel
    (run / "logs" / "version_0").mkdir(parents=True)
    history = [[50, kl + 1, 3.0, 0.6], [100, kl, 2.9, 0.5]]
    metrics = {"kl": kl, "anisotropy": 0.5, "validation_history": history, "config": {"seed": 0}}
    if identity is not None:
        metrics["identity"] = identity
    (run / "metrics.json").write_text(json.dumps(metrics))
    if log:
        (run / "logs" / "version_0" / "metrics.csv").write_text(
            "step,train/kl,train/beta,val/kl\n99,5.5,0.02,\n99,,,5.0\n199,5.1,0.03,\n")
    return run


def _identity(sweep: str, family: str, lam: float, seed: int, architecture: str = "vector") -> dict:
    return {"sweep": sweep, "family": family, "architecture": architecture, "lam": lam, "beta": None,
            "target": 10.0, "seed": seed, "steps": 1000}


def test_records_round_trip_byte_for_byte(tmp_path):
    runs = tmp_path / "runs"
    _run(runs, "geco/perceptual/b", _identity("geco", "perceptual", 5.0, 1), 9.5)
    _run(runs, "geco/perceptual/a", _identity("geco", "perceptual", 1.0, 0), 10.5)
    _run(runs, "spatial/geco/pixel/a", _identity("geco", "pixel", 0.0, 0, "spatial"), 19.0, log=False)
    collected = records.collect(runs)
    written = records.write(collected, tmp_path / "records")
    assert sorted(p.relative_to(tmp_path / "records").as_posix() for p in written) == [
        "spatial/geco/pixel.jsonl", "vector/geco/perceptual.jsonl"]
    back = records.read(tmp_path / "records")
    assert back == collected  # everything the reports read comes back
    assert [r["path"] for r in back] == ["geco/perceptual/a", "geco/perceptual/b", "spatial/geco/pixel/a"]
    curves = {"step": [99.0, 199.0], "train/kl": [5.5, 5.1], "train/beta": [0.02, 0.03]}
    assert back[0]["training_log"] == curves  # the validation-only row of the log is not a training point
    assert back[0]["metrics"]["validation_history"][-1] == [100, 10.5, 2.9, 0.5]
    before = {p: p.read_bytes() for p in written}
    # The same runs give the same bytes, whatever order the records and their keys come in.
    shuffled = [{**r, "metrics": dict(reversed(list(r["metrics"].items())))} for r in reversed(collected)]
    records.write(shuffled, tmp_path / "records")
    assert {p: p.read_bytes() for p in written} == before


def test_a_run_without_identity_is_named(tmp_path):
    run = _run(tmp_path / "runs", "fixed/pixel/old", None, 5.0)
    with pytest.raises(MissingDataError, match=str(run / "metrics.json")):
        records.collect(tmp_path / "runs")


def test_stale_record_files_are_removed(tmp_path):
    runs = tmp_path / "runs"
    _run(runs, "geco/pixel/a", _identity("geco", "pixel", 0.0, 0), 10.0)
    stale = tmp_path / "records" / "vector" / "control" / "perceptual.jsonl"
    stale.parent.mkdir(parents=True)
    stale.write_text("{}\n")
    records.write(records.collect(runs), tmp_path / "records")
    assert not stale.exists()


def test_a_malformed_record_is_named_by_file_and_line(tmp_path):
    bad = tmp_path / "vector" / "geco" / "pixel.jsonl"
    bad.parent.mkdir(parents=True)
    bad.write_text('{"path": "a", "identity": {}, "metrics": {}}\nnot json\n')
    with pytest.raises(MissingDataError, match=r"pixel.jsonl:2"):
        records.read(tmp_path)
    with pytest.raises(MissingDataError, match="no run records"):
        records.read(tmp_path / "empty")
