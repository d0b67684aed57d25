"""Every mistake a user can make through `rd-train` ends in one line and exit code 2, never a traceback;
an unreadable checkpoint is named and never "fixed" by unpickling it unsafely (issue: the CLI's errors).

Each case runs the command line's own entry point, `rd_train.cli.main(argv)` (what the `rd-train` script
calls), with its exit status and what it writes to stderr; a fresh process only where the test needs one
(a SIGKILL mid-write, and `test_the_console_script_is_main_with_its_exit_status`, which runs the installed
script itself). A process per case cost about 8 s of imports each (issue 31: the suite's time).
"""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from cli_in_process import Done, rd_train
from rd_train.cli import main

TINY = [
    "--set",
    "data.n_train=64",
    "--set",
    "data.n_val=16",
    "--set",
    "data.image_size=16",
    "--set",
    "data.batch_size=8",
    "--set",
    "model.latent_dim=4",
    "--set",
    "model.channels=[8,16]",
]


def test_the_console_script_is_main_with_its_exit_status(tmp_path):
    """The one real process: the installed `rd-train` script runs `main` and exits with its status."""
    script = Path(sys.executable).parent / "rd-train"
    command = [str(script)] if script.is_file() else [sys.executable, "-m", "rd_train.cli"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([*command, "evaluate", "--set", f"out_dir={tmp_path / 'none'}"],
                          capture_output=True, text=True, check=False, env=env)
    assert_user_error(done, "none/checkpoints/last.ckpt", "does not exist")


def assert_user_error(done: Done | subprocess.CompletedProcess, *words: str) -> str:
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("rd-train: ")]
    assert len(lines) == 1, done.stderr[-2000:]
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


def test_missing_lpips_weights(tmp_path):
    done = rd_train(
        "fit",
        "--set",
        f"out_dir={tmp_path / 'run'}",
        "--set",
        "loss.neural=lpips",
        "--set",
        "loss.lam=1",
        *TINY,
        env={"TORCH_HOME": str(tmp_path / "empty")},
    )
    assert_user_error(done, "vgg16-397923af.pth", "loss.weights_path", "Nothing is downloaded")


def test_evaluate_a_run_without_checkpoint(tmp_path):
    done = rd_train("evaluate", "--set", f"out_dir={tmp_path / 'never-trained'}", *TINY)
    assert_user_error(done, "never-trained/checkpoints/last.ckpt", "does not exist")


def test_missing_dataset_root(tmp_path):
    done = rd_train(
        "fit",
        "--set",
        f"out_dir={tmp_path / 'run'}",
        "--set",
        "data.name=celeba",
        "--set",
        f"data.root={tmp_path / 'nodir'}",
    )
    assert_user_error(done, "CelebA not found", "nodir")


