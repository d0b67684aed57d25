"""Steps per second of a whole training step on a GPU: the vector VAE at 32 px, batch 64, pixel SSE only
and PatchGAN (λ = 1), run through
`rd_train.training.run.fit` (Lightning, validation and checkpoints included).

Variants, each in the same process and on the same device:

* ``eager``: rd-kernels' PyTorch reference ops (``RD_KERNELS_BACKEND=reference``);
* ``fused``: the Triton kernels (the default on CUDA);
* ``compiled``: fused plus ``compile: true`` (encoder -> sample -> decoder through torch.compile);
* ``cudagraphs``: fused plus ``compile: reduce-overhead`` (the same, replayed as CUDA graphs);
* ``stepgraph``: fused, each step's forward and backward replayed as one CUDA graph (``step_graph``);
* ``baseline`` (with ``--baseline-src``): another source tree, e.g. the code before this change, run in
  a subprocess with the same settings its config understands.

Per-step time: a callback synchronises the device and reads the clock when step ``--start`` begins and
when training ends, so start-up, CUDA initialisation, autotuning and compilation (all in the first steps)
stay out; the epochs' validations and checkpoints inside the window stay in, and are also timed apart
(``ms_per_epoch_end``: from an epoch's last step to the next one's first), so a result says how much of a
step's time is the step. The baseline is timed by the same callback, added to its Trainer from outside.

Where the time goes (``--profile-steps N``, default 24): one more fit per family (fused variant) runs the
torch profiler over N steps inside an epoch (no validation or checkpoint in the window) and records, per
step, the wall time, the GPU's kernel time and so its busy fraction, the kernel launches, host
synchronisations and copies, and the host ops that cost the most. A step whose GPU is busy a small
fraction of its wall time is host-bound: the host, not the kernels, sets its speed.

``--device cpu`` runs the same harness on the CPU with few steps: a check of the script, not a
measurement to report. Usage::

    python benchmarks/training_step.py --out benchmarks/results/<device>-training.json [--baseline-src DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
from rd_theory.atomic import atomic_write_text
from torch.profiler import ProfilerActivity, profile

FAMILIES = {
    "pixel": {},
    "patchgan": {"neural": "patchgan", "lam": 1.0, "disc_channels": 16, "disc_layers": 2},
}
# variant: (config's compile, fit's step_graph)
VARIANTS = {"eager": (False, False), "fused": (False, False), "compiled": (True, False),
            "cudagraphs": ("reduce-overhead", False), "stepgraph": (False, True)}
COMMON = {
    "accelerator": "gpu", "devices": 1, "precision": "32-true",
    "data": {"name": "embedded", "image_size": 32, "n_train": 2048, "n_val": 256, "batch_size": 64},
    "model": {"kind": "vector", "latent_dim": 16, "channels": [32, 64]},
    "rate": {"beta": 0.016, "warmup_steps": 10},
}


TIMER = """
import time
import lightning as L
import torch


def sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


class StepTimer(L.Callback):
    # Wall time from step `start` to the end of training, and inside it the epoch ends: from an epoch's
    # last step to the next epoch's first (validation, checkpoint, loader reset). One extra sync at each
    # side of an epoch end, none inside an epoch.

    def __init__(self, start):
        self.start, self.seen, self.t0, self.t1 = start, 0, None, None
        self.epoch_end_s, self.epoch_ends, self.last_step_end = 0.0, 0, None

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if self.seen == self.start:
            sync()
            self.t0 = time.perf_counter()
        elif self.last_step_end is not None and batch_idx == 0:
            sync()
            self.epoch_end_s += time.perf_counter() - self.last_step_end
            self.epoch_ends += 1
        self.last_step_end = None
        self.seen += 1

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if self.t0 is not None and batch_idx == trainer.num_training_batches - 1:
            sync()
            self.last_step_end = time.perf_counter()

    def on_train_end(self, trainer, module):
        sync()
        self.t1 = time.perf_counter()

    def ms_per_step(self):
        return (self.t1 - self.t0) / (self.seen - self.start) * 1e3

    def breakdown(self):  # ms per step without the epoch ends, and ms per epoch end (None if none)
        steps = self.seen - self.start
        inside = (self.t1 - self.t0 - self.epoch_end_s) / steps * 1e3
        per_end = self.epoch_end_s / self.epoch_ends * 1e3 if self.epoch_ends else None
        return {"ms_per_step_inside_epochs": inside, "ms_per_epoch_end": per_end,
                "epoch_ends_timed": self.epoch_ends}
