import pytest
from rd_train.cli import _config
from rd_train.config import ConfigError, from_dict


def test_defaults_are_valid():
    config = from_dict({})
    assert config.model.kind == "vector" and config.rate.mode == "fixed"


@pytest.mark.parametrize(("data", "message"), [
    ({"optim": {"lr": 1e-3, "learning_rate": 1}}, r"optim\.learning_rate"),
    ({"loss": {"neural": "vgg"}}, r"loss\.neural must be one of"),
    ({"data": {"batch_size": "64"}}, r"data\.batch_size must be an integer"),
    ({"rate": {"mode": "geco"}}, r"rate\.target: GECO needs a rate target"),
    ({"rate": {"mode": "geco", "target": 5.0, "beta": 0.01, "geco_ramp_gain": -1e-4}},
     r"rate\.geco_ramp_gain must be >= 0"),
    ({"rate": {"mode": "geco", "target": 5.0, "beta": 0.01, "geco_ramp_start": 1.5}},
     r"rate\.geco_ramp_start must be in \[0, 1\]"),
    ({"rate": {"mode": "geco", "target": 5.0, "beta": 0.01, "geco_correct_every_n_steps": -25}},
     r"rate\.geco_correct_every_n_steps must be >= 0"),
    ({"rate": {"mode": "geco", "target": 5.0, "beta": 0.01, "geco_correct_every_n_steps": 25}},
     r"rate\.geco_correct_every_n_steps is a step cadence: set val_every_n_steps > 0"),
    ({"loss": {"lam": 0.5}}, r"loss\.neural is 'none'"),
    ({"data": {"name": "celeba"}}, r"data\.root"),
    ({"model": {"block_out_channels": [30, 64]}}, "multiples of norm_num_groups"),
    ({"data": []}, "data must be a mapping"),
    ({"compile": "fast"}, r"compile must be true or false, or must be one of \['reduce-overhead'\], "
                          r"got 'fast'"),
])
def test_invalid_config_names_the_key(data, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(data)


def test_cli_overrides_are_typed():
    config = _config(None, ["loss.neural=patchgan", "loss.lam=0.5", "data.hflip=false"])
    assert config.loss.lam == 0.5 and config.data.hflip is False
    with pytest.raises(ConfigError, match="key=value"):
        _config(None, ["loss.lam"])
    assert _config(None, ["compile=reduce-overhead"]).compile == "reduce-overhead"
    assert _config(None, ["compile=true"]).compile is True
