"""A sweep shares the machine without oversubscribing it, trains in the precision the hardware runs
natively (evaluating in fp32), and prints one line per finished run with an ETA, Lightning's banners
kept in each run's log (issue: the main job's throughput and progress)."""

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from rd_train import from_dict
from rd_train.errors import ParamsError
from rd_train.pipeline.progress import SweepProgress
from rd_train.pipeline.workers import available_cores, map_in_workers, plan_workers
from rd_train.training.precision import resolve


@pytest.mark.parametrize(("jobs", "cores", "workers", "threads"),
                         [(2, 2, 2, 1), (1, 2, 1, 2), (4, 2, 2, 1), (2, 8, 2, 4), (3, 8, 3, 2), (1, 1, 1, 1)])
def test_threads_times_workers_never_exceed_the_cores(jobs, cores, workers, threads):
    plan = plan_workers(jobs, cores)
    assert (plan.workers, plan.threads) == (workers, threads)
    assert plan.workers * plan.threads <= cores


def test_the_one_pool_maps_in_order_in_spawned_workers_of_their_share_of_the_cores(monkeypatch):
    """`map_in_workers`, what the analyses and diffusability scoring use: results in the items' order,
    computed in other processes with cores / workers threads each; one worker runs in this process."""
    monkeypatch.setenv("RD_TRAIN_CORES", "2")
    monkeypatch.setenv("OMP_NUM_THREADS", "2")  # what a worker would inherit: the pool must set its own
    probe = "(__import__('os').getpid(), __import__('torch').get_num_threads(), {})"
    items = [probe.format(i) for i in range(4)]  # eval: a builtin, so a spawned worker can unpickle it
    pooled = list(map_in_workers(eval, items, jobs=2))
    assert [index for _, _, index in pooled] == [0, 1, 2, 3]
    assert all(pid != os.getpid() and threads == 1 for pid, threads, _ in pooled)
    before = torch.get_num_threads()
    try:
        serial = list(map_in_workers(eval, items[:2], jobs=1))
        assert [(pid, threads) for pid, threads, _ in serial] == [(os.getpid(), 2)] * 2
    finally:
        torch.set_num_threads(before)


def test_the_cores_come_from_the_affinity_or_rd_train_cores_never_omp(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    monkeypatch.delenv("RD_TRAIN_CORES", raising=False)
    assert available_cores() == len(os.sched_getaffinity(0))
    monkeypatch.setenv("RD_TRAIN_CORES", "3")
    assert plan_workers(2).describe() == "2 worker(s) x 1 thread(s) on 3 core(s)"
    monkeypatch.setenv("RD_TRAIN_CORES", "zero")
    with pytest.raises(ParamsError, match="RD_TRAIN_CORES='zero'"):
        available_cores()


def cpuinfo(tmp_path, flags):
    path = tmp_path / "cpuinfo"
    path.write_text(f"processor\t: 0\nflags\t\t: fpu sse2 avx512f {flags}\n\nprocessor\t: 1\n")
    return path


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="the flags are x86 ones")
def test_auto_precision_is_bf16_only_where_the_cpu_has_native_bf16(tmp_path):
    cpu = torch.device("cpu")
    assert resolve("auto", cpu, cpuinfo(tmp_path, "avx512_bf16")).precision == "bf16-mixed"
    assert resolve("auto", cpu, cpuinfo(tmp_path, "amx_bf16 amx_tile")).precision == "bf16-mixed"
    plain = resolve("auto", cpu, cpuinfo(tmp_path, "avx512bw"))  # oneDNN would emulate bf16 here
    assert plain.precision == "32-true" and "no native bf16" in plain.reason
    assert resolve("auto", cpu, tmp_path / "absent").precision == "32-true"
    assert resolve("32-true", cpu, cpuinfo(tmp_path, "avx512_bf16")).precision == "32-true"


def test_a_bf16_run_records_its_precision_and_evaluates_in_fp32(tiny):
    """The last validation (at the last step) and the final evaluation see the same parameters,
    recalibration and noise: equal to fp32 rounding only if the validation, which Lightning runs under
    bf16 autocast, computes in fp32 (bf16 autocast moves the KL by ~1e-3 relative)."""
    from rd_train.training.run import fit

    config = from_dict({**tiny(optim={"max_steps": 8}), "precision": "bf16-mixed", "val_every_n_steps": 4})
    metrics = fit(config)
    assert metrics["precision"] == "bf16-mixed" and metrics["precision_reason"] == "set in the config"
    step, kl, _pixel, aniso = metrics["validation_history"][-1]
    assert step == 8
    assert kl == pytest.approx(metrics["kl"], rel=1e-6)
    assert aniso == pytest.approx(metrics["anisotropy"], rel=1e-5, abs=1e-7)


