"""Run-steps per second of the default sweep's three families: 8b4a8ec against this tree, side by side.

Fixed work, the same for both trees: `rd-train sweep --sweep fixed --jobs 2` of the default params reduced
to one cell per family (pixel SSE; VGG16 (HED) and PatchGAN at λ = 5; β = 0.016), seeds 0 and 1,
``--steps`` steps each, with the default profile's cadence (validations, checkpoints) and precision.
Keys that 8b4a8ec does not know (protocol v3's ``optim.lr_floor``, GECO's offset correction, the length
replicate) are left out for it, and ``lr_floor`` is 0 for this tree, so both train the same runs (the
final KL and anisotropy of every run are reported). Both run as ``nox -s repro`` runs them
(OMP_NUM_THREADS=2 exported, two workers on two cores), one after another in this one invocation, with
nothing else running; ``--repeats`` interleaves them again.

Per tree and family: run-steps per second (wall time of the sweep command: process start, data, training,
validations, checkpoints, final evaluation), the ratio of this tree to 8b4a8ec (and, beside it, the ratio over
training alone, as each run times itself: at 300 steps process start is about half of a sweep's wall time
and moves its ratio by about ±20 % from one session to the next), and the step's time as a
multiple of its fp32 roofline: one worker's seconds per step (two workers share two cores) against the FLOPs
the step runs (``torch.utils.flop_counter`` over one step of this tree as its sweep trains it,
`loop_overhead.bare_loop`: a VGG16 (HED) step with the shared table runs no forward pass of its targets, so
none is counted; the count without the table is reported beside it) at the conv peak this process measures
(`loop_overhead.peak_gflops`, before and after, the better). Writes JSON.

How far could any change outside the convolutions take this? Each family's step, as this tree's sweep
trains it, is profiled for the share of its operator time in convolutions (`cpu_compile_step.conv_share`);
this tree's wall time scaled by that share is a lower bound on a sweep whose every other operation took
no time (process start, validations and the final evaluation are scaled with it, which only lowers the
bound), so 8b4a8ec's wall time over it bounds the ratio from above (``ceiling_outside_convolutions``).

This tree's VGG16 (HED) runs read one target-feature table that a sweep builds once and every VGG16 (HED)
run of the pipeline then shares (78 runs of the default profile, every stage). Its one-time build is timed
here on its own (one thread, before the timed sweeps, into the directory they read), so the family's rate
is the steady state a pipeline sees; the rate with the build charged to this benchmark's two runs is
reported beside it as the worst case.

    python benchmarks/sweep_throughput.py --steps 300 --out benchmarks/results/cpu-sweep-throughput.json
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
FAMILIES = ("pixel", "perceptual", "adversarial")
CLI = "import sys; from rd_train.cli import main; sys.exit(main(sys.argv[1:]))"


def export_tree(ref: str, into: Path) -> Path:
    """The packages of commit ``ref`` (git archive), unpacked under ``into``."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "packages"], capture_output=True,
                             check=True).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


# Keys 8b4a8ec's config would refuse. The rate keys are GECO's only: the fixed-β runs here never read them.
V3_ONLY = {"optim": ("lr_floor",),
           "rate": ("geco_outer_gain", "geco_outer_start", "geco_proportional_limit", "geco_tracks",
                    "geco_offset_average", "geco_outer_terminal"),
           "sweep": ("length_replicate",)}


def reduced_params(steps: int, data_root: Path, baseline: bool) -> dict:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"]["root"] = str(data_root)
    params["optim"]["max_steps"] = steps
    params["sweep"].update(lams=[5.0], betas=[0.016], seeds=[0, 1], jobs=2)
    params["optim"]["lr_floor"] = 0.0  # the schedule 8b4a8ec trains with
    if baseline:
        for section, keys in V3_ONLY.items():
            for key in keys:
                params[section].pop(key, None)
    return params


def build_shared_table(params: dict, directory: Path) -> float:
    """Seconds to build this tree's shared target-feature table for ``params``' VGG16 (HED) runs, into
    ``directory`` (where the timed sweeps then find it: `rd_train.pipeline.sweep.feature_table_directory`)."""
    from rd_train.pipeline.sweep import run_configs, sweep_neural_loss

    with tempfile.TemporaryDirectory(prefix="sweep-throughput-table-") as scratch:
        config = run_configs(params, "fixed", "perceptual", scratch)[0]
        start = time.perf_counter()
        sweep_neural_loss(config, directory)
        return time.perf_counter() - start


