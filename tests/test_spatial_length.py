"""The AutoencoderKL length replicate (benchmarks/spatial_length.py) trains the design its docstring fixes:
the committed spatial GECO grid, every λ and seed, at twice the steps, dilated as the vector length
stage is."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import spatial_length  # noqa: E402


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


def test_the_committed_result_follows_from_the_committed_records(tmp_path):
    """The replicate's tables rebuild byte for byte from paper/records plus its 18 committed records, and
    its JSON's verdict is the one they give (no run directory needed, as for claims.md)."""
    import json

    from rd_train.params import load_params
    from rd_train.protocol.claims import compute
    from rd_train.protocol.report import labels_of
    from rd_train.protocol.summary import verdict

    results = ROOT / "benchmarks" / "results"
    params = load_params(ROOT / "params.yaml")
    records = spatial_length.combined_report(params, ROOT / "paper" / "records",
                                             results / "cpu-spatial-length-records", tmp_path)
    for table in spatial_length.TABLES:
        committed_table = results / f"cpu-spatial-length-{table}"
        assert (tmp_path / "tables" / table).read_bytes() == committed_table.read_bytes(), (
            f"{committed_table.name} is not what the committed records give (the report code or the records "
            "changed since the replicate ran): rebuild it with spatial_length.combined_report, no retraining")
    row = spatial_length.row_of(compute(records, labels_of(params, records)).headlines,
                                "anisotropy falls with λ at matched rate", "spatial")
    committed = json.loads((results / "cpu-spatial-length.json").read_text())["autoencoderkl_matched_rate"]
    assert committed["verdict"] == verdict(row["p_holm"], params.rules.alpha, row["long_p_holm"])
    assert committed["long_p_holm"] == row["long_p_holm"] and committed["effect"] == row["effect"]
    assert len(records) == 222 + 18
