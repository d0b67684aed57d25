"""Triton (interpreter) and reference vs a float64 autograd ground truth, forward and backward."""

import os

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from rd_kernels import gaussian_kl, sample_and_kl

SHAPES = [(1, 1), (1, 7), (4, 1000), (3, 1025), (2, 3, 5, 7), (2, 4, 17, 9), (1, 9000)]
# Relative error ||out - ref|| / ||ref|| allowed per dtype (fp32 accumulation in every case).
TOLERANCE = {torch.float32: 1e-5, torch.bfloat16: 2e-2, torch.float16: 3e-3}
BACKENDS = ["triton", "reference"]
DEVICE = os.environ.get("RD_KERNELS_TEST_DEVICE", "cpu")


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    out, ref = out.detach().double(), ref.detach().double()
    assert torch.isfinite(out).all(), "non-finite output"
    return float((out - ref).norm() / ref.norm().clamp_min(1e-30))


def ground_truth(mu, logvar, eps, grad_kl, grad_z):
    mu64 = mu.double().requires_grad_()
    lv64 = logvar.double().requires_grad_()
    kl = 0.5 * (mu64**2 + lv64.exp() - 1 - lv64).flatten(1).sum(1)
    z = mu64 + (0.5 * lv64).exp() * eps.double()
    torch.autograd.backward([kl, z], [grad_kl.double(), grad_z.double()])
    lv = lv64.detach().flatten(1)
    return {
        "kl": kl.detach(), "z": z.detach(), "grad_mu": mu64.grad, "grad_lv": lv64.grad,
        "anisotropy": lv.var(1, unbiased=False),
        "variance_kl": 0.5 * (lv.exp() - 1 - lv).sum(1),
    }


def inputs(shape, dtype, logvar_range, seed=0):
    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(shape, generator=g).to(dtype)
    logvar = ((torch.rand(shape, generator=g) * 2 - 1) * logvar_range).to(dtype)
    eps = torch.randn(shape, generator=g).to(dtype)
    grad_kl, grad_z = torch.randn(shape[0], generator=g), torch.randn(shape, generator=g).to(dtype)
    return tuple(t.to(DEVICE) for t in (mu, logvar, eps, grad_kl, grad_z))


def run(backend, mu, logvar, eps, grad_kl, grad_z):
    m, lv = mu.clone().requires_grad_(), logvar.clone().requires_grad_()
    z, kl, stats = sample_and_kl(m, lv, eps, backend=backend)
    torch.autograd.backward([kl, z], [grad_kl, grad_z])
    return {"kl": kl, "z": z, "grad_mu": m.grad, "grad_lv": lv.grad,
            "anisotropy": stats.anisotropy, "variance_kl": stats.variance_kl}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("shape", SHAPES)
def test_sample_and_kl_matches_float64(backend, dtype, shape):
    mu, logvar, eps, grad_kl, grad_z = inputs(shape, dtype, logvar_range=4.0)
    truth = ground_truth(mu, logvar, eps, grad_kl, grad_z)
    out = run(backend, mu, logvar, eps, grad_kl, grad_z)
    for key, ref in truth.items():
        assert out[key].shape == ref.shape, key
        if shape[1:] == (1,) and key == "anisotropy":
            assert torch.all(out[key] == 0)  # one coordinate: no spread
            continue
        assert rel_err(out[key], ref) <= TOLERANCE[dtype], key
    assert out["z"].dtype == dtype and out["grad_mu"].dtype == dtype
    assert out["kl"].dtype == torch.float32


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_extreme_logvar(backend, dtype):
    """logvar at ±30: e^30 ≈ 1e13 must neither overflow the fp32 accumulator nor lose the variance."""
    mu, _, eps, grad_kl, grad_z = inputs((3, 4, 9, 9), dtype, 1.0, seed=1)
    logvar = torch.where(torch.rand(mu.shape, generator=torch.Generator().manual_seed(2)) > 0.5, 30.0, -30.0)
    logvar = logvar.to(dtype).to(DEVICE)
    truth = ground_truth(mu, logvar, eps, grad_kl, grad_z)
    out = run(backend, mu, logvar, eps, grad_kl, grad_z)
    for key in ("kl", "grad_mu", "grad_lv", "anisotropy", "variance_kl", "z"):
        assert rel_err(out[key], truth[key]) <= TOLERANCE[dtype], key
    # All-equal large logvar: the shifted variance is exactly 0, not cancellation noise.
    flat = torch.full((2, 5000), 30.0, dtype=dtype, device=DEVICE)
    _, _, stats = sample_and_kl(torch.zeros_like(flat), flat, torch.zeros_like(flat), backend=backend)
    assert torch.all(stats.anisotropy.abs() < 1e-6)