"""
exec(TIMER)


LAUNCHES = ("cudaLaunchKernel", "cudaLaunchKernelExC", "cuLaunchKernel", "cuLaunchKernelEx")
SYNCS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize")
COPIES = ("cudaMemcpyAsync", "cudaMemcpy")


class ProfileWindow(L.Callback):
    """The torch profiler over steps [start, start + steps) of a fit, summarised per step."""

    def __init__(self, start: int, steps: int) -> None:
        self.start, self.steps, self.seen = start, steps, 0
        self.profiler: profile | None = None
        self.wall_s, self.summary = 0.0, {}

    def on_train_batch_start(self, trainer, module, batch, batch_idx):  # type: ignore[no-untyped-def]
        cuda = module.device.type == "cuda"
        if self.seen in (self.start, self.start + self.steps) and cuda:
            torch.cuda.synchronize()
        if self.seen == self.start:
            activities = [ProfilerActivity.CPU, *([ProfilerActivity.CUDA] if cuda else [])]
            self.profiler = profile(activities=activities)
            self.profiler.__enter__()
            self.wall_s = time.perf_counter()
        elif self.seen == self.start + self.steps and self.profiler is not None:
            self.wall_s = time.perf_counter() - self.wall_s
            self.profiler.__exit__(None, None, None)
            self.summary = self.summarise(self.profiler)
            self.profiler = None
        self.seen += 1

    def summarise(self, profiler: profile) -> dict:
        events = profiler.events()
        kernel_us = sum(e.time_range.elapsed_us() for e in events
                        if e.device_type == torch.autograd.DeviceType.CUDA)
        names = [e.name for e in events]
        wall_ms = self.wall_s * 1e3 / self.steps
        averages = profiler.key_averages()
        host_ops = sorted(averages, key=lambda a: a.self_cpu_time_total, reverse=True)
        return {
            "steps": self.steps, "ms_per_step": wall_ms,
            "gpu_kernel_ms_per_step": kernel_us / 1e3 / self.steps,
            "gpu_busy_fraction": kernel_us / 1e3 / self.steps / wall_ms,
            "kernel_launches_per_step": sum(names.count(n) for n in LAUNCHES) / self.steps,
            "host_syncs_per_step": sum(names.count(n) for n in SYNCS) / self.steps,
            "copies_per_step": sum(names.count(n) for n in COPIES) / self.steps,
            "top_host_ops_us_per_step": {a.key: round(a.self_cpu_time_total / self.steps, 1)
                                         for a in host_ops[:15]},
            # every aten:: call the profiler saw, nested ones included (conv2d -> convolution -> ...)
            "aten_calls_per_step": sum(a.count for a in averages if a.key.startswith("aten::")) / self.steps,
        }


def fit_variant(family: str, variant: str, common: dict, steps: int, out: str, callback: L.Callback) -> None:
    """One fit of ``family`` run as ``variant``, measured by ``callback``."""
    from rd_train import from_dict
    from rd_train.training.run import fit

    compile_mode, step_graph = VARIANTS[variant]
    config = {**common, "loss": FAMILIES[family], "log_every_n_steps": 50, "compile": compile_mode,
              "out_dir": out, "optim": {"max_steps": steps, "lr": 0.002}}
    os.environ["RD_KERNELS_BACKEND"] = "reference" if variant == "eager" else "auto"
    try:
        fit(from_dict(config), callbacks=[callback], step_graph=step_graph)
    finally:
        os.environ.pop("RD_KERNELS_BACKEND", None)


def run_current(family: str, variant: str, common: dict, steps: int, start: int, scratch: str) -> dict:
    from rd_train.errors import ConfigError

    timer = StepTimer(start)  # noqa: F821  # defined by exec(TIMER)
    try:
        fit_variant(family, variant, common, steps, f"{scratch}/{family}-{variant}", timer)
    except ConfigError as error:  # a variant rd-train refuses here (step_graph on CUDA, for now)
        print(family, variant, "refused:", error, flush=True)
        return {"error": str(error)}
    ms, breakdown = timer.ms_per_step(), timer.breakdown()
    print(family, variant, f"{ms:.2f} ms/step", breakdown, flush=True)
    return {"ms_per_step": ms, "steps_per_s": 1e3 / ms, "timed_steps": timer.seen - start, **breakdown}


def run_profile(family: str, variant: str, common: dict, steps: int, start: int, window: int,
                scratch: str) -> dict:
    # inside the third epoch (32 steps each): no validation or checkpoint in the window
    from rd_train.errors import ConfigError

    profiler = ProfileWindow(start + 2, window)
    try:
        fit_variant(family, variant, common, steps, f"{scratch}/{family}-{variant}-profile", profiler)
    except ConfigError as error:
        return {"error": str(error)}
    scalars = {k: v for k, v in profiler.summary.items() if not isinstance(v, dict)}
    print(family, variant, "profile", scalars, flush=True)
    return profiler.summary


def run_baseline(family: str, common: dict, source: str, steps: int, start: int, scratch: str) -> dict:
    """The same measurement in a subprocess importing the packages of another source tree; the timer is
    added to every Trainer it builds (its fit takes no callbacks)."""
    code = TIMER + (
        "import json, sys\n"
        "from rd_train import from_dict\nfrom rd_train.training.run import fit\n"
        "config, steps = json.loads(sys.argv[1]), int(sys.argv[2])\n"
        "start, out = int(sys.argv[3]), sys.argv[4]\n"
        "timer = StepTimer(start)\n"
        "original = L.Trainer.__init__\n"
        "def with_timer(self, *args, **kwargs):\n"
        "    kwargs['callbacks'] = [*(kwargs.get('callbacks') or []), timer]\n"
        "    original(self, *args, **kwargs)\n"
        "L.Trainer.__init__ = with_timer\n"
        "fit(from_dict({**config, 'out_dir': out, 'optim': {'max_steps': steps, 'lr': 0.002}}))\n"
        "print('RESULT', json.dumps([timer.ms_per_step(), timer.seen - start, timer.breakdown()]))\n")
    packages = ("rd-theory", "rd-kernels", "rd-train")
    path = os.pathsep.join(str(Path(source) / "packages" / p / "src") for p in packages)
    config = json.dumps({**common, "loss": FAMILIES[family]})
    argv = [sys.executable, "-c", code, config, str(steps), str(start), f"{scratch}/base-{family}"]
    done = subprocess.run(argv, capture_output=True, text=True, check=False,
                          env={**os.environ, "PYTHONPATH": path})
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        return {"error": done.stderr[-2000:]}
    ms, timed_steps, breakdown = json.loads(lines[-1][7:])
    print(family, "baseline", f"{ms:.2f} ms/step", breakdown, flush=True)
    return {"ms_per_step": ms, "steps_per_s": 1e3 / ms, "timed_steps": timed_steps, **breakdown}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--baseline-src", help="a source tree (repository root) to time the same way")
    parser.add_argument("--steps", type=int, default=384, help="steps per fit (12 epochs of 32)")
    parser.add_argument("--start", type=int, default=64, help="the first timed step")
    parser.add_argument("--profile-steps", type=int, default=24,
                        help="steps in the profiled window (0: none)")
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda",
                        help="cpu: a quick check of this script (tiny data, few steps), not a measurement")
    args = parser.parse_args()
    common = COMMON
    if args.device == "cpu":
        common = {**COMMON, "accelerator": "cpu",
                  "data": {**COMMON["data"], "image_size": 16, "n_train": 256, "n_val": 32, "batch_size": 8}}
    elif not torch.cuda.is_available():
        print("training_step.py measures GPU training steps: no CUDA device (--device cpu checks the script)",
              file=sys.stderr)
        return 2
    device = torch.cuda.get_device_name() if args.device == "cuda" else "cpu (script check)"
    results: dict[str, dict] = {}
    report = {"device": device, "torch": torch.__version__, "steps": args.steps,
              "timed_from_step": args.start, "settings": {**common, "families": FAMILIES}, "results": results}

    def save() -> None:  # after every fit, so that a timeout keeps what was measured
        for family in FAMILIES:
            base = results.get(f"{family}/baseline", {}).get("ms_per_step")
            for variant in VARIANTS:
                measured = results.get(f"{family}/{variant}")
                if base and measured:
                    measured["speedup_vs_baseline"] = base / measured["ms_per_step"]
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.out, json.dumps(report, indent=1) + "\n")

    # Most wanted first: the baseline and the fastest variants, then the rest, then the profiles.
    with tempfile.TemporaryDirectory() as scratch:
        for family in FAMILIES:
            if args.baseline_src:
                results[f"{family}/baseline"] = run_baseline(family, common, args.baseline_src, args.steps,
                                                             args.start, scratch)
            for variant in ("fused", "stepgraph", "cudagraphs"):
                results[f"{family}/{variant}"] = run_current(family, variant, common, args.steps, args.start,
                                                             scratch)
                save()
        for family in FAMILIES:
            for variant in ("eager", "compiled"):
                results[f"{family}/{variant}"] = run_current(family, variant, common, args.steps, args.start,
                                                             scratch)
                save()
        if args.profile_steps:
            for variant in ("fused", "stepgraph"):
                for family in FAMILIES:
                    results[f"{family}/{variant}/profile"] = run_profile(
                        family, variant, common, args.steps, args.start, args.profile_steps, scratch)
                    save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
