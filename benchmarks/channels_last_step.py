"""fp32 training steps with the perceptual feature network in channels-last (NHWC) against NCHW, side by side.

bf16 CPU training keeps the VGG16 (HED) feature network's weights NHWC (`VAEModule.use_channels_last`);
fp32 runs keep NCHW, so they compute what they always did. Is NHWC worth a rounding-control pilot in fp32
(issue 29: a lever that changes rounding lands only through one)? For the default design's two VGG16
(HED) steps, the vector VAE's and the AutoencoderKL's (`design_flops.design_blocks`: each block's largest
λ), this times the bare-loop step (`loop_overhead.bare_loop`, one thread, nothing else running) in both
layouts, alternating, ``--repeats`` times each, and reports the ratio of the medians. It also measures
how far NHWC moves the numbers: the loss and its gradient to the reconstruction on one training batch,
as relative differences from NCHW (oneDNN picks other kernels, so the sums run in another order).

    python benchmarks/channels_last_step.py --out benchmarks/results/cpu-channels-last-step.json
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import tempfile
from pathlib import Path
from typing import Any

import torch
from bench_params import benchmark_params
from design_flops import design_blocks
from host_overhead import commit_of
from loop_overhead import bare_loop, peak_gflops

ROOT = Path(__file__).resolve().parents[1]
BLOCKS = ("vector/perceptual", "AutoencoderKL/perceptual")


def is_nhwc(network: torch.nn.Module) -> bool:
    """Whether ``network``'s first convolution's weights are channels-last (and not also NCHW-contiguous,
    which a 1 × 1 kernel would be in both layouts)."""
    weight = next(m for m in network.modules() if isinstance(m, torch.nn.Conv2d)).weight
    return weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()


def layout_shift(config: Any, neural_loss: torch.nn.Module | None) -> dict[str, Any]:
    """Relative differences, NHWC against NCHW, of the neural loss and its gradient to the reconstruction
    on the run's first training batch (reconstruction: the images plus noise of SD 0.1), and whether the
    NHWC copy's convolution weights are NHWC."""
    from rd_train.training.module import VAEModule
    from rd_train.training.run import data_module, give_training_images

    module = VAEModule(config.to_dict(), neural_loss=neural_loss)
    data = data_module(config)
    give_training_images(module, data, config)
    data.setup("fit")
    x = next(iter(data.train_dataloader()))  # a batch is the images' tensor (data.collate_images)
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(0)) * 0.1
    nchw = module.neural
    nhwc = copy.deepcopy(nchw).to(memory_format=torch.channels_last)
    out = []
    for network in (nchw, nhwc):
        x_hat = (x + noise).requires_grad_(True)
        loss = network(x, x_hat)
        (grad,) = torch.autograd.grad(loss, x_hat)
        out.append((loss.detach(), grad))
    (loss_a, grad_a), (loss_b, grad_b) = out
    return {"loss": float((loss_b - loss_a).abs() / loss_a.abs()),
            "grad": float((grad_b - grad_a).norm() / grad_a.norm()), "nhwc_weights": is_nhwc(nhwc)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20, help="bare-loop steps timed per measurement")
    parser.add_argument("--repeats", type=int, default=3, help="measurements per layout, alternating")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    from rd_theory.atomic import atomic_write_text
    from rd_train.params import from_mapping
    from rd_train.pipeline.sweep import sweep_neural_loss
    from rd_train.pipeline.workers import set_threads
    from rd_train.training.precision import cpu_bf16_flags

    set_threads(1)
    params = from_mapping(benchmark_params("channels_last_step", ROOT / "params.yaml"), "params.yaml")
    blocks = design_blocks(params)
    first = peak_gflops()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="rd-channels-last-") as scratch:
        for name in BLOCKS:
            config = blocks[name]["config"]
            ms: dict[str, list[float]] = {"nchw": [], "nhwc": []}
            flops = 0.0
            for _ in range(args.repeats):
                for layout in ms:
                    # A fresh loss each time: the NHWC arm converts the one it is given in place.
                    loss = sweep_neural_loss(config, Path(scratch) / "feature-tables")
                    step_ms, flops = bare_loop(config, args.steps, warmup=5, neural_loss=loss,
                                               channels_last=layout == "nhwc")
                    ms[layout].append(step_ms)
            median = {layout: statistics.median(v) for layout, v in ms.items()}
            shift = layout_shift(config, sweep_neural_loss(config, Path(scratch) / "feature-tables"))
            results[name] = {"timed_run": Path(config.out_dir).name, "step_ms": ms, "median_ms": median,
                             "speedup_nhwc": median["nchw"] / median["nhwc"], "gflop_per_step": flops / 1e9,
                             "nhwc_relative_difference": shift}
            print(f"{name}: NCHW {median['nchw']:.1f} ms, NHWC {median['nhwc']:.1f} ms a step "
                  f"({results[name]['speedup_nhwc']:.3f}x); loss moves {shift['loss']:.1e}, "
                  f"its gradient {shift['grad']:.1e} (relative)", flush=True)
    last = peak_gflops()
    peak = max(first["conv"], last["conv"])  # the conv peak reads low at times (loop_overhead.py)
    for entry in results.values():
        roofline_ms = entry["gflop_per_step"] / peak * 1e3
        entry["x_roofline"] = {layout: ms / roofline_ms for layout, ms in entry["median_ms"].items()}
    out = {"what": __doc__.split("\n\n")[0], "commit": commit_of(ROOT),
           "command": (f"python benchmarks/channels_last_step.py --steps {args.steps} "
                       f"--repeats {args.repeats}"),
           "machine": {"cpu": platform.processor() or platform.machine(), "bf16_flags": cpu_bf16_flags()},
           "torch": torch.__version__, "threads": 1, "conv_peak_gflops": peak,
           "peak_gflops_before_and_after": [first, last], "blocks": results}
    atomic_write_text(args.out, json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
