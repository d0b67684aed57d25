"""Where a default-profile run's time goes, and what of it a change could remove without changing a number.

Part 1, phases of whole runs: one run per (model, family) of the default params (λ = 5 where there is a
λ, β = 0.016, seed 0, the profile's steps), each trained alone in this process with one thread (what a
sweep worker gets on 2 cores), its time split by Lightning callbacks into training batches, validations
(BatchNorm recalibration and the validation pass), checkpoint writes and the rest (process-level setup,
data, the final evaluation, Lightning's loop).

Part 2, inside a VGG16 (HED) step at the default scale (batch 32, 16 px, relu1_2 + relu2_2): the
target images' features (a forward without gradient, the same for every run that sees the image), the
reconstruction's forward and backward, the same with the target features given, and the max-pool in
NCHW against channels-last; plus whether a block's features of an image depend on the other images of a
batch of the same size (if not, a table of target features computed in training-size batches gives
bit-identical losses).

Run from the repository root after `dvc repro prepare data.dvc`:

    python benchmarks/run_costs.py --out benchmarks/results/cpu-run-costs.json
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from bench_params import benchmark_params

ROOT = Path(__file__).resolve().parents[1]


class PhaseTimer(L.Callback):
    """Wall seconds in training batches, validations and checkpoint writes."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.counts: dict[str, int] = defaultdict(int)
        self._started: dict[str, float] = {}

    def _start(self, phase: str) -> None:
        self._started[phase] = time.perf_counter()

    def _stop(self, phase: str) -> None:
        self.seconds[phase] += time.perf_counter() - self._started.pop(phase)
        self.counts[phase] += 1

    def on_train_batch_start(self, *args: Any) -> None:
        self._start("training batches")

    def on_train_batch_end(self, *args: Any) -> None:
        self._stop("training batches")

    def on_validation_start(self, *args: Any) -> None:
        self._start("validations")

    def on_validation_end(self, *args: Any) -> None:
        self._stop("validations")

    def on_save_checkpoint(self, *args: Any) -> None:
        self.counts["checkpoints"] += 1


def representative(params: dict[str, Any], model: str, family: str, out: Path) -> Any:
    from rd_train.params import from_mapping

    source = from_mapping(params, "params.yaml")
    if model == "spatial":
        source = source.spatial_params()
    configs = source.run_configs("fixed", family, out / model)
    lam = 0.0 if family == "pixel" else max(c.loss.lam for c in configs)
    return next(c for c in configs if c.loss.lam == lam and abs(c.rate.beta - 0.016) < 1e-12 and c.seed == 0)


def run_phases(params: dict[str, Any], model: str, family: str, work: Path,
               steps: int | None) -> dict[str, Any]:
    from rd_train.config import from_dict
    from rd_train.pipeline.workers import output_to
    from rd_train.training.run import fit

    config = representative(params, model, family, work)
    if steps is not None:
        config = from_dict({**config.to_dict(), "optim": {**config.to_dict()["optim"], "max_steps": steps}})
    timer = PhaseTimer()
    start = time.perf_counter()
    with output_to(work / "logs" / f"{model}-{family}.log"):  # Lightning's banners, as in a sweep
        fit(config, callbacks=[timer])
    total = time.perf_counter() - start
    phases = dict(timer.seconds)
    phases["rest (setup, final evaluation, loop)"] = total - sum(phases.values())
    steps_done = timer.counts["training batches"]
    return {"run": Path(config.out_dir).name, "steps": steps_done, "total_s": total,
            "ms_per_step": 1e3 * phases["training batches"] / max(steps_done, 1),
            "share": {k: v / total for k, v in phases.items()}, "seconds": phases,
            "validations": timer.counts["validations"]}


