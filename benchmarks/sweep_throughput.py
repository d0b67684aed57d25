"""Run-steps per second of a small sweep: the code as the main job ran it before, at its best, and now.

Fixed work, the same for every configuration: `rd-train sweep --sweep fixed --jobs 2` of the default
params reduced to one cell per neural family (λ = 5, β = 0.016), seeds 0 and 1, ``--steps`` steps each,
for the VGG16 (HED) and PatchGAN families (2 runs × 2 families). Configurations, run one after another
in this one invocation with nothing else running:

* ``baseline-main-job``: the baseline tree (``--baseline-ref``, default e0dca3a, the code before the
  throughput work) as ``nox -s repro`` ran it: OMP_NUM_THREADS=2 exported to 2 workers on 2 cores;
* ``baseline-best``: the same code with OMP_NUM_THREADS=1 (one thread per worker), fp32;
* ``current``: this tree as ``nox -s repro`` runs it now (OMP_NUM_THREADS=2 still exported, which the
  sweep no longer reads) with the default profile's ``precision: auto``;
* ``current-fp32``: this tree with precision 32-true (what the threads alone give).

The default profile's cadence is kept (a validation every 75 steps), so a run-step carries the share of
validation the default sweep's run-steps carry. Each configuration is timed as the wall time of its
sweep commands (process start, data loading,
training, validations, checkpoints, final evaluation: everything a run costs). Reports run-steps per
second, the ratios to both baselines, and the final KL / anisotropy of every run (so a reader sees that
the configurations trained the same runs). ``--repeats`` runs the whole set again, interleaved.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("rd-theory", "rd-kernels", "rd-train")
CLI = "import sys; from rd_train.cli import main; sys.exit(main(sys.argv[1:]))"


def export_tree(ref: str, into: Path) -> Path:
    """The packages of commit ``ref`` (git archive), unpacked under ``into``."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "packages"], capture_output=True,
                             check=True).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def reduced_params(steps: int, data_root: Path, precision: str | None) -> dict:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"]["root"] = str(data_root)
    params["optim"]["max_steps"] = steps
    params["sweep"].update(lams=[5.0], betas=[0.016], seeds=[0, 1], jobs=2)
    # Everything else as the default profile has it: a validation every 75 steps (each with its
    # BatchNorm recalibration), a checkpoint at every epoch end, the same warm-up.
    if precision is not None:
        params["trainer"]["precision"] = precision
    return params


def run_configuration(name: str, source: Path, params: dict, threads_env: str, work: Path) -> dict:
    """Every family's sweep of ``params`` with the packages of ``source``; wall time and run metrics."""
    where = work / name
    where.mkdir(parents=True)
    (where / "params.yaml").write_text(yaml.safe_dump(params))
    path = os.pathsep.join(str(source / "packages" / p / "src") for p in PACKAGES)
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": threads_env, "MPLBACKEND": "Agg",
           "TRITON_INTERPRET": "0"}
    env.pop("RD_TRAIN_CORES", None)
    runs = 0
    start = time.perf_counter()
    for family in ("perceptual", "adversarial"):
        done = subprocess.run([sys.executable, "-c", CLI, "sweep", "--sweep", "fixed", "--family", family,
                               "--out", f"runs/{family}", "--jobs", "2"], cwd=where, env=env,
                              capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"{name} / {family} failed:\n{done.stderr[-3000:]}")
        runs += len(params["sweep"]["seeds"])
    wall = time.perf_counter() - start
    steps = runs * params["optim"]["max_steps"]
    metrics = {}
    for path in sorted(where.glob("runs/*/*/metrics.json")):
        m = json.loads(path.read_text())
        metrics[path.parent.name] = {k: m.get(k) for k in ("kl", "anisotropy", "precision", "threads")}
    print(f"{name:>18}: {wall:7.1f} s  {steps / wall:6.1f} run-steps/s", flush=True)
    return {"wall_s": wall, "run_steps": steps, "run_steps_per_s": steps / wall, "runs": metrics}


def cpu_description() -> dict:
    flags: set[str] = set()
    model = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags.update(line.partition(":")[2].split())
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
    except OSError:
        pass
    wanted = ("avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "avx512_fp16")
    return {"model": model, "cores": len(os.sched_getaffinity(0)), "bf16_flags": sorted(flags & set(wanted))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "cpu-sweep-throughput.json"))
    parser.add_argument("--baseline-ref", default="e0dca3a", help="the commit timed as 'baseline'")
    parser.add_argument("--steps", type=int, default=300, help="steps per run")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--only", nargs="*", help="configurations to run (default: all four)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="sweep-throughput-") as scratch:
        work = Path(scratch)
        baseline = export_tree(args.baseline_ref, work / "baseline")
        sys.path[:0] = [str(ROOT / "packages" / p / "src") for p in PACKAGES]
        from rd_train.config import DataConfig
        from rd_train.data import save_embedded

        embedded = yaml.safe_load((ROOT / "params.yaml").read_text())["embedded"]
        data_root = work / "embedded"
        save_embedded(data_root, DataConfig(**embedded))
        configurations = {
            "baseline-main-job": (baseline, reduced_params(args.steps, data_root, None), "2"),
            "baseline-best": (baseline, reduced_params(args.steps, data_root, None), "1"),
            "current": (ROOT, reduced_params(args.steps, data_root, "auto"), "2"),
            "current-fp32": (ROOT, reduced_params(args.steps, data_root, "32-true"), "2"),
        }
        chosen = args.only or list(configurations)
        results: dict[str, list[dict]] = {name: [] for name in chosen}
        for repeat in range(args.repeats):
            for name in chosen:
                source, params, threads = configurations[name]
                results[name].append(run_configuration(f"{name}-{repeat}", source, params, threads, work))

    def best(name: str) -> float:
        return max(r["run_steps_per_s"] for r in results[name])

    ratios = {}
    for new in ("current", "current-fp32"):
        for old in ("baseline-main-job", "baseline-best"):
            if new in results and old in results:
                ratios[f"{new} / {old}"] = best(new) / best(old)
    for key, value in ratios.items():
        print(f"{key}: {value:.2f}x", flush=True)
    import torch

    report = {
        "what": "run-steps per second of a fixed small sweep (2 runs x 2 families), wall time per config",
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "baseline_ref": args.baseline_ref, "steps_per_run": args.steps,
        "cpu": cpu_description(), "torch": torch.__version__, "python": platform.python_version(),
        "results": results, "ratios_best_of_repeats": ratios,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=1) + "\n")
    tmp.replace(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
