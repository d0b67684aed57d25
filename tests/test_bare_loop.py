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


def test_channels_last_reaches_the_timed_step_and_moves_the_numbers_by_rounding_only(tmp_path, monkeypatch):
    """benchmarks/channels_last_step.py compares the two layouts of the feature network: its NHWC arm must
    train with NHWC weights (a flag that did nothing would time NCHW twice and read 1.0x), and its layout
    shift must compare NHWC weights with NCHW ones and see at most rounding, not another loss."""
    from channels_last_step import is_nhwc, layout_shift
    from rd_train import from_dict
    from rd_train.training.module import VAEModule

    config = from_dict({
        "out_dir": str(tmp_path / "vgg"),
        "data": {"n_train": 64, "n_val": 32, "image_size": 16, "batch_size": 16},
        "model": {"kind": "vector", "latent_dim": 8, "channels": [8, 16]},
        "optim": {"max_steps": 4, "lr": 2e-3},
        "loss": {"neural": "vgg16_hed", "lam": 1.0},
        "precision": "32-true",
    })
    layouts = []
    original = VAEModule.train_step

    def recording(self, *args, **kwargs):
        layouts.append(is_nhwc(self.neural))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(VAEModule, "train_step", recording)
    for channels_last in (False, True):
        bare_loop(config, steps=1, warmup=1, channels_last=channels_last)
    assert layouts == [False] * 3 + [True] * 3  # a warm-up, the counted and the timed step, per layout
    monkeypatch.setattr(VAEModule, "train_step", original)
    shift = layout_shift(config, None)
    # Rounding only (whether the sums differ at all depends on the CPU's kernels, so no lower bound).
    assert shift["nhwc_weights"] and shift["loss"] < 1e-5 and shift["grad"] < 1e-4