def test_progress_lines_count_the_runs_and_give_an_eta():
    stream = io.StringIO()
    note = "2 worker(s) x 1 thread(s) on 2 core(s)"
    progress = SweepProgress("fixed/perceptual", 3, stream=stream, note=note)
    progress.finished("a_seed0", {"kl": 12.345, "anisotropy": 0.5, "psnr": 20.0}, 0.0, reused=True)
    progress.finished("a_seed1", {"kl": 11.0, "anisotropy": 0.25, "psnr": 21.5, "precision": "bf16-mixed"},
                      31.0, reused=False)
    progress.finished("a_seed2", {"kl": 10.0}, 29.0, reused=False)
    progress.close()
    lines = stream.getvalue().splitlines()
    assert lines[0] == "[fixed/perceptual] 3 runs, 2 worker(s) x 1 thread(s) on 2 core(s)"
    assert lines[1].startswith("[fixed/perceptual] 1/3 a_seed0  KL 12.35 nats  anisotropy 0.500")
    assert "(reused)" in lines[1] and "ETA after the first trained run" in lines[1]
    assert "2/3 a_seed1" in lines[2] and "bf16-mixed" in lines[2] and "(31 s)" in lines[2]
    assert "ETA " in lines[2] and lines[3].endswith("stage done")
    assert lines[4].startswith("[fixed/perceptual] 3/3 runs in ")