def timed(fn: Any, repeats: int) -> float:
    """Median milliseconds of ``fn`` over ``repeats`` calls after one warm-up call."""
    fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return 1e3 * sorted(samples)[len(samples) // 2]


def vgg_components(params: dict[str, Any], repeats: int) -> dict[str, Any]:
    from rd_train.training.losses.vgg16 import VGG16FeatureLoss, _unit, stages_for

    data = params["data"]
    stages = stages_for(params["losses"]["perceptual"].get("vgg_stages"), data["image_size"])
    loss = VGG16FeatureLoss(stages)
    images = torch.load(ROOT / data["root"] / "train.pt", weights_only=True)[:256].float()
    factor = images.shape[-1] // data["image_size"]
    images = F.avg_pool2d(images, factor) if factor > 1 else images
    b = data["batch_size"]
    x = images[:b]
    x_hat = (x + 0.1 * torch.randn_like(x)).requires_grad_()
    target_units = [_unit(t) for t in loss.features(x)]

    def target_forward() -> None:
        with torch.no_grad():
            loss.features(x)

    def full_step() -> None:
        torch.autograd.grad(loss(x, x_hat), x_hat)

    def given_target() -> None:
        pred = loss.features(x_hat)
        d = torch.stack([(_unit(p) - t).pow(2).sum(1).mean(dim=(1, 2))
                         for p, t in zip(pred, target_units, strict=True)]).sum(0).mean()
        torch.autograd.grad(d, x_hat)

    pooled = torch.relu(torch.randn(b, 64, data["image_size"], data["image_size"]))
    pooled_nhwc = pooled.contiguous(memory_format=torch.channels_last)
    reference = loss.features(x)
    other = loss.features(torch.cat([x[: b // 2], images[b: b + b - b // 2]]))
    alone = loss.features(x[:1])
    return {
        "batch": b, "image_size": data["image_size"], "blocks": stages,
        "ms": {
            "target features (forward, no gradient)": timed(target_forward, repeats),
            "loss forward + backward (as trained)": timed(full_step, repeats),
            "loss forward + backward, target features given": timed(given_target, repeats),
            "max-pool of relu1_2, NCHW": timed(lambda: F.max_pool2d(pooled, 2, 2, ceil_mode=True), repeats),
            "max-pool of relu1_2, channels-last": timed(
                lambda: F.max_pool2d(pooled_nhwc, 2, 2, ceil_mode=True), repeats),
        },
        "bit_identical": {
            "same images, other half of the batch changed": all(
                torch.equal(a[: b // 2], o[: b // 2]) for a, o in zip(reference, other, strict=True)),
            "same image, batch of 1": all(
                torch.equal(a[:1], s) for a, s in zip(reference, alone, strict=True)),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--params", default=str(ROOT / "params.yaml"))
    parser.add_argument("--steps", type=int, default=None, help="steps per run (default: the params')")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    from rd_train.pipeline.workers import set_threads

    set_threads(1)
    params = benchmark_params("run_costs", args.params)
    result: dict[str, Any] = {
        "what": __doc__.split("\n\n")[0],
        "command": "python benchmarks/run_costs.py" + (f" --steps {args.steps}" if args.steps else ""),
        "machine": {"processor": platform.processor() or platform.machine(),
                    "threads": torch.get_num_threads(), "torch": torch.__version__,
                    "precision": params["trainer"]["precision"]},
        "runs": {},
    }
    with tempfile.TemporaryDirectory(prefix="rd-run-costs-") as scratch:
        for model, family in [("vector", "pixel"), ("vector", "perceptual"), ("vector", "adversarial"),
                              ("spatial", "pixel"), ("spatial", "perceptual")]:
            entry = run_phases(params, model, family, Path(scratch), args.steps)
            result["runs"][f"{model}/{family}"] = entry
            print(f"{model}/{family}: {entry['total_s']:.1f} s, {entry['ms_per_step']:.1f} ms a step, "
                  + ", ".join(f"{k} {100 * v:.0f} %" for k, v in entry["share"].items()), flush=True)
    result["vgg16_step"] = vgg_components(params, args.repeats)
    print(json.dumps(result["vgg16_step"], indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
