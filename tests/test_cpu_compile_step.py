"""benchmarks/cpu_compile_step.py times the step with ``compile`` false and true and reads 0.93-0.99x on the
CPU. A reading of 1.0x is also what a flag that never reached the module would give (eager timed twice), so
these tests hold the compiled arm to running compiled code, and the profile to finding the convolutions."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from cpu_compile_step import conv_share, core_difference, training_setup  # noqa: E402


def tiny_run(tmp_path: Path):
    from rd_train import from_dict

    return from_dict({
        "out_dir": str(tmp_path / "run"),
        "data": {"n_train": 64, "n_val": 32, "image_size": 16, "batch_size": 16},
        "model": {"kind": "vector", "latent_dim": 8, "channels": [8, 16]},
        "optim": {"max_steps": 4, "lr": 2e-3},
        "precision": "32-true",
    })


def test_the_compiled_arm_runs_compiled_code_that_differs_from_eager_by_rounding_only(tmp_path):
    config = tiny_run(tmp_path)
    eager, _, _, _ = training_setup(config, False, None, 1)
    compiled, _, _, _ = training_setup(config, True, None, 1)
    assert eager._core == eager._sample_and_decode
    assert compiled._core != compiled._sample_and_decode
    # Inductor's own kernels round differently, so a compiled core that ran reads a nonzero difference; an
    # arm that ran the eager core would read exactly 0, and another computation far more than rounding.
    assert 0 < core_difference(config, None) < 1e-4


def test_the_profile_finds_the_convolutions_inside_the_step(tmp_path):
    share = conv_share(tiny_run(tmp_path), None, warmup=1, steps=2)
    assert 0 < share["conv_ms"] < share["profiled_self_ms"]
    assert 0 < share["conv_share"] < 1
    assert share["ceiling_without_touching_convolutions"] == share["profiled_self_ms"] / share["conv_ms"]
