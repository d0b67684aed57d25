"""Where a graphed training step (``step_graph``) first departs from the eager one: two copies of one run,
trained in lockstep on the same batches by `VAEModule.train_step` (the step Lightning's ``training_step``
calls), one eager and one graphed, compared after every step.

After each step it records, per tensor, the largest difference relative to the eager tensor's largest
magnitude: the step's outputs (KL, losses, gradient norm), every parameter's gradient, every parameter,
every buffer, the balancer's state and β. It prints the first step where any of them differs by more than
``--tolerance``, with the tensors that differ most. On a CPU the graph's body runs eagerly on its static
inputs, so every difference must be zero there (a check of the script); on a GPU the capture and its
replays are what is compared (cuDNN may pick other algorithms: differences of order 1e-6 are rounding).

Usage: ``python benchmarks/step_graph_lockstep.py [--family pixel|patchgan] [--steps 12] [--out FILE]``
"""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

import torch

PATCHGAN = {"neural": "patchgan", "lam": 1.0, "disc_channels": 8, "disc_layers": 1, "disc_start_step": 6}


def tiny_config(family: str, steps: int, device: str) -> dict[str, Any]:
    """The GPU tests' tiny run (packages/rd-train/tests/conftest.py) on ``device``."""
    return {
        "out_dir": "runs/step-graph-lockstep",
        "accelerator": "gpu" if device == "cuda" else "cpu", "devices": 1,
        "data": {"n_train": 256, "n_val": 64, "image_size": 16, "batch_size": 32},
        "model": {"kind": "vector", "latent_dim": 8, "channels": [8, 16]},
        "optim": {"max_steps": steps, "lr": 2e-3},
        "loss": PATCHGAN if family == "patchgan" else {},
    }


def tensors(module: Any, result: Any) -> dict[str, torch.Tensor]:
    """Everything a step changes or reports, by name (copies: a graphed step's outputs are rewritten)."""
    named: dict[str, torch.Tensor] = {}
    out = result.objective
    named["out/kl_mean"] = result.kl_mean
    named["out/combined_norm"] = out.combined_norm
    named["out/beta"] = torch.as_tensor(out.beta)
    for key, value in out.losses.items():
        named[f"out/loss_{key}"] = value
    named["out/x_hat"] = out.x_hat
    named["out/discriminator_loss"] = result.discriminator_loss
    for name, parameter in module.named_parameters():
        named[f"param/{name}"] = parameter
        if parameter.grad is not None:
            named[f"grad/{name}"] = parameter.grad
    for name, buffer in module.named_buffers():
        named[f"buffer/{name}"] = buffer
    for i, state in enumerate(module.balancer.device_state()):
        named[f"balancer/{i}"] = state
    named["rate/beta"] = torch.as_tensor(module.rate.value(module.step_count))
    return {k: v.detach().float().clone().cpu() for k, v in named.items()}


def differences(eager: dict[str, torch.Tensor], graphed: dict[str, torch.Tensor]) -> dict[str, float]:
    found = {}
    for name, reference in eager.items():
        if name not in graphed:
            found[name] = math.inf
            continue
        other = graphed[name]
        if other.shape != reference.shape:
            found[name] = math.inf
            continue
        scale = reference.abs().max().item() if reference.numel() else 0.0
        gap = (other - reference).abs().max().item() if reference.numel() else 0.0
        found[name] = gap / scale if scale > 0 else gap
    for name in graphed.keys() - eager.keys():
        found[name] = math.inf
    return found


def compare_fits(args: argparse.Namespace) -> int:
    """The same comparison through `fit` (Lightning drives `train_step`): the step's reported values only."""
    import tempfile

    from rd_train import from_dict
    from rd_train.training import module as module_lib
    from rd_train.training.run import fit

    device = "cuda" if torch.cuda.is_available() else "cpu"
    original = module_lib.VAEModule.train_step
    curves: list[list[list[float]]] = []

    def recording(self: Any, batch: torch.Tensor, optimizers: Any, schedulers: Any) -> Any:
        result = original(self, batch, optimizers, schedulers)
        out = result.objective
        curves[-1].append([float(result.kl_mean), float(out.losses["pixel"]), float(out.combined_norm),
                           float(torch.as_tensor(out.beta))])
        return result

    module_lib.VAEModule.train_step = recording  # type: ignore[method-assign]
    with tempfile.TemporaryDirectory() as scratch:
        for graphed in (False, True):
            curves.append([])
            config = tiny_config(args.family, args.steps, device)
            config["out_dir"] = f"{scratch}/{'graphed' if graphed else 'eager'}"
            fit(from_dict(config), step_graph=graphed)
    first = None
    for step, (a, b) in enumerate(zip(*curves, strict=True)):
        gap = max(abs(x - y) / max(abs(x), 1e-12) for x, y in zip(a, b, strict=True))
        shown = [f"{x:.5g}" for x in a], [f"{x:.5g}" for x in b]
        print(f"fit step {step}: eager {shown[0]} graphed {shown[1]} gap {gap:.1e}")
        if first is None and gap > args.tolerance:
            first = step
    print(f"fit: first step over {args.tolerance:g}: {first}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--family", choices=["pixel", "patchgan"], default="pixel")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--tolerance", type=float, default=1e-4)
    parser.add_argument("--out", default=None)
    parser.add_argument("--fit", action="store_true",
                        help="compare two Lightning fits instead (each step's KL, losses and gradient norm)")
    args = parser.parse_args()
    if args.fit:
        return compare_fits(args)
    from rd_train import from_dict
    from rd_train.training.module import VAEModule
    from rd_train.training.run import data_module

    device = "cuda" if torch.cuda.is_available() else "cpu"
    config = from_dict(tiny_config(args.family, args.steps, device))
    torch.manual_seed(0)
    eager = VAEModule(config.to_dict(), step_graph=False)
    graphed = VAEModule(config.to_dict(), step_graph=True)
    graphed.load_state_dict(eager.state_dict())
    copies = []
    for module in (eager, graphed):
        module.to(device)
        module.manual_backward = lambda loss: loss.backward()  # no Trainer: what Lightning's call does
        optimizers, schedulers = module.configure_optimizers()
        copies.append((module, optimizers, schedulers))
    data = data_module(config)
    data.setup("fit")
    batches = [b.to(device) for b, _ in zip(iter(data.train_dataloader()), range(args.steps), strict=False)]
    while len(batches) < args.steps:
        batches += batches[: args.steps - len(batches)]
    rows, first = [], None
    for step, batch in enumerate(batches):
        seen = []
        for module, optimizers, schedulers in copies:
            result = module.train_step(batch, optimizers, schedulers)
            seen.append(tensors(module, result))
        gaps = differences(*seen)
        worst = sorted(gaps.items(), key=lambda item: -item[1])[:8]
        rows.append({"step": step, "largest": worst})
        print(f"step {step}: " + ", ".join(f"{k} {v:.2e}" for k, v in worst[:4]))
        if first is None and worst and worst[0][1] > args.tolerance:
            first = step
    summary = {"device": torch.cuda.get_device_name() if device == "cuda" else "cpu", "family": args.family,
               "tolerance": args.tolerance, "first_step_over_tolerance": first, "steps": rows}
    print(f"first step over {args.tolerance:g}: {first}")
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(summary, handle, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
