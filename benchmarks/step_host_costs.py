"""Three per-step and per-validation costs that change no number, each timed against what it replaced, side
by side in this one process (one thread, fp32), with the two results compared bit for bit (issue 29).

* ``gradient_max_abs``: the gradient's ∞-norm a training step reads to tell a non-finite gradient:
  ``torch.nn.utils.get_total_norm(grads, inf)`` (one ∞-norm op per tensor) against
  `rd_train.training.module.max_abs` (three foreach calls), for the default vector VAE's 20 gradients
  and the AutoencoderKL's 152.
* ``weight_average_update``: the EMA's update with the parameter lists walked at every step (and a
  detached view of each) against `rd_train.training.ema.WeightAverage.update`'s lists walked once.
* ``recalibration``: BatchNorm recalibration of the default vector VAE over the 2048 calibration images,
  decoding each batch through the whole decoder against `VectorVAE.decode_statistics` (through the
  last BatchNorm layer); the running statistics compared bit for bit.

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
from torch import nn

CALIBRATION_IMAGES, CALIBRATION_BATCH = 2048, 256  # rd_train's defaults (config.py, evaluation.py)


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


def models() -> dict[str, nn.Module]:
    from rd_train.config import ModelConfig
    from rd_train.params import load_params
    from rd_train.training.models import build_model

    params = load_params(Path(__file__).resolve().parents[1] / "params.yaml")
    raw = params.raw
    size = raw["data"]["image_size"]
    vector = build_model(ModelConfig(**raw["model"]), size)
    spatial = build_model(ModelConfig(**raw["spatial"]["model"]), size)
    return {"vector": vector, "AutoencoderKL": spatial}


def gradient_norm(model: nn.Module, calls: int, repeats: int) -> dict[str, Any]:
    from rd_train.training.module import max_abs

    grads = [torch.randn_like(p) for p in model.parameters()]
    params = list(model.parameters())

    def old() -> torch.Tensor:
        return torch.nn.utils.get_total_norm([g for g in grads if g is not None], norm_type=torch.inf)

    def new() -> torch.Tensor:
        return max_abs([g for g in grads if g is not None])

    old_us, new_us = best_us(old, new, calls, repeats)
    poisoned = [g.clone() for g in grads]
    poisoned[-1][0] = float("nan")
    return {"tensors": len(params), "old_us": old_us, "new_us": new_us, "old_over_new": old_us / new_us,
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


def recalibration(model: nn.Module, repeats: int) -> dict[str, Any]:
    torch.manual_seed(0)
    images = torch.rand(CALIBRATION_IMAGES, 3, 16, 16) * 2 - 1
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]

    @torch.no_grad()
    def calibrate(decode: Callable[[torch.Tensor], Any]) -> list[torch.Tensor]:
        for m in norms:
            m.reset_running_stats()
            m.momentum = None
        model.train()
        g = torch.Generator().manual_seed(1)
        for batch in images.split(CALIBRATION_BATCH):
            mu, logvar = model.encode(batch)
            decode(mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=g))
        return [t.clone() for m in norms for t in (m.running_mean, m.running_var)]

    full = calibrate(model.decode)
    partial = calibrate(model.decode_statistics)
    old_us, new_us = best_us(lambda: calibrate(model.decode), lambda: calibrate(model.decode_statistics),
                             1, repeats)
    return {"images": CALIBRATION_IMAGES, "batch": CALIBRATION_BATCH, "old_ms": old_us / 1e3,
            "new_ms": new_us / 1e3, "old_over_new": old_us / new_us,
            "bit_identical": all(torch.equal(a, b) for a, b in zip(full, partial, strict=True))}


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
        "recalibration": {"vector": recalibration(built["vector"], args.repeats)},
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
