"""Balancer vs an independent, straightforward implementation of audiocraft's semantics."""

import math
import os

import pytest
import torch
from rd_kernels import Balancer

BACKENDS = ["triton", "reference"]
DEVICE = os.environ.get("RD_KERNELS_TEST_DEVICE", "cpu")


class NaiveBalancer:
    """The formula written out loss by loss, with the EMA as explicit sums (no shared code)."""

    def __init__(self, weights, total_norm=1.0, ema_decay=0.999, per_batch_item=True, eps=1e-12,
                 balance_grads=True):
        self.w, self.total_norm, self.decay = weights, total_norm, ema_decay
        self.per_item, self.eps, self.balance = per_batch_item, eps, balance_grads
        self.history = {k: [] for k in weights}

    def gradient(self, losses, output):
        grads, ema = {}, {}
        for name, loss in losses.items():
            g = torch.autograd.grad(loss, output, retain_graph=True)[0].double()
            n = torch.stack([g[b].norm() for b in range(len(g))]).mean() if self.per_item else g.norm()
            self.history[name].append(float(n))
            h = self.history[name]
            weights = [self.decay ** (len(h) - 1 - s) for s in range(len(h))]
            ema[name] = sum(w * v for w, v in zip(weights, h, strict=True)) / sum(weights)
            grads[name] = g
        total_w = sum(self.w[k] for k in losses)
        out = torch.zeros_like(output, dtype=torch.float64)
        for name, g in grads.items():
            scale = (self.w[name] / total_w * self.total_norm / (self.eps + ema[name])
                     if self.balance else self.w[name])
            out += scale * g
        return out, ema


