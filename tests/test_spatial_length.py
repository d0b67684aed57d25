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
