"""Benchmarks (`nox -s bench`): forward + backward of each op, fused vs eager vs torch.compile.

On CPU (always): the reference path vs the naive eager composition most VAE code writes
(``torch.distributions`` KL + rsample; audiocraft's loss-by-loss balancer loop).
On CUDA (skipped without a GPU): the Triton kernels vs eager PyTorch vs ``torch.compile`` of the
reference, with achieved GB/s recorded in each result's ``extra_info`` next to the device's
measured copy bandwidth (``test_copy_bandwidth``). Minimal traffic counted per step:

* sample_and_kl fwd+bwd: read μ, ℓ, ε, write z; read μ, ℓ, ε, ∂z; write ∂μ, ∂ℓ -> 10 tensors.
* balancer with K losses: read K gradients for the norms, read K again and write G -> 2K + 1.
"""

from __future__ import annotations

import pytest
import torch
from rd_kernels import Balancer, sample_and_kl
from rd_kernels.gaussian_kl import reference

CUDA = torch.cuda.is_available()
gpu = pytest.mark.skipif(not CUDA, reason="needs a CUDA device")

CPU_LATENTS = [(16, 4, 32, 32), (64, 4, 32, 32)]
GPU_LATENTS = [(16, 4, 32, 32), (64, 4, 64, 64), (256, 16, 64, 64)]


def naive_sample_and_kl(mu, logvar, eps):
    std = torch.exp(0.5 * logvar)
    posterior = torch.distributions.Normal(mu, std)
    prior = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    z = mu + std * eps
    kl = torch.distributions.kl_divergence(posterior, prior).flatten(1).sum(1)
    anisotropy = logvar.detach().flatten(1).var(1, unbiased=False)
    return z, kl, anisotropy


def reference_sample_and_kl(mu, logvar, eps):
    return (reference.sample(mu, logvar, eps), reference.gaussian_kl(mu, logvar),
            reference.anisotropy(logvar.detach()))


def fused_sample_and_kl(mu, logvar, eps):
    z, kl, stats = sample_and_kl(mu, logvar, eps, backend="triton")
    return z, kl, stats.anisotropy


def latents(shape, device, dtype=torch.float32):
    g = torch.Generator(device=device).manual_seed(0)
    mu = torch.randn(shape, generator=g, device=device, dtype=dtype).requires_grad_()
    logvar = torch.randn(shape, generator=g, device=device, dtype=dtype).requires_grad_()
    eps = torch.randn(shape, generator=g, device=device, dtype=dtype)
    grad_z = torch.randn(shape, generator=g, device=device, dtype=dtype)
    return mu, logvar, eps, grad_z


def kl_step(fn, mu, logvar, eps, grad_z):
    mu.grad = logvar.grad = None
    z, kl, _ = fn(mu, logvar, eps)
    torch.autograd.backward([z, kl], [grad_z, torch.ones_like(kl)])
    if CUDA and mu.is_cuda:
        torch.cuda.synchronize()


def record_bandwidth(benchmark, n_bytes):
    benchmark.extra_info["bytes_moved"] = n_bytes
    if benchmark.stats is not None:
        benchmark.extra_info["GB_per_s"] = n_bytes / benchmark.stats.stats.median / 1e9
    if CUDA:
        benchmark.extra_info["device"] = torch.cuda.get_device_name()


@pytest.mark.parametrize("shape", CPU_LATENTS, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("variant", ["naive_eager", "reference"])
def test_cpu_sample_and_kl(benchmark, shape, variant):
    fn = {"naive_eager": naive_sample_and_kl, "reference": reference_sample_and_kl}[variant]
    args = latents(shape, "cpu")
    benchmark.pedantic(kl_step, args=(fn, *args), rounds=20, warmup_rounds=2)
    record_bandwidth(benchmark, 10 * args[0].numel() * args[0].element_size())


@gpu
@pytest.mark.parametrize("shape", GPU_LATENTS, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("variant", ["fused", "eager", "compiled"])
def test_gpu_sample_and_kl(benchmark, shape, variant):
    fn = {"fused": fused_sample_and_kl, "eager": naive_sample_and_kl,
          "compiled": torch.compile(reference_sample_and_kl)}[variant]
    args = latents(shape, "cuda")
    benchmark.pedantic(kl_step, args=(fn, *args), rounds=50, warmup_rounds=5)
    record_bandwidth(benchmark, 10 * args[0].numel() * args[0].element_size())


@gpu
def test_copy_bandwidth(benchmark):
    src = torch.empty(256 * 2**20, device="cuda")  # 1 GiB
    dst = torch.empty_like(src)

    def copy():
        dst.copy_(src)
        torch.cuda.synchronize()

    benchmark.pedantic(copy, rounds=30, warmup_rounds=3)
    record_bandwidth(benchmark, 2 * src.numel() * src.element_size())


def naive_balancer_step(weights, losses, output):
    """audiocraft's loop with plain torch ops (the eager baseline)."""
    grads, norms = {}, {}
    for name, loss in losses.items():
        (g,) = torch.autograd.grad(loss, [output], retain_graph=True)
        grads[name], norms[name] = g, g.flatten(1).norm(dim=1).mean()
    total = sum(weights.values())
    out = torch.zeros_like(output)
    for name, g in grads.items():
        out.add_(g, alpha=float(weights[name] / total / (1e-12 + norms[name])))
    output.backward(out)


def balancer_setup(k, shape, device):
    g = torch.Generator(device=device).manual_seed(0)
    targets = [torch.randn(shape, generator=g, device=device) for _ in range(k)]
    output = torch.randn(shape, generator=g, device=device).requires_grad_()
    weights = {f"l{i}": float(i + 1) for i in range(k)}

    def losses():
        return {f"l{i}": (10.0**i) * ((output - t) ** 2).mean() for i, t in enumerate(targets)}

    return weights, losses, output


def balancer_run(step, losses, output):
    output.grad = None
    step(losses(), output)
    if output.is_cuda:
        torch.cuda.synchronize()


def balancer_step(variant, weights):
    if variant == "naive_eager":
        return lambda batch_losses, out: naive_balancer_step(weights, batch_losses, out)
    return Balancer(weights, backend="triton" if variant == "fused" else "reference").backward


def run_balancer(benchmark, variant, k, shape, device, rounds):
    weights, losses, output = balancer_setup(k, shape, device)
    step = balancer_step(variant, weights)
    benchmark.pedantic(balancer_run, args=(step, losses, output), rounds=rounds, warmup_rounds=2)
    record_bandwidth(benchmark, (2 * k + 1) * output.numel() * output.element_size())


@pytest.mark.parametrize("k", [2, 3, 4])
@pytest.mark.parametrize("variant", ["naive_eager", "reference"])
def test_cpu_balancer(benchmark, k, variant):
    run_balancer(benchmark, variant, k, (8, 3, 64, 64), "cpu", rounds=20)


@gpu
@pytest.mark.parametrize("k", [2, 3, 4])
@pytest.mark.parametrize("variant", ["fused", "naive_eager"])
def test_gpu_balancer(benchmark, k, variant):
    run_balancer(benchmark, variant, k, (32, 3, 256, 256), "cuda", rounds=50)
