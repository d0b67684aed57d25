"""Protocol v3 (issue 30 H): the committed run records rebuild every table the `aggregate` stage wrote,
byte for byte, with no run directory and no checkpoint (what CI has)."""

from __future__ import annotations

import json
from pathlib import Path

from rd_train.params import load_params
from rd_train.protocol.records import sources
from rd_train.protocol.report import write_report

ROOT = Path(__file__).resolve().parents[1]
TABLES = ("claims.md", "convergence.md", "sweeps.md", "runs.csv")


def aggregate_option(name: str) -> str:
    """An option of dvc.yaml's ``aggregate`` command, as the stage passes it."""
    import shlex

    import yaml

    words = shlex.split(yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["aggregate"]["cmd"])
    return words[words.index(name) + 1]


def test_the_committed_records_rebuild_claims_md_byte_for_byte(tmp_path, monkeypatch):
    """`rd-train report --records paper/records`, as the aggregate stage runs it and from the folder it
    runs in: the records stage's runs and the AutoencoderKL's at twice the steps (trained outside dvc repro,
    under paper/records/outside/; claims.md names each folder as read) and the length pilot."""
    records = aggregate_option("--records")
    assert records == "paper/records"
    assert (ROOT / records / "outside" / "spatial-length" / "source.json").is_file()
    monkeypatch.chdir(ROOT)
    write_report(load_params("params.yaml"), records, tmp_path, aggregate_option("--length-pilot"))
    for table in TABLES:
        rebuilt = (tmp_path / "tables" / table).read_bytes()
        assert rebuilt == (ROOT / "paper" / "tables" / table).read_bytes(), (
            f"paper/tables/{table} is not what the committed records give; run `dvc repro -s aggregate`")
    for path in sorted((ROOT / "paper" / "metrics").glob("*.json")):
        assert json.loads((tmp_path / "metrics" / path.name).read_text()) == json.loads(path.read_text())


def test_every_primary_cell_holds_all_its_runs():
    """Acceptance of issue 30: no primary cell is empty, none loses a run, and every planned run is there."""
    stage, replicate = sources(ROOT / "paper" / "records")  # dvc repro's runs; the AutoencoderKL's at 2x
    assert stage.origin is None and replicate.runs == 18
    records = stage.records
    claims = (ROOT / "paper" / "tables" / "claims.md").read_text()
    assert "None: every run of every cell is finite and present." in claims
    assert "not testable" not in claims.split("## Every cell", 1)[0]
    from rd_train.pipeline.plan import planned_blocks

    planned = sum(len(block.configs) for block in planned_blocks(load_params(ROOT / "params.yaml")))
    assert len(records) == planned