def test_fp16_extreme_logvar_kl_stays_finite():
    """fp16 cannot hold ∂KL/∂logvar = (e^ℓ - 1)/2 beyond ℓ ≈ 11, but the fp32 KL of fp16 inputs is
    accurate to fp32's exp: e^ℓ is computed as 2^(ℓ log₂e), whose fp32 argument (43.3) carries a
    rounding error of up to 2⁻¹⁹, i.e. a relative error of 2⁻¹⁹ ln 2 ≈ 1.3e-6 in e^30 (1.21e-6 was
    measured on an H200); twice that is the bound."""
    mu, _, _, _, _ = inputs((2, 64), torch.float16, 1.0)
    logvar = torch.full((2, 64), 30.0, dtype=torch.float16, device=DEVICE)
    for backend in BACKENDS:
        kl = gaussian_kl(mu, logvar, backend=backend)
        expected = 0.5 * (mu.double() ** 2 + torch.exp(torch.tensor(30.0, dtype=torch.float64)) - 31).sum(1)
        expected = expected.to(kl.device)
        assert torch.isfinite(kl).all()
        assert rel_err(kl, expected) < 2.7e-6


@pytest.mark.parametrize("backend", BACKENDS)
def test_kl_only_and_sample_only_gradients(backend):
    mu, logvar, eps, _, _ = inputs((3, 50), torch.float32, 3.0)
    m, lv = mu.clone().requires_grad_(), logvar.clone().requires_grad_()
    gaussian_kl(m, lv, backend=backend).sum().backward()
    torch.testing.assert_close(m.grad, mu)
    torch.testing.assert_close(lv.grad, 0.5 * (logvar.exp() - 1))
    m, lv = mu.clone().requires_grad_(), logvar.clone().requires_grad_()
    z, _, _ = sample_and_kl(m, lv, eps, backend=backend)
    z.sum().backward()
    torch.testing.assert_close(m.grad, torch.ones_like(mu))
    torch.testing.assert_close(lv.grad, 0.5 * (0.5 * logvar).exp() * eps)


def test_backends_draw_the_same_noise_from_a_generator():
    mu, logvar, _, _, _ = inputs((2, 3, 4, 4), torch.float32, 2.0)
    zs = [sample_and_kl(mu, logvar, generator=torch.Generator(DEVICE).manual_seed(5), backend=b)[0]
          for b in BACKENDS]
    torch.testing.assert_close(zs[0], zs[1])


@settings(max_examples=15, deadline=None)
@given(
    batch=st.integers(1, 4), dims=st.lists(st.integers(1, 12), min_size=1, max_size=3),
    scale=st.floats(0.0, 12.0), seed=st.integers(0, 10_000),
)
def test_random_shapes_and_values(batch, dims, scale, seed):
    shape = (batch, *dims)
    mu, logvar, eps, grad_kl, grad_z = inputs(shape, torch.float32, scale, seed)
    truth = ground_truth(mu, logvar, eps, grad_kl, grad_z)
    out = run("triton", mu, logvar, eps, grad_kl, grad_z)
    for key in ("kl", "z", "grad_mu", "grad_lv"):
        assert rel_err(out[key], truth[key]) <= 1e-5, key
    torch.testing.assert_close(out["anisotropy"].double(), truth["anisotropy"], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(
    ("mu", "logvar", "error", "message"),
    [
        (torch.zeros(2, 3), torch.zeros(2, 4), ValueError, "shape"),
        (torch.zeros(2, 3, dtype=torch.int64), torch.zeros(2, 3, dtype=torch.int64), TypeError, "floating"),
        (torch.zeros(3), torch.zeros(3), ValueError, "batch of latents"),
        (torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.float16), ValueError, "share dtype"),
    ],
)
def test_bad_input(mu, logvar, error, message):
    with pytest.raises(error, match=message):
        gaussian_kl(mu, logvar)


