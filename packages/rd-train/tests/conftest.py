import os

import pytest

os.environ.setdefault("TRITON_INTERPRET", "1")


def tiny_config(tmp_path, **sections):
    """A run that trains in seconds on CPU: 256 patches of 16 px, a 2-stage vector VAE."""
    config = {
        "out_dir": str(tmp_path / "run"),
        "data": {"n_train": 256, "n_val": 64, "image_size": 16, "batch_size": 32},
        "model": {"kind": "vector", "latent_dim": 8, "channels": [8, 16]},
        "optim": {"max_steps": 16, "lr": 2e-3},
    }
    for name, values in sections.items():
        config.setdefault(name, {}).update(values)
    return config


@pytest.fixture
def tiny(tmp_path):
    return lambda **sections: tiny_config(tmp_path, **sections)
