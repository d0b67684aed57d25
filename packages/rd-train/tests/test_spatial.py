"""The spatial-architecture sweep (params.yaml `spatial`): its params are the vector sweep's with only the
model and the grid replaced, bad sections stop with one line naming the key, and its runs pair seeds as
the vector sweep's do. The stage itself (training and report) runs in tests/test_pipeline.py."""

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from rd_train.errors import ParamsError
from rd_train.params import from_mapping, load_params
from rd_train.params.sections import SpatialGrid

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def params():
    return yaml.safe_load((ROOT / "tests" / "data" / "miniature_params.yaml").read_text())


def test_only_the_model_and_the_grid_change(params):
    before = copy.deepcopy(params)
    derived = from_mapping(params, "params.yaml").spatial_params().raw
    assert params == before  # the caller's params are not touched
    assert derived["model"] == params["spatial"]["model"] and derived["model"]["kind"] == "spatial"
    assert list(derived["losses"]) == ["perceptual"]
    assert derived["losses"]["perceptual"] == params["losses"]["perceptual"]
    for key in ("lams", "betas", "rate_targets", "seeds", "geco_initial_beta"):
        assert derived["sweep"][key] == params["spatial"][key]
    assert "norm_matched" not in derived["sweep"] and derived["sweep"]["jobs"] == params["sweep"]["jobs"]
    assert derived["preregistered_in"] is None  # the spatial grid's own commit, not the vector sweep's
    for section in ("data", "optim", "rate", "rules", "stationarity", "trainer"):
        assert derived[section] == params[section]
    assert "spatial" not in derived


def test_runs_pair_seeds_across_lambda_and_beta(params):
    params["spatial"].update(lams=[1.0, 5.0], seeds=[0, 1], betas=[0.01, 0.1])
    derived = from_mapping(params, "params.yaml").spatial_params()
    configs = [c for family in ("perceptual", "pixel") for c in derived.run_configs("fixed", family, "runs")]
    by_seed: dict[int, set] = {}
    for c in configs:
        assert c.model.kind == "spatial" and c.model.block_out_channels == [8, 8]
        by_seed.setdefault(c.seed, set()).add((c.data.seed, c.data.batch_size, c.data.n_train))
    assert sorted(by_seed) == [0, 1]
    assert all(len(v) == 1 for v in by_seed.values())  # one data order per seed at every λ and β
    lams = {c.loss.lam for c in configs}
    assert lams == {0.0, 1.0, 5.0}


def test_an_empty_beta_list_runs_the_matched_rate_sweep_only(params):
    """Protocol v3's budget rule can drop the AutoencoderKL rate claim: spatial.betas: [] trains no fixed-β
    run, and `rd-train plan` predicts none; the GECO sweep is whole."""
    from rd_train.pipeline.plan import planned_blocks

    params["spatial"]["betas"] = []
    assert from_mapping(params, "params.yaml").spatial_params().sweeps == ["geco"]
    spatial_blocks = [b for b in planned_blocks(from_mapping(params, "params.yaml")) if b.stage == "spatial"]
    assert {b.sweep for b in spatial_blocks} == {"geco"} and all(b.configs for b in spatial_blocks)
    params["spatial"]["betas"] = [0.01]
    assert from_mapping(params, "params.yaml").spatial_params().sweeps == ["fixed", "geco"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: s.pop("betas"), "spatial: missing key(s) ['betas']"),
        (lambda s: s["model"].update(kind="vector"), "spatial.model must be a mapping with kind: spatial"),
        (lambda s: s.update(families=["dinov2"]), "spatial.families: ['dinov2']"),
        (lambda s: s.update(lams=[0.0, 1.0]), "spatial.lams: λ > 0 only"),
        (lambda s: s.update(rate_targets=[]), "spatial.rate_targets must be a non-empty list"),
        (lambda s: s.update(betas=[-0.1]), "spatial.betas must be positive"),
        (lambda s: s.update(steps=10), "spatial: unknown key(s) ['steps']"),
    ],
)
def test_a_bad_section_names_its_key(params, change, message):
    change(params["spatial"])
    with pytest.raises(ParamsError) as error:
        SpatialGrid.from_params(params)
    assert message in str(error.value)


def test_no_section_says_what_to_add(params):
    del params["spatial"]
    with pytest.raises(ParamsError, match="has no `spatial` section"):
        from_mapping(params, "params.yaml").spatial_params()


def test_a_model_the_runs_reject_is_named_before_any_run(params, tmp_path):
    params["spatial"]["model"]["block_out_channels"] = [6, 8]  # not multiples of norm_num_groups 4
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    with pytest.raises(ParamsError, match=r"\(spatial\): .*block_out_channels"):
        load_params(path)
    done = subprocess.run([sys.executable, "-c", "import sys; from rd_train.cli import main; "
                           "sys.exit(main(sys.argv[1:]))", "spatial-sweep", "--params", str(path), "--out",
                           str(tmp_path / "runs")], capture_output=True, text=True, check=False)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("rd-train: ") and "block_out_channels" in done.stderr
    assert not (tmp_path / "runs").exists()  # nothing started
