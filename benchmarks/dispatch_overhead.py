"""Where the time of a small fused sample_and_kl forward + backward goes on a GPU: the same two Triton
launches called (a) through the public API (its checks, then, eagerly, an autograd.Function), (b) through
the registered custom op (what torch.compile traces), (c) through a bare autograd.Function, (d) as the
bare launchers without autograd; beside torch.compile of the formula.
Host time = wall time of 200 calls enqueued without synchronising (what the CPU spends per call);
device time = do_bench's median (back to back, synchronised at the end).

Then the grid: the forward kernel's programs per multiprocessor (the split of long rows, `plan`) varied
around the default 4, the launches alone timed at the 16.8M-element and the training-batch latent, as a
fraction of the device's copy bandwidth: which grid fills the memory system best, measured rather than
guessed. (The backward's grid does not depend on it: a control.)

    python benchmarks/dispatch_overhead.py --out benchmarks/results/<device>-dispatch.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import triton.testing
from rd_kernels import sample_and_kl
from rd_kernels.gaussian_kl import reference
from rd_kernels.gaussian_kl import triton as kernels
from rd_kernels.testing import copy_bandwidth_gbps


class Direct(torch.autograd.Function):
    @staticmethod
    def forward(ctx, mu, logvar, eps):  # type: ignore[override]
        kl, _, _, z = kernels.forward(mu, logvar, eps)
        ctx.save_for_backward(mu, logvar, eps)
        ctx.set_materialize_grads(False)
        return z, kl

    @staticmethod
    def backward(ctx, grad_z, grad_kl):  # type: ignore[override]
        mu, logvar, eps = ctx.saved_tensors
        return (*kernels.backward(mu, logvar, eps, grad_kl, grad_z), None)


def variants(mu, logvar, eps, grad_z, grad_kl):
    compiled = torch.compile(lambda m, lv, e: (reference.sample(m, lv, e), reference.gaussian_kl(m, lv)))

    def forward_backward(fn):
        """A step of (z, kl, ...) = fn(mu, logvar, eps), then both gradients back through autograd."""
        def step():
            mu.grad = logvar.grad = None
            z, kl = fn(mu, logvar, eps)[:2]
            torch.autograd.backward([z, kl], [grad_z, grad_kl])
        return step

    def launchers_only():
        kernels.forward(mu.detach(), logvar.detach(), eps)
        kernels.backward(mu.detach(), logvar.detach(), eps, grad_kl, grad_z)

    public_api = forward_backward(lambda m, lv, e: sample_and_kl(m, lv, e, backend="triton"))
    custom_op = forward_backward(torch.ops.rd_kernels.sample_and_kl)
    autograd_function = forward_backward(Direct.apply)
    torch_compile = forward_backward(compiled)
    return {"public_api": public_api, "custom_op": custom_op, "autograd_function": autograd_function,
            "launchers_only": launchers_only, "torch_compile": torch_compile}


PROGRAMS_PER_SM = (2, 4, 8, 16)


def grid_sweep() -> dict:
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    copy_gbps = copy_bandwidth_gbps()
    out: dict = {"copy_GB_per_s": copy_gbps, "multiprocessors": sms}
    original = kernels.target_programs
    try:
        for per_sm in PROGRAMS_PER_SM:
            kernels.target_programs = lambda device, k=per_sm: k * sms  # type: ignore[assignment]
            for shape in ((256, 16, 64, 64), (64, 4, 32, 32)):
                mu, logvar, eps, grad_z = (torch.randn(shape, device="cuda") for _ in range(4))
                grad_kl = torch.ones(shape[0], device="cuda")
                rows, n = shape[0], mu[0].numel()
                row = {"plan": str(kernels.plan(rows, n, per_sm * sms))}
                for name, fn, tensors in (
                        ("forward", lambda: kernels.forward(mu, logvar, eps), 4),  # noqa: B023
                        ("backward", lambda: kernels.backward(mu, logvar, eps, grad_kl, grad_z), 6)):  # noqa: B023
                    ms = triton.testing.do_bench(fn, warmup=25, rep=100, return_mode="median")
                    gbps = tensors * mu.numel() * mu.element_size() / (ms * 1e-3) / 1e9
                    row[name] = {"us": ms * 1e3, "GB_per_s": gbps, "fraction_of_copy": gbps / copy_gbps}
                key = f"{per_sm}_per_sm/{'x'.join(map(str, shape))}"
                out[key] = row
                print(key, {k: v if isinstance(v, str) else round(v["fraction_of_copy"], 3)
                            for k, v in row.items()}, flush=True)
    finally:
        kernels.target_programs = original
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    results = {}
    for shape in ((64, 16), (64, 4, 32, 32), (256, 16, 64, 64)):
        g = torch.Generator(device="cuda").manual_seed(0)
        mu, logvar, eps, grad_z = (torch.randn(shape, generator=g, device="cuda") for _ in range(4))
        mu.requires_grad_()
        logvar.requires_grad_()
        grad_kl = torch.ones(shape[0], device="cuda")
        for name, step in variants(mu, logvar, eps, grad_z, grad_kl).items():
            for _ in range(5):
                step()
            torch.cuda.synchronize()
            start = time.perf_counter()
            for _ in range(200):
                step()
            host_us = (time.perf_counter() - start) / 200 * 1e6
            torch.cuda.synchronize()
            device_us = triton.testing.do_bench(step, warmup=25, rep=100, return_mode="median") * 1e3
            key = f"{'x'.join(map(str, shape))}/{name}"
            results[key] = {"host_us_per_call": host_us, "do_bench_us": device_us}
            print(f"{key:<40} host {host_us:8.1f} us   do_bench {device_us:8.1f} us", flush=True)
    report = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "results": results}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    # the dispatch numbers are kept even if the sweep below fails
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    report["grid_sweep"] = grid_sweep()
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