def test_a_sweep_under_an_oversubscribing_environment_runs_one_thread_per_worker_quietly(tmp_path):
    """`OMP_NUM_THREADS=2` exported (as the nox sessions do) and two jobs on two cores: each run trains
    with one thread; the sweep prints its lines, and Lightning's banners go to each run's train.log."""
    miniature = Path(__file__).parents[3] / "tests" / "data" / "miniature_params.yaml"
    params = yaml.safe_load(miniature.read_text())
    params["sweep"].update(betas=[0.1], seeds=[0, 1])
    params["optim"]["max_steps"] = 4
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    from rd_train.config import DataConfig
    from rd_train.training.data import save_embedded

    save_embedded(tmp_path / "data" / "embedded", DataConfig(**params["embedded"]))
    code = "import sys; from rd_train.cli import main; sys.exit(main(sys.argv[1:]))"
    env = {**os.environ, "OMP_NUM_THREADS": "2", "RD_TRAIN_CORES": "2"}
    done = subprocess.run([sys.executable, "-c", code, "sweep", "--sweep", "fixed", "--family", "pixel",
                           "--out", "runs/fixed/pixel", "--jobs", "2"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, check=False, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    output = done.stdout + done.stderr
    lines = [line for line in output.splitlines() if line.strip()]
    assert lines[0] == "[fixed/pixel] 2 runs, 2 worker(s) x 1 thread(s) on 2 core(s)", output
    assert len(lines) == 4, output  # the header, one line per run, the closing line
    assert "GPU available" not in output and "Tip" not in output
    for seed in (0, 1):
        run = tmp_path / "runs" / "fixed" / "pixel" / f"pixel_lam0_beta0.1_seed{seed}"
        assert json.loads((run / "metrics.json").read_text())["threads"] == 1
        assert "GPU available" in (run / "train.log").read_text()


def _miniature_sweep(tmp_path: Path, steps: int) -> list[str]:
    """A pixel fixed-β sweep of two runs in ``tmp_path``, long enough to be stopped mid-run; its command."""
    miniature = Path(__file__).parents[3] / "tests" / "data" / "miniature_params.yaml"
    params = yaml.safe_load(miniature.read_text())
    params["sweep"].update(betas=[0.1], seeds=[0, 1])
    params["optim"]["max_steps"] = steps
    params["trainer"].update(val_every_n_steps=steps // 4, log_every_n_steps=steps // 4)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    from rd_train.config import DataConfig
    from rd_train.training.data import save_embedded

    save_embedded(tmp_path / "data" / "embedded", DataConfig(**params["embedded"]))
    code = "import sys; from rd_train.cli import main; sys.exit(main(sys.argv[1:]))"
    return [sys.executable, "-c", code, "sweep", "--sweep", "fixed", "--family", "pixel",
            "--out", "runs/fixed/pixel", "--jobs", "2"]


def _children(pid: int) -> set[int]:
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.add(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; PR_SET_PDEATHSIG is Linux's")
def test_a_terminated_sweep_stops_its_workers_and_a_rerun_resumes_exactly(tmp_path):
    """Issue 31 §6: SIGTERM to a sweep mid-run stops both workers within seconds (they ignored it and trained
    on with no parent before); the rerun started at once trains each run to the end exactly once, from its
    last epoch-end checkpoint, to the same metrics as a sweep never stopped."""
    import signal
    import time

    env = {**os.environ, "RD_TRAIN_CORES": "2"}
    stopped, whole = tmp_path / "stopped", tmp_path / "whole"
    for folder in (stopped, whole):
        folder.mkdir()
        command = _miniature_sweep(folder, steps=1200)  # seconds of training left when it is stopped
    sweep = subprocess.Popen(command, cwd=stopped, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True)
    runs = [stopped / "runs" / "fixed" / "pixel" / f"pixel_lam0_beta0.1_seed{seed}" for seed in (0, 1)]
    deadline = time.monotonic() + 300
    while not all((run / "checkpoints" / "last.ckpt").is_file() for run in runs):
        assert sweep.poll() is None and time.monotonic() < deadline, "the sweep ended before it was stopped"
        time.sleep(0.2)
    workers = _children(sweep.pid) - {sweep.pid}
    workers = {pid for pid in workers if any(_children(pid) or [True])}
    sweep.send_signal(signal.SIGTERM)
    sweep.wait(timeout=60)
    deadline = time.monotonic() + 30
    while any(_alive(pid) for pid in workers):
        assert time.monotonic() < deadline, f"workers {workers} still run 30 s after the sweep was stopped"
        time.sleep(0.2)
    assert not any((run / "metrics.json").is_file() for run in runs), "a run finished before the stop"
    logs = [(run / "train.log").read_text() for run in runs]
    assert all("stopped by a signal" in log for log in logs), logs[0][-2000:]

    for folder in (stopped, whole):  # the rerun at once, and the reference never stopped
        done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=600,
                              check=False)
        assert done.returncode == 0, done.stderr[-3000:]
    for seed in (0, 1):
        name = f"pixel_lam0_beta0.1_seed{seed}"
        resumed = json.loads((stopped / "runs" / "fixed" / "pixel" / name / "metrics.json").read_text())
        reference = json.loads((whole / "runs" / "fixed" / "pixel" / name / "metrics.json").read_text())
        assert resumed["validation_history"] == reference["validation_history"]
        assert (resumed["kl"], resumed["anisotropy"]) == (reference["kl"], reference["anisotropy"])
        assert (stopped / "runs" / "fixed" / "pixel" / name / "train.log").read_text().count(
            "stopped by a signal") == 1


def test_a_run_directory_in_training_is_not_trained_twice(tiny):
    """Issue 31 §6: while a process holds a run's lock, a second fit of that directory stops with one line."""
    import fcntl

    from rd_train.errors import RunConflictError
    from rd_train.training.run import fit

    config = from_dict(tiny(optim={"max_steps": 4}))
    out = Path(config.out_dir)
    out.mkdir(parents=True)
    with open(out / ".lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(RunConflictError, match="being trained by another process"):
            fit(config)
    assert fit(config)["steps"] == 4  # the lock released, the run trains


# A handler registered before the code under test runs after its handlers (exit handlers run last-registered
# first): it sees whether the process froze its objects before the interpreter's final collections.
FROZEN_AT_EXIT = ("import atexit, gc\n"
                  "atexit.register(lambda: print('frozen at exit:', gc.get_freeze_count() > 0))\n")


@pytest.mark.parametrize("process", [
    "from rd_train.pipeline.workers import _init_worker\n_init_worker(1, False)",
    "import sys\nfrom rd_train.cli import main\nsys.exit(main(['fit', '--config', 'missing.yaml']))",
], ids=["pool worker", "cli"])
def test_workers_and_the_cli_skip_the_exit_collection_over_every_object(process, tmp_path):
    """A worker or a command that imported torch and Lightning spent 1.3 s of its 1.6 s exit in the final
    garbage collection (workers.py); both freeze their objects at exit instead. Fails if either forgets."""
    done = subprocess.run([sys.executable, "-c", FROZEN_AT_EXIT + process], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, check=False)
    assert "frozen at exit: True" in done.stdout, done.stdout + done.stderr
