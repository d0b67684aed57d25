"""The AutoencoderKL length replicate (benchmarks/spatial_length.py) trains the design its docstring fixes:
the committed spatial GECO grid, every λ and seed, at twice the steps, dilated as the vector length
stage is."""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import spatial_length  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
RECORDS = spatial_length.RECORDS  # paper/records/outside/spatial-length


def test_the_replicate_is_the_spatial_geco_grid_at_twice_the_steps(tmp_path):
    from rd_train.params import load_params

    params = load_params(ROOT / "params.yaml")
    replicate = spatial_length.length_params(params)
    default = {Path(c.out_dir).name: c for family in spatial_length.families(params)
               for c in params.spatial_params().run_configs("geco", family, tmp_path / "geco")}
    longer = [c for family in spatial_length.families(params)
              for c in replicate.run_configs("length", family, tmp_path / "length")]
    assert spatial_length.families(params) == ["pixel", "perceptual"]
    assert len(longer) == len(default) == 18
    for config in longer:
        twin = default[Path(config.out_dir).name.replace("_steps2000", "")]
        assert config.identity["architecture"] == "spatial" and config.identity["sweep"] == "length"
        assert config.model == twin.model and config.loss == twin.loss and config.seed == twin.seed
        assert config.rate.target == twin.rate.target == 19.0 and config.rate.mode == "geco"
        # The dilation: twice the steps, the warm-up and the validation cadence the same fractions.
        assert config.optim.max_steps == 2 * twin.optim.max_steps == 2000
        assert config.rate.warmup_steps == 2 * twin.rate.warmup_steps
        assert config.val_every_n_steps == 2 * twin.val_every_n_steps
        assert config.rate.geco_outer_start == twin.rate.geco_outer_start  # a fraction of training


def test_the_replicate_was_trained_with_the_spatial_stages_code_data_and_params():
    """claims.md reads the replicate's committed records beside the pipeline's (dvc.yaml, aggregate), so
    they must come from what trained the spatial stage's runs: its source.json keeps the stage's dvc.lock
    entry of the time, and it must still be dvc.lock's. A change to the training code, the data or the
    spatial params re-runs the pipeline (the lock test) and then this replicate; until it has, only a
    replicate the report sets aside (other params) may stay, as an expected failure
    (`current_or_set_aside`)."""
    import json

    source = current_or_set_aside()
    assert source["commit"] == json.loads((RESULTS / "cpu-spatial-length.json").read_text())["commit"]


def current_or_set_aside() -> dict:
    """The replicate's source.json, when its lock entry is still the spatial stage's. A replicate that
    predates that lock may stay committed only while the report sets it aside, and claims.md says so: then
    the calling test is an expected failure, named at every run, until the replicate is trained again. A
    stale replicate that the report still reads fails."""
    import dataclasses
    import json

    from rd_train.params import load_params
    from rd_train.protocol.records import sources

    source = json.loads((RECORDS / "source.json").read_text())
    if source["lock"] == spatial_length.lock_entry():
        return source
    (read,) = sources(RECORDS)
    # Named as the aggregate stage names it (dvc.yaml: paths from the repository root, --params params.yaml).
    folder = dataclasses.replace(read, folder=RECORDS.relative_to(ROOT).as_posix())
    assert not folder.trained_under(dict(load_params(ROOT / "params.yaml").raw)), (
        "the spatial stage's code or data moved on since the AutoencoderKL's 2000-step records were trained, "
        "under the same params, so the report still reads them: re-run the replicate (below)")
    clause = folder.describe_set_aside("params.yaml")
    claims = (ROOT / "paper" / "tables" / "claims.md").read_text()
    assert clause in claims, "claims.md must say that the report sets the replicate aside"
    pytest.xfail("the AutoencoderKL's 2000-step records were trained under other params than params.yaml's "
                 f"(their commit {source['commit'][:7]}): the report sets them aside. Re-run `python "
                 "benchmarks/spatial_length.py --work WORK --out benchmarks/results/cpu-spatial-length.json` "
                 "(23-51 min on 2 cores), then `dvc repro -s aggregate`")


def test_the_committed_result_follows_from_the_committed_records(tmp_path):
    """The replicate's JSON verdict is the one the project's report gives over paper/records and its 18
    committed records (no run directory needed, as for claims.md)."""
    import json

    from rd_train.params import load_params
    from rd_train.protocol.claims import compute
    from rd_train.protocol.report import labels_of
    from rd_train.protocol.summary import verdict

    current_or_set_aside()  # a stale replicate's verdict was over the records of its time
    params = load_params(ROOT / "params.yaml")
    records = spatial_length.combined_report(params, ROOT / "paper" / "records", RECORDS, tmp_path)
    row = spatial_length.row_of(compute(records, labels_of(params, records)).headlines,
                                "anisotropy falls with λ at matched rate", "spatial")
    committed = json.loads((RESULTS / "cpu-spatial-length.json").read_text())["autoencoderkl_matched_rate"]
    assert committed["verdict"] == verdict(row["p_holm"], params.rules.alpha, row["long_p_holm"])
    assert committed["long_p_holm"] == row["long_p_holm"] and committed["effect"] == row["effect"]
    assert len(records) == 222 + 18
