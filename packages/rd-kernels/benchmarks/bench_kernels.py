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
from rd_kernels import Balancer, gaussian_kl, sample_and_kl
from rd_kernels.gaussian_kl import reference
from rd_kernels.testing import copy_bandwidth_gbps

CUDA = torch.cuda.is_available()
gpu = pytest.mark.skipif(not CUDA, reason="needs a CUDA device")

CPU_LATENTS = [(16, 4, 32, 32), (64, 4, 32, 32)]
# a vector-VAE batch, an AutoencoderKL batch (4 x 32 x 32 latents), and 16.8M elements
GPU_LATENTS = [(64, 16), (64, 4, 32, 32), (256, 16, 64, 64)]
# sample_and_kl also at 67M elements: fwd + bwd there is ~0.7 ms of traffic at copy speed, several times
# a call's host time, so its fraction of copy bandwidth is the kernels' own (at 16.8M on the H200 a call
# took 512 µs of host time, its two launches 210 µs of device time: nvidia-h200-dispatch.json)
GPU_LATENTS_SAMPLE = [*GPU_LATENTS, (256, 16, 128, 128)]


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


# -- GPU: fused vs eager formula vs torch.distributions vs torch.compile, timed side by side -----------

def gpu_profile(step) -> dict:
    """Kernel launches and host synchronisations of one call of ``step`` (torch profiler)."""
    from torch.profiler import ProfilerActivity, profile

    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        step()
        torch.cuda.synchronize()
    events = prof.events()
    kernels = [e for e in events if e.device_type == torch.autograd.DeviceType.CUDA and e.name != "Memset"]
    syncs = [e for e in events if e.name in ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaMemcpy")]
    return {"kernel_launches": len(kernels), "host_syncs": len(syncs) - 1,  # minus the one above
            "kernels": sorted({e.name[:60] for e in kernels})}


def time_on_gpu(benchmark, step, n_bytes, copy_gbps: float) -> None:
    """do_bench's median over back-to-back calls (throughput, as a training loop runs them), plus the
    pytest-benchmark statistics of rounds of 20 calls and one synchronisation."""
    import triton.testing

    for _ in range(3):  # compilation, autotuning, workspace allocation
        step()
    torch.cuda.synchronize()
    # Three do_bench medians: their spread says how far to trust a ratio between two tests (the H200's
    # first session saw the same call vary by 2x between device calls).
    medians = sorted(triton.testing.do_bench(step, warmup=25, rep=100, return_mode="median")
                     for _ in range(3))
    median_ms = medians[1]

    def twenty():
        for _ in range(20):
            step()
        torch.cuda.synchronize()

    benchmark.pedantic(twenty, rounds=5, warmup_rounds=1)
    gbps = n_bytes / (median_ms * 1e-3) / 1e9
    benchmark.extra_info.update({
        "median_ms": median_ms, "do_bench_medians_ms": medians, "bytes_moved": n_bytes, "GB_per_s": gbps,
        "fraction_of_copy_bandwidth": gbps / copy_gbps, "copy_GB_per_s": copy_gbps,
        "device": torch.cuda.get_device_name(), **gpu_profile(step),
    })


@pytest.fixture(scope="session")
def copy_gbps() -> float:
    """Device-to-device copy bandwidth, bytes read plus written (the ceiling of these kernels)."""
    return copy_bandwidth_gbps()


def kl_variant(variant):
    if variant == "fused":
        return fused_sample_and_kl
    if variant == "eager":
        return reference_sample_and_kl
    if variant == "distributions":
        return naive_sample_and_kl
    return torch.compile(reference_sample_and_kl)


@gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("shape", GPU_LATENTS_SAMPLE, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("variant", ["fused", "eager", "distributions", "compiled"])
def test_gpu_sample_and_kl(benchmark, copy_gbps, shape, dtype, variant):
    fn = kl_variant(variant)
    mu, logvar, eps, grad_z = latents(shape, "cuda", dtype)
    grad_kl = torch.ones(shape[0], device="cuda")

    def step():
        mu.grad = logvar.grad = None
        z, kl, _ = fn(mu, logvar, eps)
        torch.autograd.backward([z, kl], [grad_z, grad_kl])

    # forward reads μ, ℓ, ε and writes z; backward reads μ, ℓ, ε, ∂z and writes ∂μ, ∂ℓ
    time_on_gpu(benchmark, step, 10 * mu.numel() * mu.element_size(), copy_gbps)


@gpu
@pytest.mark.parametrize("shape", GPU_LATENTS, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("variant", ["fused", "eager", "compiled"])
def test_gpu_gaussian_kl(benchmark, copy_gbps, shape, variant):
    fn = {"fused": lambda m, lv: gaussian_kl(m, lv, backend="triton"), "eager": reference.gaussian_kl,
          "compiled": torch.compile(reference.gaussian_kl)}[variant]
    mu, logvar, _, _ = latents(shape, "cuda")
    grad_kl = torch.ones(shape[0], device="cuda")

    def step():
        mu.grad = logvar.grad = None
        fn(mu, logvar).backward(grad_kl)

    # read μ, ℓ in each direction, write ∂μ, ∂ℓ
    time_on_gpu(benchmark, step, 6 * mu.numel() * mu.element_size(), copy_gbps)


def naive_balance(weights, grads, ema, decay=0.999):
    """audiocraft's balancing written loss by loss with tensor ops and no host sync (the eager baseline):
    per-item norms, a device-tensor EMA, scales, weighted sum."""
    total = sum(weights[name] for name in grads)
    out = torch.zeros_like(next(iter(grads.values())))
    for name, g in grads.items():
        norm = g.flatten(1).norm(dim=1).mean()
        ema[name][0].mul_(decay).add_(norm)
        ema[name][1].mul_(decay).add_(1.0)
        out.add_(g * (weights[name] / total / (1e-12 + ema[name][0] / ema[name][1])))
    return out


def balancer_setup(k, shape, device):
    g = torch.Generator(device=device).manual_seed(0)
    targets = [torch.randn(shape, generator=g, device=device) for _ in range(k)]
    output = torch.randn(shape, generator=g, device=device).requires_grad_()
    weights = {f"l{i}": float(i + 1) for i in range(k)}

    def losses():
        return {f"l{i}": (10.0**i) * ((output - t) ** 2).mean() for i, t in enumerate(targets)}

    return weights, losses, output


def balancer_runner(variant, part, k, shape, device):
    """A callable for one step. part 'step': losses, K autograd.grad, balancing, output.backward(G);
    part 'balance': only the balancing of K precomputed gradients (what differs between variants)."""
    weights, losses, output = balancer_setup(k, shape, device)
    grads = {name: torch.autograd.grad(loss, output)[0] for name, loss in losses().items()}
    if variant == "fused":
        balancer = Balancer(weights, backend="triton" if device == "cuda" else "reference")
        combine = balancer.balance
    else:
        ema = {name: (torch.zeros((), device=device), torch.zeros((), device=device)) for name in weights}
        combine = lambda gs: naive_balance(weights, gs, ema)  # noqa: E731
        if variant == "compiled":
            combine = torch.compile(combine)
    if part == "balance":
        return lambda: combine(grads), (2 * k + 1) * output.numel() * output.element_size()

    def step():
        output.grad = None
        batch = losses()
        gs = {name: torch.autograd.grad(loss, output, retain_graph=True)[0] for name, loss in batch.items()}
        output.backward(combine(gs))

    return step, (2 * k + 1) * output.numel() * output.element_size()


@pytest.mark.parametrize("k", [2, 3, 4])
@pytest.mark.parametrize("variant", ["naive", "fused"])
def test_cpu_balancer(benchmark, k, variant):
    step, n_bytes = balancer_runner(variant, "step", k, (8, 3, 64, 64), "cpu")
    benchmark.pedantic(step, rounds=20, warmup_rounds=2)
    record_bandwidth(benchmark, n_bytes)


@gpu
@pytest.mark.parametrize("part", ["step", "balance"])
@pytest.mark.parametrize("k", [2, 3, 4])
@pytest.mark.parametrize("variant", ["fused", "naive", "compiled"])
def test_gpu_balancer(benchmark, copy_gbps, part, k, variant):
    step, n_bytes = balancer_runner(variant, part, k, (32, 3, 256, 256), "cuda")
    time_on_gpu(benchmark, step, n_bytes, copy_gbps)