@pytest.mark.skipif(DEVICE != "cpu", reason="checks the CPU interpreter requirement")
def test_eps_shape_and_backend_errors(monkeypatch):
    with pytest.raises(ValueError, match="eps must match"):
        sample_and_kl(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="backend argument"):
        gaussian_kl(torch.zeros(2, 3), torch.zeros(2, 3), backend="cuda")
    monkeypatch.setenv("RD_KERNELS_BACKEND", "fast")
    with pytest.raises(ValueError, match="RD_KERNELS_BACKEND"):
        gaussian_kl(torch.zeros(2, 3), torch.zeros(2, 3))
    monkeypatch.setenv("RD_KERNELS_BACKEND", "triton")
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
        gaussian_kl(torch.zeros(2, 3), torch.zeros(2, 3))


def test_fp64_runs_the_reference_even_when_triton_is_forced():
    mu, logvar, _, _, _ = inputs((2, 5), torch.float64, 2.0)
    kl = gaussian_kl(mu, logvar, backend="triton")
    assert kl.dtype == torch.float64


# -- one launch each way, nothing else dispatched; a registered op that compiles ----------------------

def test_fused_path_dispatches_only_its_ops_allocations_and_views():
    """Forward + backward through the public function dispatch only views (eager calls go through an
    autograd.Function); inside the launchers: allocations and views, then the one kernel each way (what
    Triton's interpreter does is the launch)."""
    from rd_kernels.gaussian_kl import triton as kernels
    from rd_kernels.testing import DispatchLog

    mu, logvar, eps, grad_kl, grad_z = inputs((3, 4, 30, 30), torch.float32, 3.0)  # split rows on CPU
    m, lv = mu.clone().requires_grad_(), logvar.clone().requires_grad_()
    sample_and_kl(m, lv, eps, backend="triton")  # first call allocates the arrival counters
    with DispatchLog() as log:
        z, kl, _ = sample_and_kl(m, lv, eps, backend="triton")
        torch.autograd.backward([kl, z], [grad_kl, grad_z])
    assert log.compute_ops() == []
    assert not [op for op in log.ops if op.startswith("rd_kernels")]  # eager: the Function, not the ops
    for launch in (lambda: kernels.forward(mu, logvar, eps),
                   lambda: kernels.backward(mu, logvar, eps, grad_kl, grad_z),
                   lambda: kernels.backward(mu, logvar, eps, grad_kl.expand(3), None)):
        with DispatchLog() as inner:
            launch()
        assert inner.compute_ops() == [], inner.ops


@given(st.integers(0, 1 << 40), st.integers(1, 1 << 20))
def test_host_tiling_arithmetic_matches_tritons(a, b):
    """The launchers' plain-Python cdiv / next_power_of_2 (cheaper to call on the host) are Triton's."""
    import triton
    from rd_kernels.gaussian_kl.triton import cdiv, next_power_of_2

    assert cdiv(a, b) == triton.cdiv(a, b)
    assert next_power_of_2(a) == triton.next_power_of_2(a)
    assert next_power_of_2(b) == triton.next_power_of_2(b)


def test_split_rows_are_deterministic_and_leave_the_counters_at_zero():
    from rd_kernels._workspace import counters
    from rd_kernels.gaussian_kl.triton import plan, target_programs

    mu, logvar, eps, _, _ = inputs((2, 9000), torch.float32, 5.0)
    assert plan(2, 9000, target_programs(mu.device)).split
    first = sample_and_kl(mu, logvar, eps, backend="triton")
    for _ in range(2):
        again = sample_and_kl(mu, logvar, eps, backend="triton")
        assert torch.equal(again[1], first[1]) and torch.equal(again[2].anisotropy, first[2].anisotropy)
    assert int(counters("gaussian_kl", mu.device, 2)[:2].abs().sum()) == 0