def run_configuration(name: str, source: Path, params: dict, threads_env: str, work: Path,
                      extra_env: dict[str, str] | None = None) -> dict:
    """Every family's sweep of ``params`` with the packages of ``source``; wall time and run metrics."""
    where = work / name
    where.mkdir(parents=True)
    (where / "params.yaml").write_text(yaml.safe_dump(params))
    path = os.pathsep.join(str(source / "packages" / p / "src") for p in PACKAGES)
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": threads_env, "MPLBACKEND": "Agg",
           "TRITON_INTERPRET": "0", **(extra_env or {})}
    env.pop("RD_TRAIN_CORES", None)
    if not extra_env:
        env.pop("RD_TRAIN_FEATURE_TABLES", None)
    families = {}
    for family in FAMILIES:
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", CLI, "sweep", "--sweep", "fixed", "--family", family,
                               "--out", f"runs/{family}", "--jobs", "2"], cwd=where, env=env,
                              capture_output=True, text=True, check=False)
        wall = time.perf_counter() - start
        if done.returncode != 0:
            raise SystemExit(f"{name} / {family} failed:\n{done.stderr[-3000:]}")
        runs = 1 if family == "pixel" else len(params["sweep"]["lams"])
        steps = runs * len(params["sweep"]["seeds"]) * params["optim"]["max_steps"]
        metrics = {}
        for path in sorted((where / "runs" / family).glob("*/metrics.json")):
            m = json.loads(path.read_text())
            metrics[path.parent.name] = {k: m.get(k) for k in ("kl", "anisotropy", "precision", "threads",
                                                                "train_seconds_this_process")}
        # Training alone (fit and the final evaluation, as each run times itself), without process start,
        # imports and data: two workers share two cores, so their seconds are summed and halved.
        train_s = sum(r["train_seconds_this_process"] for r in metrics.values()) / 2
        families[family] = {"wall_s": wall, "run_steps": steps, "run_steps_per_s": steps / wall,
                            "train_s": train_s, "train_run_steps_per_s": steps / train_s, "runs": metrics}
        print(f"{name:>12} {family:>11}: {wall:7.1f} s  {steps / wall:6.1f} run-steps/s", flush=True)
    return families


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


def step_flops(params: dict, family: str, tables: Path | None) -> float:
    """FLOPs of one training step of ``family``'s benchmarked run as this tree's sweep trains it
    (loop_overhead.bare_loop): a VGG16 (HED) step reads its targets' features from the shared table in
    ``tables``, so its targets' forward pass, which it does not run, is not counted. ``tables=None``:
    the step without the table, for comparison."""
    from loop_overhead import bare_loop
    from rd_train.pipeline.sweep import run_configs, sweep_neural_loss

    with tempfile.TemporaryDirectory(prefix="sweep-throughput-flops-") as scratch:
        config = run_configs(params, "fixed", family, scratch)[0]
        loss = sweep_neural_loss(config, tables) if tables is not None else None
        return bare_loop(config, steps=1, warmup=2, neural_loss=loss)[1]


