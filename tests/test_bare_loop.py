"""The bare training loop the speed benchmarks time (benchmarks/loop_overhead.py `bare_loop`, which
design_flops.py and sweep_throughput.py use too) gives the module what run.py gives it, so it drives a
step under every rate mode the params can choose. Fast, in CI: when GECO learned to read held-out images,
the loop was not given them, and the two slow benchmark tests that would have said so are not in CI."""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from loop_overhead import bare_loop  # noqa: E402


def geco_run(tmp_path: Path, tracks: str):
    """A tiny GECO run that reads ``tracks``' KL (the weight average on, which two of the modes need)."""
    from rd_train import from_dict

    return from_dict({
        "out_dir": str(tmp_path / tracks),
        "data": {"n_train": 128, "n_val": 64, "image_size": 16, "batch_size": 32},
        "model": {"kind": "vector", "latent_dim": 8, "channels": [8, 16]},
        "optim": {"max_steps": 8, "lr": 2e-3, "ema_decay": 0.9},
        "rate": {"mode": "geco", "target": 5.0, "geco_tracks": tracks},
        "precision": "32-true",
    })


@pytest.mark.parametrize("tracks", ["averaged", "heldout", "trained_heldout"])
def test_the_bare_loop_drives_a_geco_step_whichever_kl_it_tracks(tmp_path, tracks):
    ms, flops = bare_loop(geco_run(tmp_path, tracks), steps=2, warmup=1)
    own_batch_ms, own_batch_flops = bare_loop(geco_run(tmp_path, "trained"), steps=2, warmup=1)
    assert ms > 0 and own_batch_ms > 0
    # Each of these modes adds an encoder pass of the weights it reads to the step, and the flop counter
    # sees it: the step counts more FLOPs than the trained weights' reading of their own batch.
    assert flops > own_batch_flops > 0
