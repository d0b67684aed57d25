"""Three per-step and per-validation costs that change no number, each timed against what it replaced, side
by side in this one process (one thread, fp32), with the two results compared bit for bit (issue 29).

* ``gradient_max_abs``: the gradient's ∞-norm a training step reads to tell a non-finite gradient:
  ``torch.nn.utils.get_total_norm(grads, inf)`` (one ∞-norm op per tensor) against
  `rd_train.training.module.max_abs` (three foreach calls), for the default vector VAE's 20 gradients
  and the AutoencoderKL's 152.
* ``weight_average_update``: the EMA's update with the parameter lists walked at every step (and a
  detached view of each) against `rd_train.training.ema.WeightAverage.update`'s lists walked once.
* ``recalibration``: `VAEModule.recalibrate_batchnorm` of the default vector run over its 2048 calibration
  images, decoding each batch through the whole decoder against `VectorVAE.decode_statistics` (through
  the last BatchNorm layer); the evaluated model's statistics compared bit for bit.

Numbers: best of ``--repeats`` rounds, each the mean over ``--calls`` calls, alternating old and new.

    python benchmarks/step_host_costs.py --out benchmarks/results/cpu-step-host-costs.json
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from rd_train.training.evaluation import CALIBRATION_BATCH
from torch import nn


def best_us(old: Callable[[], Any], new: Callable[[], Any], calls: int, repeats: int) -> tuple[float, float]:
    """(old, new) µs per call: best of ``repeats`` rounds, the two alternating within each round."""
    for _ in range(3):
        old(), new()
    best = [float("inf"), float("inf")]
    for _ in range(repeats):
        for k, fn in enumerate((old, new)):
            start = time.perf_counter()
            for _ in range(calls):
                fn()
            best[k] = min(best[k], (time.perf_counter() - start) / calls * 1e6)
    return best[0], best[1]


def load_default_params() -> Any:
    from rd_train.params import load_params

    return load_params(Path(__file__).resolve().parents[1] / "params.yaml")


def models() -> dict[str, nn.Module]:
    from rd_train.config import ModelConfig
    from rd_train.training.models import build_model

    raw = load_default_params().raw
    size = raw["data"]["image_size"]
    vector = build_model(ModelConfig(**raw["model"]), size)
    spatial = build_model(ModelConfig(**raw["spatial"]["model"]), size)
    return {"vector": vector, "AutoencoderKL": spatial}


def gradient_norm(model: nn.Module, calls: int, repeats: int) -> dict[str, Any]:
    from rd_train.training.module import max_abs

    grads = [torch.randn_like(p) for p in model.parameters()]

    def old() -> torch.Tensor:
        return torch.nn.utils.get_total_norm(grads, norm_type=torch.inf)

    def new() -> torch.Tensor:
        return max_abs(grads)

    old_us, new_us = best_us(old, new, calls, repeats)
    poisoned = [g.clone() for g in grads]
    poisoned[-1][0] = float("nan")
    return {"tensors": len(grads), "old_us": old_us, "new_us": new_us, "old_over_new": old_us / new_us,
            "bit_identical": bool(torch.equal(old(), new())),
            "nan_detected": bool(max_abs(poisoned).isnan())}


def weight_average(model: nn.Module, calls: int, repeats: int) -> dict[str, Any]:
    from rd_train.training.ema import WeightAverage

    old_average, new_average = WeightAverage(model, 0.99), WeightAverage(model, 0.99)

    @torch.no_grad()
    def old() -> None:  # the update as it was: both parameter lists walked, a detached view of each
        torch._foreach_lerp_(list(old_average.module.parameters()), [p.detach() for p in model.parameters()],
                             1.0 - old_average.decay)

    old_us, new_us = best_us(old, new_average.update, calls, repeats)
    same = all(torch.equal(a, b) for a, b in zip(old_average.module.parameters(),
                                                  new_average.module.parameters(), strict=True))
    return {"old_us": old_us, "new_us": new_us, "old_over_new": old_us / new_us, "bit_identical": same}


def recalibration(repeats: int) -> dict[str, Any]:
    """`VAEModule.recalibrate_batchnorm` of the default vector run (its weight average, over 2048 images),
    as it is and with the evaluated model's ``decode_statistics`` put back to the whole ``decode``."""
    from rd_train.pipeline.sweep import run_configs
    from rd_train.training.module import VAEModule

    raw = load_default_params().raw
    config = run_configs(raw, "fixed", "pixel", Path("unused"))[0]
    new = VAEModule(config.to_dict())
    torch.manual_seed(0)
    new.calibration_images = torch.rand(config.bn_calibration_images, 3, raw["data"]["image_size"],
                                        raw["data"]["image_size"]) * 2 - 1
    old = copy.deepcopy(new)
    old.evaluated_model().decode_statistics = old.evaluated_model().decode  # the recalibration as it was

    def statistics(module: Any) -> list[torch.Tensor]:
        module.recalibrate_batchnorm()
        return [t.clone() for t in module.evaluated_model().buffers()]

    same = all(torch.equal(a, b) for a, b in zip(statistics(old), statistics(new), strict=True))
    old_us, new_us = best_us(old.recalibrate_batchnorm, new.recalibrate_batchnorm, 1, repeats)
    return {"images": config.bn_calibration_images, "batch": CALIBRATION_BATCH, "old_ms": old_us / 1e3,
            "new_ms": new_us / 1e3, "old_over_new": old_us / new_us, "bit_identical": same}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    built = models()
    results: dict[str, Any] = {
        "gradient_max_abs": {name: gradient_norm(m, args.calls, args.repeats) for name, m in built.items()},
        "weight_average_update": {name: weight_average(copy.deepcopy(m), args.calls, args.repeats)
                                  for name, m in built.items()},
        "recalibration": {"vector": recalibration(args.repeats)},
    }
    out = {"what": __doc__.split("\n\n")[0], "command": "python benchmarks/step_host_costs.py",
           "cpu": platform.processor() or platform.machine(), "threads": 1, "torch": torch.__version__,
           "calls": args.calls, "repeats": args.repeats, "results": results}
    for what, per_model in results.items():
        for name, r in per_model.items():
            unit = "ms" if "old_ms" in r else "µs"
            old, new = (r["old_ms"], r["new_ms"]) if unit == "ms" else (r["old_us"], r["new_us"])
            print(f"{what:22s} {name:14s} old {old:8.1f} {unit}  new {new:8.1f} {unit}  "
                  f"{r['old_over_new']:.2f}x  bit-identical {r['bit_identical']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