def test_unknown_family_and_bad_params(tmp_path):
    params = yaml.safe_load(
        (Path(__file__).parents[3] / "tests" / "data" / "miniature_params.yaml").read_text()
    )
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    done = rd_train("sweep", "--sweep", "fixed", "--family", "nope", "--out", "runs", cwd=tmp_path)
    assert_user_error(done, "family 'nope'", "losses")
    params["losses"]["perceptual"]["neural"] = "vgg"  # not a loss kind
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    done = rd_train("sweep", "--sweep", "fixed", "--family", "perceptual", "--out", "runs", cwd=tmp_path)
    assert_user_error(done, "params.yaml", "loss.neural must be one of")
    del params["sweep"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    assert_user_error(rd_train("report", cwd=tmp_path), "params.yaml", "'sweep'")
    (tmp_path / "params.yaml").write_text("sweep: [unclosed\n")
    assert_user_error(rd_train("report", cwd=tmp_path), "params.yaml", "not valid YAML")
    assert_user_error(rd_train("records", "--runs", "nowhere", cwd=tmp_path),
                      "no finished runs under nowhere")


def test_debug_shows_the_traceback_and_a_bug_keeps_it(tmp_path):
    args = ("evaluate", "--set", f"out_dir={tmp_path / 'none'}")
    done = rd_train("--debug", *args)
    assert done.returncode == 2 and "Traceback" in done.stderr and "CheckpointError" in done.stderr
    done = rd_train(*args, env={"RD_TRAIN_DEBUG": "1"})
    assert done.returncode == 2 and "Traceback" in done.stderr
    import rd_train.training.run as run

    def bug(config, checkpoint):
        return 1 / 0

    with pytest.MonkeyPatch.context() as patch:  # a bug is not a user error: main lets it through (exit 1)
        patch.setattr(run, "evaluate", bug)
        with pytest.raises(ZeroDivisionError):
            main(["evaluate", "--set", "out_dir=x"])


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("finished") / "run"
    done = rd_train("fit", "--set", f"out_dir={out}", "--set", "optim.max_steps=24", *TINY)
    assert done.returncode == 0, done.stderr[-2000:]
    return out


def test_a_run_directory_holding_another_config(finished_run):
    done = rd_train(
        "fit",
        "--set",
        f"out_dir={finished_run}",
        "--set",
        "optim.max_steps=24",
        "--set",
        "optim.lr=0.01",
        *TINY,
    )
    assert_user_error(done, str(finished_run), "another config", "delete that directory")


@pytest.mark.parametrize("damage", ["truncated", "foreign"])
def test_unreadable_checkpoint_is_named_and_never_unpickled(finished_run, tmp_path, damage):
    ckpt = tmp_path / "last.ckpt"
    if damage == "truncated":  # a disk that filled up mid-write
        data = (finished_run / "checkpoints" / "last.ckpt").read_bytes()
        ckpt.write_bytes(data[: len(data) // 3])
    else:  # a copied file holding arbitrary Python objects: loading it unsafely would run code
        torch.save({"state_dict": {}, "payload": argparse_namespace()}, ckpt)
    done = rd_train("evaluate", "--set", f"out_dir={finished_run}", "--checkpoint", str(ckpt), *TINY)
    line = assert_user_error(
        done, str(ckpt), "not a readable Lightning checkpoint", "delete it", "--checkpoint"
    )
    assert "weights_only" not in done.stderr and "weights_only" not in line


def argparse_namespace():
    import argparse

    return argparse.Namespace(command="anything")


def test_a_kill_during_a_checkpoint_write_keeps_the_previous_one_and_the_run_resumes(tmp_path, finished_run):
    """SIGKILL while last.ckpt is being rewritten (epoch 2 of 3): the epoch-1 checkpoint survives whole,
    the run resumes from it and ends with the metrics of an uninterrupted run."""
    out = tmp_path / "run"
    dies_in_second_save = (
        "import os, signal, sys, torch\n"
        "from rd_train.cli import main\n"
        "original, calls = torch.save, []\n"
        "def dying_save(obj, f, *args, **kwargs):\n"
        "    calls.append(f)\n"
        "    if len(calls) == 2:\n"
        "        with open(f, 'wb') as handle:\n"
        "            handle.write(b'PK\\x03\\x04 the first bytes of a checkpoint')\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "    return original(obj, f, *args, **kwargs)\n"
        "torch.save = dying_save\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    args = ["fit", "--set", f"out_dir={out}", "--set", "optim.max_steps=24", *TINY]
    killed = subprocess.run(
        [sys.executable, "-c", dies_in_second_save, *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    leftovers = [p.name for p in (out / "checkpoints").iterdir()]
    assert "last.ckpt" in leftovers and len(leftovers) == 2  # the whole old one and the partial new one
    state = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert state["rd_train"]["step_count"] == 8  # epoch 1's, intact
    resumed = rd_train(*args)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["last.ckpt"]  # the partial write is gone
    metrics = json.loads((out / "metrics.json").read_text())
    reference = json.loads((finished_run / "metrics.json").read_text())
    assert metrics["steps"] == 24
    for key in ("kl", "anisotropy", "psnr"):
        assert metrics[key] == pytest.approx(reference[key], rel=1e-6), key


def test_a_run_written_before_a_key_existed_is_reused_with_its_default_and_not_otherwise(tmp_path):
    """A finished run whose stored config lacks a key added since (here optim.lr_floor, removed from its
    metrics.json and config.json) is the same run as today's config with that key's default: reused, not
    retrained. With the key set otherwise it is another config. It fails if the stored config is compared
    as written. (Not a GECO key: this run has a fixed β, which reads none of them.)"""
    from rd_train import from_dict
    from rd_train.training.run import is_finished

    finished_run = tmp_path / "run"
    done = rd_train("fit", "--set", f"out_dir={finished_run}", "--set", "optim.max_steps=8", *TINY)
    assert done.returncode == 0, done.stderr[-2000:]
    for name in ("metrics.json", "config.json"):
        path = finished_run / name
        data = json.loads(path.read_text())
        config = data.get("config", data)
        config["optim"].pop("lr_floor")
        path.write_text(json.dumps(data))
    stored = json.loads((finished_run / "metrics.json").read_text())["config"]
    written = (finished_run / "metrics.json").stat().st_mtime_ns
    assert is_finished(from_dict({**stored, "optim": {**stored["optim"]}}))
    assert not is_finished(from_dict({**stored, "optim": {**stored["optim"], "lr_floor": 0.1}}))
    again = rd_train("fit", "--set", f"out_dir={finished_run}", "--set", "optim.max_steps=8", *TINY)
    assert again.returncode == 0, again.stderr[-2000:]
    assert (finished_run / "metrics.json").stat().st_mtime_ns == written  # reused, not retrained
