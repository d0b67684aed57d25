"""What `compile: true` does to a training step on the CPU, and how much of each step is convolutions: the
most that any change leaving the convolutions as they are could gain (issue 29).

For each family of the default sweep (pixel SSE, VGG16 (HED) λ = 5 with the sweep's shared target table,
PatchGAN λ = 5; GECO at 10 nats, seed 0, the profile's model, data and batch), in this one process with one
thread and nothing else running:

* ``eager`` and ``compiled``: `VAEModule.train_step` (what Lightning's ``training_step`` calls) in a bare
  loop over the same batches, with the config's ``compile`` false and true (true compiles encoder ->
  sample -> decoder with `torch.compile`, inductor on the CPU; rd_train/training/module.py). Each round
  builds both modules from the same seed, runs ``--warmup`` steps (compilation included), then times
  ``--steps`` steps; ``--rounds`` rounds alternate the two, and the medians are reported. The two do not
  compute the same bits (inductor fuses and reorders): beside the time, the compiled core's reconstruction
  and KL against the eager core's, same weights, first training batch and noise (largest relative
  difference). Weights are not compared: a bias that a BatchNorm follows has a zero gradient up to
  rounding, which Adam scales to full-size steps, so such weights part at once whatever the change.
* ``conv_share``: the share of an eager step's operator self time (`torch.profiler`, ``--profile-steps``
  steps) spent in convolutions, forward and backward (every operator whose name has ``conv`` in it).
  A change that leaves the convolutions as they are (a leaner loop, fused element-wise ops, fewer
  dispatches, `compile` of anything else) can at most divide the step's time by 1 / conv_share.

Writes JSON (``--out``) and prints a table.

    python benchmarks/cpu_compile_step.py --out benchmarks/results/cpu-compile-step.json
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from bench_params import benchmark_params
from loop_overhead import bare_training, conv_median_gflops, peak_gflops, timed_family_runs


def training_setup(config: Any, compiled: bool, neural_loss: torch.nn.Module | None, batches: int
                   ) -> tuple[Any, Any, Any, list[torch.Tensor]]:
    """(module, optimizers, schedulers, the run's first ``batches`` training batches, the loader cycled if
    it is shorter) of ``config`` with ``compile`` set as asked, as `loop_overhead.bare_training` sets it
    up, its weights drawn from the run's seed, so the two variants start from the same weights."""
    from rd_train.config import from_dict

    torch.manual_seed(config.seed)
    variant = from_dict({**config.to_dict(), "compile": compiled})
    module, optimizers, schedulers, loader = bare_training(variant, neural_loss)
    out: list[torch.Tensor] = []
    while len(out) < batches:
        out.extend(b for _, b in zip(range(batches - len(out)), loader, strict=False))
    return module, optimizers, schedulers, out


def timed_round(config: Any, compiled: bool, neural_loss: torch.nn.Module | None, warmup: int,
                steps: int) -> float:
    """ms per step after ``warmup`` steps."""
    module, optimizers, schedulers, batches = training_setup(config, compiled, neural_loss, warmup + steps)
    for batch in batches[:warmup]:
        module.train_step(batch, optimizers, schedulers)
    start = time.perf_counter()
    for batch in batches[warmup:]:
        module.train_step(batch, optimizers, schedulers)
    return (time.perf_counter() - start) / steps * 1e3


def core_difference(config: Any, neural_loss: torch.nn.Module | None) -> float:
    """The largest relative difference between the compiled and the eager encoder -> sample -> decoder on
    the first training batch with its noise, from the same weights: reconstruction and per-sample KL."""
    eager, _, _, batches = training_setup(config, False, neural_loss, 1)
    compiled, _, _, _ = training_setup(config, True, neural_loss, 1)
    x = batches[0]
    _, eps = eager.draw_noise(x, 0)
    worst = 0.0
    with torch.no_grad():
        for a, b in zip(eager._core(x, eps)[:2], compiled._core(x, eps)[:2], strict=True):
            worst = max(worst, float((a - b).abs().max() / a.abs().max()))
    return worst


def conv_share(config: Any, neural_loss: torch.nn.Module | None, warmup: int, steps: int) -> dict[str, float]:
    """The eager step's operator self time (ms per step, profiled) and the share of it in convolutions."""
    from torch.profiler import ProfilerActivity, profile

    module, optimizers, schedulers, batches = training_setup(config, False, neural_loss, warmup + steps)
    for batch in batches[:warmup]:
        module.train_step(batch, optimizers, schedulers)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for batch in batches[warmup:]:
            module.train_step(batch, optimizers, schedulers)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events) / steps / 1e3
    convolutions = sum(e.self_cpu_time_total for e in events if "conv" in e.key) / steps / 1e3
    return {"profiled_self_ms": total, "conv_ms": convolutions, "conv_share": convolutions / total,
            "ceiling_without_touching_convolutions": total / convolutions}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile-steps", type=int, default=20)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    from rd_train.pipeline.workers import set_threads
    from rd_train.training.metrics import write_json
    from rd_train.training.precision import cpu_bf16_flags

    set_threads(1)
    warnings.filterwarnings("ignore")
    params = benchmark_params("cpu_compile_step")
    first, first_median = peak_gflops(), conv_median_gflops()
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="rd-compile-step-") as scratch:
        for family, config, loss in timed_family_runs(params, scratch):
            times: dict[str, list[float]] = {"eager": [], "compiled": []}
            for _ in range(args.rounds):
                times["eager"].append(timed_round(config, False, loss, args.warmup, args.steps))
                times["compiled"].append(timed_round(config, True, loss, args.warmup, args.steps))
            eager, compiled = statistics.median(times["eager"]), statistics.median(times["compiled"])
            results[family] = {"eager_ms": eager, "compiled_ms": compiled,
                               "eager_over_compiled": eager / compiled,
                               "eager_ms_rounds": times["eager"], "compiled_ms_rounds": times["compiled"],
                               "core_largest_relative_difference": core_difference(config, loss),
                               **conv_share(config, loss, args.warmup, args.profile_steps)}
            r = results[family]
            print(f"{family}: eager {eager:.1f} ms, compiled {compiled:.1f} ms "
                  f"({r['eager_over_compiled']:.2f}x), "
                  f"convolutions {r['conv_share']:.0%} of the step", flush=True)
    last, last_median = peak_gflops(), conv_median_gflops()
    command = (f"python benchmarks/cpu_compile_step.py --steps {args.steps} --warmup {args.warmup} "
               f"--rounds {args.rounds} --profile-steps {args.profile_steps}")
    out = {"what": __doc__.split("\n\n")[0], "command": command,
           "cpu": {"model": platform.processor() or platform.machine(), "bf16_flags": cpu_bf16_flags()},
           "torch": torch.__version__, "threads": 1,
           "peak_gflops_before_and_after": [first, last],
           "sustained_conv_gflops_before_and_after": [first_median, last_median], "results": results}
    print("| family | eager ms/step | compiled ms/step | eager / compiled | compiled core vs eager "
          "| convolutions' share | most a change outside the convolutions could give |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for family, r in results.items():
        print(f"| {family} | {r['eager_ms']:.1f} | {r['compiled_ms']:.1f} | "
              f"{r['eager_over_compiled']:.2f}x | "
              f"{r['core_largest_relative_difference']:.1e} | {r['conv_share']:.0%} | "
              f"{r['ceiling_without_touching_convolutions']:.2f}x |")
    write_json(args.out, out)


if __name__ == "__main__":
    main()