def step_conv_share(params: dict, family: str, tables: Path, steps: int = 20) -> float:
    """The share of the operator time of ``family``'s benchmarked step, as this tree's sweep trains it, spent
    in convolutions (`cpu_compile_step.conv_share`, after a warm-up of 20 steps)."""
    from cpu_compile_step import conv_share
    from rd_train.pipeline.sweep import run_configs, sweep_neural_loss

    with tempfile.TemporaryDirectory(prefix="sweep-throughput-conv-") as scratch:
        config = run_configs(params, "fixed", family, scratch)[0]
        return conv_share(config, sweep_neural_loss(config, tables), warmup=20, steps=steps)["conv_share"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "cpu-sweep-throughput.json"))
    parser.add_argument("--baseline-ref", default="8b4a8ec", help="the commit timed as the baseline")
    parser.add_argument("--steps", type=int, default=300, help="steps per run")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    sys.path[:0] = [str(ROOT / "benchmarks"), *(str(ROOT / "packages" / p / "src") for p in PACKAGES)]
    import torch
    from loop_overhead import peak_gflops
    from rd_train.pipeline.workers import set_threads

    with tempfile.TemporaryDirectory(prefix="sweep-throughput-") as scratch:
        work = Path(scratch)
        baseline = export_tree(args.baseline_ref, work / "baseline")
        from rd_train.config import DataConfig
        from rd_train.training.data import save_embedded

        embedded = yaml.safe_load((ROOT / "params.yaml").read_text())["embedded"]
        data_root = work / "embedded"
        save_embedded(data_root, DataConfig(**embedded))
        trees = {args.baseline_ref: (baseline, reduced_params(args.steps, data_root, True)),
                 "current": (ROOT, reduced_params(args.steps, data_root, False))}
        set_threads(1)
        first = peak_gflops()
        tables = work / "feature-tables"
        table_build_s = build_shared_table(trees["current"][1], tables)
        print(f"shared target-feature table built in {table_build_s:.1f} s (once per pipeline)", flush=True)
        extra = {"current": {"RD_TRAIN_FEATURE_TABLES": str(tables)}}
        results: dict[str, list[dict]] = {name: [] for name in trees}
        for repeat in range(args.repeats):
            for name, (source, params) in trees.items():
                results[name].append(run_configuration(f"{name}-{repeat}", source, params, "2", work,
                                                       extra.get(name)))
        flops = {family: step_flops(trees["current"][1], family, tables) for family in FAMILIES}
        untabled = {family: step_flops(trees["current"][1], family, None) for family in FAMILIES}
        shares = {family: step_conv_share(trees["current"][1], family, tables) for family in FAMILIES}
        last = peak_gflops()
    peak = max(first["conv"], last["conv"])

    def best(name: str, family: str, key: str = "run_steps_per_s") -> float:
        return max(r[family][key] for r in results[name])

    # Each tree's best (shortest) wall time per family over the repeats.
    walls = {name: {f: min(r[f]["wall_s"] for r in results[name]) for f in FAMILIES} for name in trees}
    per_family = {}
    for family in FAMILIES:
        current, old = best("current", family), best(args.baseline_ref, family)
        step_s = 2 / current  # two workers on two cores: one worker's seconds per step
        roofline_s = flops[family] / (peak * 1e9)
        with_build = results["current"][0][family]["run_steps"] / (
            walls["current"][family] + (table_build_s if family == "perceptual" else 0.0))
        per_family[family] = {"current_run_steps_per_s": current, "baseline_run_steps_per_s": old,
                              "ratio": current / old, "ratio_with_table_build": with_build / old,
                              "training_only_ratio": best("current", family, "train_run_steps_per_s")
                              / best(args.baseline_ref, family, "train_run_steps_per_s"),
                              "gflop_per_step": flops[family] / 1e9,
                              "gflop_per_step_without_table": untabled[family] / 1e9,
                              "step_ms": step_s * 1e3, "roofline_ms": roofline_s * 1e3,
                              "x_roofline": step_s / roofline_s, "conv_share": shares[family]}
    total = {name: sum(walls[name].values()) for name in trees}
    steps = sum(results["current"][0][f]["run_steps"] for f in FAMILIES)
    overall = (steps / total["current"]) / (steps / total[args.baseline_ref])
    overall_with_build = total[args.baseline_ref] / (total["current"] + table_build_s)
    convolutions_only = sum(walls["current"][f] * shares[f] for f in FAMILIES)
    ceiling = total[args.baseline_ref] / convolutions_only
    print(f"fp32 conv peak {peak:.0f} GFLOP/s (one thread)")
    print(f"| family | {args.baseline_ref} run-steps/s | current run-steps/s | ratio | ratio, table build "
          "charged here | ratio, training alone | GFLOP/step | ms/step | x roofline |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for family, r in per_family.items():
        print(f"| {family} | {r['baseline_run_steps_per_s']:.1f} | {r['current_run_steps_per_s']:.1f} | "
              f"{r['ratio']:.2f}x | {r['ratio_with_table_build']:.2f}x | {r['training_only_ratio']:.2f}x | "
              f"{r['gflop_per_step']:.2f} | {r['step_ms']:.1f} | {r['x_roofline']:.2f} |")
    print(f"all three families: {overall:.2f}x ({overall_with_build:.2f}x with the table build charged "
          f"here); at most {ceiling:.2f}x with every operation but the convolutions free (shares "
          + ", ".join(f"{f} {shares[f]:.0%}" for f in FAMILIES) + ")")
    report = {
        "what": __doc__.split("\n\n")[0], "command": " ".join(["python", *sys.argv]),
        "baseline_ref": args.baseline_ref, "steps_per_run": args.steps,
        "cpu": cpu_description(), "torch": torch.__version__, "python": platform.python_version(),
        "peak_conv_gflops": peak, "peak_before_and_after": [first, last], "results": results,
        "per_family_best_of_repeats": per_family, "all_families_ratio": overall,
        "shared_table_build_s": table_build_s, "all_families_ratio_with_table_build": overall_with_build,
        "ceiling_outside_convolutions": ceiling,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=1) + "\n")
    tmp.replace(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
