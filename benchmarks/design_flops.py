"""The default design's training work in FLOPs, and the floor it puts under the main job on this CPU.

For every (architecture, family) the default params train (the vector VAE's sweeps and the AutoencoderKL's,
`rd_train.pipeline.plan.planned_blocks`, as `rd-train plan` lists them): the runs and their steps, the
convolution and matmul FLOPs one step runs as a CPU sweep trains it (``torch.utils.flop_counter`` over one
step of `loop_overhead.bare_loop`; a VGG16 (HED) step reads its targets' features from the shared table, so
their forward pass is not counted), and that step's time in the bare loop (``--steps`` steps after a
warm-up, one thread, nothing else running).

Two floors for the training stages on ``--cores`` cores, one run per core:

* ``roofline_min``: every FLOP at the fp32 convolution peak this process measures (a 64→64 3×3
  convolution at 16 px, batch 32; `loop_overhead.peak_gflops`, before and after, the better);
* ``step_alone_min``: every step at the speed of its bare-loop step, with no set-up, validation,
  checkpoint, final evaluation or contention between the two workers. A pipeline cannot train faster than
  this without making the step itself faster.

    python benchmarks/design_flops.py --out benchmarks/results/cpu-design-flops.json
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
from pathlib import Path
from typing import Any

import torch
from bench_params import benchmark_params
from loop_overhead import bare_loop, peak_gflops

ROOT = Path(__file__).resolve().parents[1]


def design_blocks(params: Any) -> dict[str, dict[str, Any]]:
    """Per architecture/family (`rd_train.pipeline.plan.planned_blocks`, grouped as `rd-train plan` groups
    its costs): its runs, their steps in all, and one run's config to time (its first block's last run:
    the largest λ, whose step the discriminator and the neural loss both run)."""
    from rd_train.pipeline.plan import planned_blocks

    blocks: dict[str, dict[str, Any]] = {}
    for block in planned_blocks(params):
        model, family = block.model, block.family  # a step's FLOPs: the rate controller aside
        name = f"{'AutoencoderKL' if model == 'spatial' else model}/{family}"
        entry = blocks.setdefault(name, {"runs": 0, "steps": 0, "config": block.configs[-1]})
        entry["runs"] += len(block.configs)
        entry["steps"] += sum(c.optim.max_steps for c in block.configs)
    return blocks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=30, help="bare-loop steps timed per block")
    parser.add_argument("--cores", type=int, default=2, help="the cores a pipeline trains on, a run on each")
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    from rd_train.params import from_mapping
    from rd_train.pipeline.sweep import sweep_neural_loss
    from rd_train.pipeline.workers import set_threads
    from rd_train.training.precision import cpu_bf16_flags

    set_threads(1)
    params = from_mapping(benchmark_params("design_flops", args.params), str(args.params))
    first = peak_gflops()
    with tempfile.TemporaryDirectory(prefix="rd-design-flops-") as scratch:
        blocks = design_blocks(params)
        for name, block in blocks.items():
            config = block.pop("config")
            loss = sweep_neural_loss(config, Path(scratch) / "feature-tables")
            ms, flops = bare_loop(config, args.steps, warmup=5, neural_loss=loss)
            block.update(gflop_per_step=flops / 1e9, step_ms=ms, shared_target_table=loss is not None,
                         timed_run=Path(config.out_dir).name)
            print(f"{name}: {block['runs']} runs, {block['steps']} steps, {block['gflop_per_step']:.2f} "
                  f"GFLOP and {ms:.1f} ms a step", flush=True)
    last = peak_gflops()
    peak = max(first["conv"], last["conv"])
    for block in blocks.values():
        block["tflop"] = block["steps"] * block["gflop_per_step"] / 1e3
        block["roofline_min"] = block["tflop"] * 1e3 / peak / args.cores / 60
        block["step_alone_min"] = block["steps"] * block["step_ms"] / 1e3 / args.cores / 60
        block["x_roofline"] = block["step_alone_min"] / block["roofline_min"]
    total = {key: sum(b[key] for b in blocks.values())
             for key in ("runs", "steps", "tflop", "roofline_min", "step_alone_min")}
    out = {"what": __doc__.split("\n\n")[0],
           "command": f"python benchmarks/design_flops.py --steps {args.steps} --cores {args.cores}",
           "cpu": {"model": platform.processor() or platform.machine(), "bf16_flags": cpu_bf16_flags()},
           "torch": torch.__version__, "threads_per_run": 1, "cores": args.cores, "peak_gflops": peak,
           "peak_gflops_before_and_after": [first, last], "blocks": blocks, "total": total}
    print(f"fp32 conv peak {peak:.0f} GFLOP/s (one thread); {args.cores} cores, a run on each")
    print("| architecture/family | runs | steps | GFLOP/step | TFLOP | roofline min | step ms "
          "| step-alone min | x roofline |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, b in blocks.items():
        print(f"| {name} | {b['runs']} | {b['steps']} | {b['gflop_per_step']:.2f} | {b['tflop']:.1f} | "
              f"{b['roofline_min']:.1f} | {b['step_ms']:.1f} | {b['step_alone_min']:.1f} | "
              f"{b['x_roofline']:.2f} |")
    print(f"| all | {total['runs']} | {total['steps']} | | {total['tflop']:.1f} | "
          f"{total['roofline_min']:.1f} | | {total['step_alone_min']:.1f} | "
          f"{total['step_alone_min'] / total['roofline_min']:.2f} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(out, indent=1) + "\n")
    tmp.replace(args.out)


if __name__ == "__main__":
    main()