@pytest.mark.parametrize("layout", ["compact", "permuted"])
def test_opcheck(layout):
    from rd_kernels.gaussian_kl import _backward_op, _gaussian_kl_op, _sample_and_kl_op

    mu, logvar, eps, grad_kl, _ = inputs((3, 4, 5, 6), torch.float32, 3.0)
    if layout == "permuted":
        mu, logvar, eps = (t.permute(0, 2, 3, 1) for t in (mu, logvar, eps))
    mu, logvar = mu.requires_grad_(), logvar.requires_grad_()
    for op, args in ((_sample_and_kl_op, (mu, logvar, eps)), (_gaussian_kl_op, (mu, logvar)),
                     (_backward_op, (mu.detach(), logvar.detach(), eps, grad_kl, torch.randn_like(eps)))):
        result = torch.library.opcheck(op, args)
        assert set(result.values()) == {"SUCCESS"}, (op, result)


def test_fullgraph_compile_of_a_function_calling_the_ops():
    torch._dynamo.reset()
    mu, logvar, eps, _, _ = inputs((4, 3, 5, 5), torch.float32, 3.0)

    def objective(mu, logvar, eps):
        z, kl, stats = sample_and_kl(mu, logvar, eps, backend="triton")
        return (z * z).sum() + kl.mean() + gaussian_kl(mu, logvar, backend="triton").sum(), stats.anisotropy

    grads = []
    for fn in (torch.compile(objective, fullgraph=True), objective):
        m, lv = mu.clone().requires_grad_(), logvar.clone().requires_grad_()
        loss, aniso = fn(m, lv, eps)
        loss.backward()
        grads.append((loss.detach(), aniso, m.grad, lv.grad))
    for compiled, eager in zip(*grads, strict=True):
        torch.testing.assert_close(compiled, eager)


@pytest.mark.skipif(DEVICE == "cpu", reason="CUDA graphs need a GPU")
def test_cuda_graph_capture_of_forward_and_backward():
    mu, logvar, eps, grad_kl, grad_z = inputs((64, 4, 32, 32), torch.float32, 3.0)
    m, lv = mu.clone().requires_grad_(), logvar.clone().requires_grad_()

    def step():
        m.grad = lv.grad = None
        z, kl, _ = sample_and_kl(m, lv, eps, backend="triton")
        torch.autograd.backward([kl, z], [grad_kl, grad_z])
        return z, kl

    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        step()  # warm-up outside the capture: compilation, counters
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        z, kl = step()
        captured = (m.grad, lv.grad)
    graph.replay()
    torch.cuda.synchronize()
    truth = ground_truth(mu, logvar, eps, grad_kl, grad_z)
    assert rel_err(kl, truth["kl"]) < 1e-5 and rel_err(z, truth["z"]) < 1e-5
    assert rel_err(captured[0], truth["grad_mu"]) < 1e-5 and rel_err(captured[1], truth["grad_lv"]) < 1e-5


def test_compiled_calls_trace_the_custom_ops_and_eager_calls_the_function():
    """Both dispatch paths run the same launches: equal outputs and gradients, and a compiled graph holds
    the registered ops (what makes fullgraph compilation and CUDA graphs possible)."""
    torch._dynamo.reset()
    mu, logvar, eps, grad_kl, grad_z = inputs((3, 2, 5, 5), torch.float32, 3.0)
    seen = []

    def backend(graph, example_inputs):
        seen.extend(str(node.target) for node in graph.graph.nodes if node.op == "call_function")
        return graph

    def objective(mu, logvar, eps):
        z, kl, _ = sample_and_kl(mu, logvar, eps, backend="triton")
        return z, kl

    results = []
    for fn in (torch.compile(objective, backend=backend, fullgraph=True), objective):
        m, lv = mu.clone().requires_grad_(), logvar.clone().requires_grad_()
        z, kl = fn(m, lv, eps)
        torch.autograd.backward([z, kl], [grad_z, grad_kl])
        results.append((z.detach(), kl.detach(), m.grad, lv.grad))
    for compiled, eager in zip(*results, strict=True):
        torch.testing.assert_close(compiled, eager)
    assert any("rd_kernels.sample_and_kl" in target for target in seen), seen
