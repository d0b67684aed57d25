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


def _folder(tmp_path: Path, name: str, paths: list[str], source: dict | None = None) -> Path:
    runs = tmp_path / f"{name}-runs"
    for i, rel in enumerate(paths):
        _run(runs, rel, _identity(rel.split("/")[-3], rel.split("/")[-2], float(i), 0,
                                  "spatial" if rel.startswith("spatial/") else "vector"), 10.0 + i)
    folder = tmp_path / name
    records.write(records.collect(runs), folder)
    if source is not None:
        (folder / records.SOURCE).write_text(json.dumps(source))
    return folder


SOURCE = {"what": "a replicate", "command": "python replicate.py", "commit": "abc1234",
          "why_outside": "it does not fit the budget",
          "lock": {"stage": "spatial", "deps": {}, "params": {"params.yaml": {"optim": {"lr": 0.002},
                                                                             "spatial.seeds": [0, 1]}}}}


def test_several_folders_read_as_one_and_each_says_where_its_runs_come_from(tmp_path):
    """The aggregate stage reads the records stage's folder and a replicate's trained outside dvc repro
    (joined by os.pathsep, as in PATH); claims.md names each folder, its runs and, from its source.json,
    what trained it."""
    import os

    pipeline = _folder(tmp_path, "pipeline", ["geco/perceptual/a", "spatial/geco/perceptual/b"])
    replicate = _folder(tmp_path, "replicate", ["spatial/length/perceptual/c"], SOURCE)
    joined = f"{pipeline}{os.pathsep}{replicate}"
    assert records.folders(joined) == [pipeline, replicate] == records.folders([pipeline, replicate])
    both = records.read(joined)
    assert [r["path"] for r in both] == ["geco/perceptual/a", "spatial/geco/perceptual/b",
                                         "spatial/length/perceptual/c"]
    assert both == records.read([replicate, pipeline])  # sorted by path, whatever the folders' order
    own, outside = records.sources(joined)
    assert (own.runs, own.origin, outside.runs) == (2, None, 1)
    assert "trained by `dvc repro`" in own.describe()
    text = outside.describe()
    for part in ("1 runs", "a replicate", "outside `dvc repro`", "`python replicate.py`", "abc1234",
                 "it does not fit the budget"):
        assert part in text


def test_a_run_in_two_folders_or_a_source_without_its_fields_is_refused(tmp_path):
    import os

    pipeline = _folder(tmp_path, "pipeline", ["geco/perceptual/a"])
    twice = _folder(tmp_path, "twice", ["geco/perceptual/a"], SOURCE)
    with pytest.raises(MissingDataError, match=r"geco/perceptual/a is also under .*pipeline"):
        records.read(f"{pipeline}{os.pathsep}{twice}")
    vague = _folder(tmp_path, "vague", ["spatial/length/perceptual/c"], {"what": "a replicate"})
    missing = r"source.json: no \['command', 'commit', 'why_outside', 'lock'\]"
    with pytest.raises(MissingDataError, match=missing):
        records.sources([pipeline, vague])


def test_a_folder_trained_outside_counts_only_under_the_params_it_was_trained_with(tmp_path):
    """Another profile's report must not pool the default profile's replicate with its own runs."""
    pipeline = _folder(tmp_path, "pipeline", ["geco/perceptual/a"])
    replicate = _folder(tmp_path, "replicate", ["spatial/length/perceptual/c"], SOURCE)
    own, outside = records.sources([pipeline, replicate])
    same = {"optim": {"lr": 0.002}, "spatial": {"seeds": [0, 1], "lams": [5]}, "data": {}}
    assert own.trained_under({}) and outside.trained_under(same)  # keys the stage does not read may differ
    assert not outside.trained_under({**same, "optim": {"lr": 0.001}})  # a section's value differs
    assert not outside.trained_under({**same, "optim": {"lr": 0.002, "max_steps": 10}})  # or grows
    assert not outside.trained_under({**same, "spatial": {"seeds": [0, 1, 2]}})  # a dotted key's value
    assert not outside.trained_under({"optim": {"lr": 0.002}})  # the profile has no spatial grid


def test_a_folder_trained_outside_inside_the_records_is_a_source_of_its_own_that_the_stage_keeps(tmp_path):
    """``rd-train report --records paper/records`` reads the replicate committed under
    paper/records/outside/<name>/ as its own source (named, with its source.json), and the records stage
    rewriting its files neither removes it nor reads it as its own."""
    pipeline = _folder(tmp_path, "records", ["geco/perceptual/a", "spatial/geco/perceptual/b"])
    replicate = _folder(tmp_path, "replicate", ["spatial/length/perceptual/c"], SOURCE)
    inside = pipeline / records.OUTSIDE / "spatial-length"
    inside.parent.mkdir()
    replicate.rename(inside)
    kept = sorted(p.relative_to(pipeline) for p in inside.rglob("*"))
    own, outside = records.sources(pipeline)
    assert (own.folder, own.runs, own.origin) == (pipeline.as_posix(), 2, None)
    assert (outside.folder, outside.runs, outside.origin) == (inside.as_posix(), 1, SOURCE)
    assert [r["path"] for r in records.read(pipeline)] == ["geco/perceptual/a", "spatial/geco/perceptual/b",
                                                           "spatial/length/perceptual/c"]
    runs = tmp_path / "rerun"
    _run(runs, "geco/perceptual/a", _identity("geco", "perceptual", 0.0, 0), 11.0)
    records.write(records.collect(runs), pipeline)  # the stage's spatial/geco file is stale: removed
    assert sorted(p.relative_to(pipeline) for p in inside.rglob("*")) == kept
    own, outside = records.sources(pipeline)
    assert (own.runs, outside.runs) == (1, 1)
    assert not (pipeline / "spatial" / "geco" / "perceptual.jsonl").exists()
    only_outside = tmp_path / "only"
    (only_outside / records.OUTSIDE).mkdir(parents=True)
    inside.rename(only_outside / records.OUTSIDE / "x")
    (source,) = records.sources(only_outside)  # a folder whose own part is empty reads as its outside ones
    assert source.origin == SOURCE
