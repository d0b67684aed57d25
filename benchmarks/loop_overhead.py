"""What Lightning's training loop costs per step, against a bare loop of the same step, and where each
family's step sits against its fp32 roofline (issue 29: keep Lightning or replace the inner loop?).

For each family of the default sweep (pixel SSE, VGG16 (HED) λ = 5, PatchGAN λ = 5; GECO at 10 nats, the
profile's model, data and batch), each trained as a CPU sweep trains it (the VGG16 (HED) run reads its
targets' features from the sweep's shared table, built once before any timing), in this one process with
one thread and nothing else running:

* ``lightning``: `rd_train.training.run.fit` of ``--steps`` steps with validations off (so only the training
  loop is timed), minus the same fit at ``--steps`` / 4 (set-up and the final evaluation cancel): ms a step;
* ``bare``: the same step, `VAEModule.train_step` (the one Lightning's ``training_step`` calls: draw the
  noise, `forward_backward`, the fused Adam step with the non-finite skip, the EMA, the schedulers, the
  rate update, the training averages; what a step must do), in a plain Python loop over the same data
  loader, without Lightning's logging: ms a step after a warm-up;
* the roofline: the convolution and matmul FLOPs the step runs, counted by ``torch.utils.flop_counter`` over
  one bare step (with the table, no forward pass of the targets), divided by the fp32 conv peak this process
  measures (a 64→64 3×3 convolution at 16 px, batch 32, the VGG16 (HED) block's shape; and a 1024³ GEMM for
  reference), before and after the fits, the better of the two; and beside it, the same convolution's
  median rate over 200 calls (the rate it sustains; the best call moves far more between measurements).

Writes JSON (``--out``) and prints a table: ms per step both ways, the share Lightning adds, the FLOPs,
the roofline time and the step's multiple of it.

    python benchmarks/loop_overhead.py --out benchmarks/results/cpu-loop-overhead.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from bench_params import benchmark_params

ROOT = Path(__file__).resolve().parents[1]
FAMILIES = {"pixel": 0.0, "perceptual": 5.0, "adversarial": 5.0}


# The roofline's reference: a 64→64 3×3 convolution at 16 px, batch 32 (the VGG16 (HED) block's shape).
CONV_FLOPS = 2 * 64 * 64 * 9 * 16 * 16 * 32


def vgg_block_conv() -> Any:
    """The reference convolution as a call, with fresh weights and input for each measurement."""
    conv = torch.nn.Conv2d(64, 64, 3, padding=1)
    x = torch.randn(32, 64, 16, 16)

    def call() -> torch.Tensor:
        with torch.no_grad():
            return conv(x)

    return call


def _warmed(call: Any, calls: int = 5) -> Any:
    """``call`` after ``calls`` untimed calls: oneDNN picks and builds its kernel in the first ones."""
    for _ in range(calls):
        call()
    return call


def peak_gflops(repeats: int = 20) -> dict[str, float]:
    """fp32 GFLOP/s of a VGG-block-shaped convolution and of a 1024³ GEMM, best of ``repeats`` after a
    warm-up."""
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    out = {}
    for name, flops, call in (("conv", CONV_FLOPS, vgg_block_conv()), ("gemm", 2 * 1024**3, lambda: a @ b)):
        with torch.no_grad():
            _warmed(call)
            best = min(_timed(call) for _ in range(repeats))
        out[name] = flops / best / 1e9
    return out


def conv_median_gflops(calls: int = 200) -> float:
    """fp32 GFLOP/s of the same convolution at the median of ``calls`` calls after a warm-up: the rate it
    sustains. Here the best of 20 calls (`peak_gflops`) has read 55-88 GFLOP/s from one measurement to
    the next while the GEMM held steady (docs/performance.md), so each step is set against both."""
    call = _warmed(vgg_block_conv())
    return CONV_FLOPS / statistics.median(_timed(call) for _ in range(calls)) / 1e9


def _timed(call: Any) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def lightning_ms(config: Any, steps: int, scratch: Path, neural_loss: torch.nn.Module | None = None) -> float:
    """ms per step of `fit` with validations off: the difference of two lengths."""
    from rd_train.config import from_dict
    from rd_train.pipeline.workers import output_to
    from rd_train.training.run import fit

    seconds = []
    for n in (steps // 4, steps):
        base = config.to_dict()
        run = from_dict({**base, "out_dir": str(scratch / f"lightning-{n}"), "val_every_n_steps": 10**6,
                         "optim": {**base["optim"], "max_steps": n}})
        start = time.perf_counter()
        with output_to(scratch / f"lightning-{n}.log"):
            fit(run, neural_loss)
        seconds.append(time.perf_counter() - start)
    return (seconds[1] - seconds[0]) / (steps - steps // 4) * 1e3


def bare_training(config: Any, neural_loss: torch.nn.Module | None = None) -> tuple[Any, Any, Any, Any]:
    """What `fit` hands a training step, without Lightning: (the module, its backward plain autograd and
    given the held-out images a GECO step reads; its optimisers; its schedulers; the training loader)."""
    from rd_train.training.module import VAEModule
    from rd_train.training.run import data_module, give_training_images

    module = VAEModule(config.to_dict(), neural_loss=neural_loss)
    module.manual_backward = lambda loss: loss.backward()  # type: ignore[method-assign]
    data = data_module(config)
    give_training_images(module, data, config)
    data.setup("fit")
    optimizers, schedulers = module.configure_optimizers()
    return module, optimizers, schedulers, data.train_dataloader()


def bare_loop(config: Any, steps: int, warmup: int = 20, neural_loss: torch.nn.Module | None = None,
              channels_last: bool = False) -> tuple[float, float]:
    """(ms per step of the bare loop, FLOPs of one step counted by torch's flop counter): the FLOPs the
    step runs, so a VGG16 (HED) step given the tabled loss counts no forward pass of its targets. With
    ``channels_last`` the perceptual feature network's weights are NHWC, as bf16 CPU training keeps them
    (`VAEModule.use_channels_last`)."""
    from torch.utils.flop_counter import FlopCounterMode

    module, optimizers, schedulers, loader = bare_training(config, neural_loss)
    if channels_last:
        module.use_channels_last()
    batches = iter(loader)

    def step(index: int) -> None:  # index: the loop's count; the module counts its own steps
        nonlocal batches
        try:
            batch = next(batches)
        except StopIteration:
            batches = iter(loader)
            batch = next(batches)
        module.train_step(batch, optimizers, schedulers)

    for i in range(warmup):
        step(i)
    with FlopCounterMode(display=False) as counter:
        step(warmup)
    start = time.perf_counter()
    for i in range(warmup + 1, warmup + 1 + steps):
        step(i)
    return (time.perf_counter() - start) / steps * 1e3, float(counter.get_total_flops())


def timed_family_runs(params: dict[str, Any], scratch: str
                      ) -> Iterator[tuple[str, Any, torch.nn.Module | None]]:
    """(family, config, neural loss) of each run the step benchmarks time: the GECO sweep's at the family's
    λ in FAMILIES, 10 nats, seed 0, with the loss its sweep trains it with (VGG16 (HED): the shared
    target-feature table, built under ``scratch``)."""
    from rd_train.pipeline.sweep import run_configs, sweep_neural_loss

    for family, lam in FAMILIES.items():
        config = next(c for c in run_configs(params, "geco", family, scratch)
                      if c.loss.lam == lam and c.rate.target == 10.0 and c.seed == 0)
        yield family, config, sweep_neural_loss(config, Path(scratch) / "feature-tables")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    from rd_train.pipeline.workers import set_threads
    from rd_train.training.precision import cpu_bf16_flags

    set_threads(1)
    params = benchmark_params("loop_overhead")
    first, first_median = peak_gflops(), conv_median_gflops()
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="rd-loop-overhead-") as scratch:
        for family, config, loss in timed_family_runs(params, scratch):
            lightning = lightning_ms(config, args.steps, Path(scratch) / family, loss)
            bare, flops = bare_loop(config, args.steps, neural_loss=loss)
            results[family] = {"lightning_ms": lightning, "bare_ms": bare, "gflop_per_step": flops / 1e9,
                               "lightning_share": (lightning - bare) / lightning,
                               "shared_target_table": loss is not None}
    # The peak before and after the fits, the better of the two: on a shared VM a measurement can be low.
    last, last_median = peak_gflops(), conv_median_gflops()
    peak = {name: max(first[name], last[name]) for name in first}
    sustained = max(first_median, last_median)
    for r in results.values():
        r["roofline_ms"] = r["gflop_per_step"] / peak["conv"] * 1e3
        r["lightning_over_roofline"] = r["lightning_ms"] / r["roofline_ms"]
        r["lightning_over_sustained_conv"] = r["lightning_ms"] / (r["gflop_per_step"] / sustained * 1e3)
    command = f"python benchmarks/loop_overhead.py --steps {args.steps}"
    out = {"what": __doc__.split("\n\n")[0], "command": command,
           "cpu": {"model": platform.processor() or platform.machine(), "bf16_flags": cpu_bf16_flags()},
           "torch": torch.__version__, "threads": 1, "peak_gflops": peak,
           "peak_gflops_before_and_after": [first, last], "sustained_conv_gflops": sustained,
           "sustained_conv_gflops_before_and_after": [first_median, last_median], "results": results,
           "median_lightning_share": statistics.median(r["lightning_share"] for r in results.values())}
    print(f"fp32 peak: conv {peak['conv']:.0f} GFLOP/s (median {sustained:.0f}), GEMM {peak['gemm']:.0f} "
          "GFLOP/s (one thread)")
    print("| family | Lightning ms/step | bare ms/step | Lightning's share | GFLOP/step | roofline ms "
          "| x roofline | x sustained conv |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for family, r in results.items():
        print(f"| {family} | {r['lightning_ms']:.1f} | {r['bare_ms']:.1f} | {r['lightning_share']:+.0%} | "
              f"{r['gflop_per_step']:.2f} | {r['roofline_ms']:.1f} | {r['lightning_over_roofline']:.2f} | "
              f"{r['lightning_over_sustained_conv']:.2f} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