def decoder_and_losses(seed, k, batch=3, width=10):
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, width)).to(DEVICE)
    x, target = torch.randn(batch, 6, device=DEVICE), torch.randn(batch, width, device=DEVICE)

    def losses(output, step):
        scales = [1.0, 100.0, 0.01, 3.0, 7.0, 0.5, 20.0, 2.0, 0.1][:k]  # very different natural scales
        return {f"l{i}": scales[i] * (1 + step) * ((output - target) ** (i + 2)).abs().mean()
                for i in range(k)}

    return net, x, losses


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("k", [2, 3, 5, 9])
@pytest.mark.parametrize(("per_batch_item", "balance_grads"), [(True, True), (False, True), (True, False)])
@pytest.mark.parametrize("width", [10, 3000], ids=["short-rows", "split-rows"])
def test_matches_naive_implementation_over_steps(backend, k, per_batch_item, balance_grads, width):
    weights = {f"l{i}": float(i + 1) for i in range(k)}
    net, x, losses = decoder_and_losses(0, k, width=width)
    balancer = Balancer(weights, total_norm=2.0, ema_decay=0.9, per_batch_item=per_batch_item,
                        balance_grads=balance_grads, backend=backend)
    naive = NaiveBalancer(weights, total_norm=2.0, ema_decay=0.9, per_batch_item=per_batch_item,
                          balance_grads=balance_grads)
    for step in range(4):
        # A leaf output: its .grad receives exactly the balanced gradient G (autograd.grad inside
        # the balancer does not accumulate into .grad).
        output = net(x).detach().requires_grad_()
        expected, ema = naive.gradient(losses(output, step), output)
        balancer.backward(losses(output, step), output)
        # fp32 against the naive reference: tolerances relative to the gradient's scale (an element
        # that cancels to near zero carries fp32 rounding of its terms, ~1e-7 of the scale).
        scale = float(expected.abs().max())
        torch.testing.assert_close(output.grad.double(), expected, rtol=1e-5, atol=1e-5 * scale)
        state = balancer.state_dict()
        for name, value in ema.items():
            assert state["ema_sum"][name] / state["ema_weight"][name] == pytest.approx(value, rel=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_weights_become_gradient_fractions(backend):
    """With orthogonal gradients of fixed norms 1 and 1000, weights 1:3 give norms 1/4 and 3/4."""
    output = torch.zeros(2, 8, requires_grad=True, device=DEVICE)
    a, b = torch.zeros(2, 8, device=DEVICE), torch.zeros(2, 8, device=DEVICE)
    a[:, 0], b[:, 1] = 1.0, 1000.0
    balancer = Balancer({"pixel": 1.0, "neural": 3.0}, backend=backend)
    for _ in range(3):
        output.grad = None
        balancer.backward({"pixel": (a * output).sum(), "neural": (b * output).sum()}, output)
    assert float(output.grad[:, 0].abs().mean()) == pytest.approx(0.25, rel=1e-6)
    assert float(output.grad[:, 1].abs().mean()) == pytest.approx(0.75, rel=1e-6)
    assert float(balancer.metrics()["ratio_neural"]) == pytest.approx(1000 / 1001)
    losses = {"pixel": (a * output).sum().detach(), "neural": (b * output).sum().detach()}
    scales = balancer.metrics()
    expected = float(scales["scale_pixel"]) * float(losses["pixel"]) + float(scales["scale_neural"]) * float(
        losses["neural"])
    assert float(balancer.effective_loss(losses)) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_step_reads_nothing_back_to_the_host(backend):
    """No .item(), .tolist(), float() or device-to-host copy inside a balancer step."""
    from rd_kernels.testing import host_syncs

    weights = {f"l{i}": float(i + 1) for i in range(3)}
    net, x, losses = decoder_and_losses(4, 3, batch=4)
    balancer = Balancer(weights, backend=backend)
    out = net(x)
    balancer.backward(losses(out, 0), out)  # first step: state moves to the device, constants cached
    out = net(x)
    step_losses = losses(out, 1)
    with host_syncs() as reads:
        balancer.backward(step_losses, out)
    assert reads == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_non_finite_norm_is_kept_out_of_the_state_and_reported_by_name(backend):
    out = torch.zeros(2, 3, requires_grad=True, device=DEVICE)
    target = torch.ones(2, 3, device=DEVICE)
    balancer = Balancer({"a": 1.0, "b": 1.0}, ema_decay=0.5, backend=backend)
    balancer.backward({"a": ((out - target) ** 2).sum(), "b": (out - target).abs().sum()}, out)
    before = balancer.state_dict()
    out.grad = None
    balancer.backward({"a": ((out - target) ** 2).sum(), "b": (out * math.nan).sum()}, out)
    assert torch.isnan(out.grad).all()  # the caller's gradient check sees it at once
    after = balancer.state_dict()
    assert after["ema_sum"]["b"] == before["ema_sum"]["b"]  # b's NaN step left b's EMA alone
    assert after["ema_weight"]["b"] == before["ema_weight"]["b"]
    assert after["ema_weight"]["a"] == pytest.approx(0.5 * before["ema_weight"]["a"] + 1)  # a moved on
    with pytest.raises(FloatingPointError, match=r"'b' \(1 step\) had a non-finite norm"):
        balancer.check_finite()
    balancer.check_finite()  # the count was reset with the report


def test_state_dict_round_trip_resumes_identically():
    weights = {"l0": 1.0, "l1": 0.5}
    net, x, losses = decoder_and_losses(1, 2)
    first = Balancer(weights, ema_decay=0.8)
    for step in range(3):
        out = net(x)
        first.backward(losses(out, step), out)
    second = Balancer(weights, ema_decay=0.8)
    second.load_state_dict(first.state_dict())
    grads = []
    for balancer in (first, second):
        net.zero_grad()
        out = net(x)
        balancer.backward(losses(out, 3), out)
        grads.append([p.grad.clone() for p in net.parameters()])
    for g1, g2 in zip(*grads, strict=True):
        torch.testing.assert_close(g1, g2)
    assert first.state_dict() == second.state_dict()


def test_errors():
    out = torch.zeros(2, 3, requires_grad=True)
    balancer = Balancer({"a": 1.0})
    with pytest.raises(ValueError, match=r"\['b'\] have no weight"):
        balancer.backward({"b": out.sum()}, out)
    with pytest.raises(ValueError, match="does not require grad"):
        balancer.backward({"a": out.sum()}, torch.zeros(2, 3))
    with pytest.raises(ValueError, match="scalar"):
        balancer.backward({"a": out * 2}, out)
    with pytest.raises(ValueError, match="must be finite and >= 0"):
        Balancer({"a": -1.0})
    with pytest.raises(ValueError, match="ema_decay"):
        Balancer({"a": 1.0}, ema_decay=0.0)
    with pytest.raises(ValueError, match="no weight"):
        Balancer({"a": 1.0}).load_state_dict({"ema_sum": {"z": 1.0}, "ema_weight": {"z": 1.0}})
