r"""Certified upper and sampled lower bounds on the Lipschitz constant of a torch feature map.

Spec Assumption 22 / 26 / 32 and its remark: for a composition of layers, ``Lip(f) <= Π Lip(f_l)``.

* Convolution (zero padding ``p``, stride ``s``, groups 1, dilation 1) on ``C x H x W`` inputs: it is
  the composition of zero-padding (an isometry into an ``N_h x N_w`` torus with ``N >= H + 2p``),
  a *circular* convolution on that torus, and a coordinate selection (valid positions, stride):
  selection has norm <= 1, so ``||conv|| <= ||circ||``. A circular convolution is block-diagonalised
  by the 2-D DFT (Sedghi, Gupta & Long 2019), so its norm is exactly the largest singular value of
  the ``C_out x C_in`` matrices ``Ŵ(ω)`` over the ``N_h x N_w`` frequencies: a certified bound.
  Power iteration on ``AᵀA`` gives a *lower* estimate of the same norm, which we keep as a check.
* Linear: exact spectral norm. Eval-mode BatchNorm: ``max |γ| / sqrt(var + eps)``.
* `rd_theory.vgg16.InputTransform` (scale, channel permutation, offset): |scale|.
* 1-Lipschitz: ReLU, LeakyReLU (slope <= 1), Tanh, Identity, Dropout (eval), Flatten.
  Sigmoid 1/4; GELU and SiLU by the maxima of their derivatives (rounded up).
* MaxPool ``k``/stride ``s``: each input lies in at most ``⌈k_h/s_h⌉⌈k_w/s_w⌉`` windows and a max
  is 1-Lipschitz per window in ℓ∞, so ``Lip <= sqrt(⌈k_h/s_h⌉⌈k_w/s_w⌉)``. AvgPool with
  ``k = s`` (disjoint windows) has norm exactly ``1 / sqrt(k_h k_w)``.

A *lower* bound on ``Lip(f)`` comes from data: the spectral norm of the Jacobian at sample points
(power iteration with jvp/vjp) and difference quotients of sampled pairs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from rd_theory.vgg16 import InputTransform

# sup_x d/dx [x Φ(x)] and sup_x d/dx [x σ(x)], rounded up in the 4th decimal.
GELU_LIPSCHITZ = 1.1290
SILU_LIPSCHITZ = 1.0999


@dataclass(frozen=True)
class LayerBound:
    name: str
    kind: str
    upper: float  # certified
    power_estimate: float | None  # lower estimate of a linear layer's norm, for cross-checking


@dataclass(frozen=True)
class LipschitzBound:
    layers: tuple[LayerBound, ...]

    @property
    def upper(self) -> float:
        return math.prod(layer.upper for layer in self.layers)

    def prefix_uppers(self) -> list[float]:
        """Certified bound of the map up to and including each layer (for per-layer features)."""
        out, running = [], 1.0
        for layer in self.layers:
            running *= layer.upper
            out.append(running)
        return out


def flatten_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Leaf layers of nested ``nn.Sequential`` containers, in execution order."""
    if not isinstance(model, nn.Sequential):
        return [("", model)]
    out: list[tuple[str, nn.Module]] = []
    for name, child in model.named_children():
        for sub, leaf in flatten_layers(child):
            out.append((f"{name}.{sub}" if sub else name, leaf))
    return out


@torch.no_grad()
def lipschitz_upper_bound(
    model: nn.Module, input_shape: tuple[int, ...], *, power_iterations: int = 30
) -> LipschitzBound:
    """Certified bound Π_l Lip(layer_l) for ``model`` (an ``nn.Sequential``) on ``input_shape``.

    ``input_shape`` excludes the batch dimension. The model must be in eval mode: batch-dependent
    normalisation has no fixed Lipschitz constant.
    """
    if model.training:
        raise ValueError("call model.eval() first: train-mode BatchNorm/Dropout are not fixed maps")
    x = torch.zeros((1, *input_shape))
    bounds = []
    for name, layer in flatten_layers(model):
        upper, power = _layer_bound(name, layer, tuple(x.shape[1:]), power_iterations)
        bounds.append(LayerBound(name, type(layer).__name__, upper, power))
        x = layer(x)
    return LipschitzBound(tuple(bounds))


def _layer_bound(
    name: str, layer: nn.Module, shape: tuple[int, ...], iters: int
) -> tuple[float, float | None]:
    if isinstance(layer, nn.Conv2d):
        return conv2d_operator_norm(layer, shape), _power_norm(layer, shape, iters)
    if isinstance(layer, nn.Linear):
        return float(torch.linalg.matrix_norm(layer.weight.double(), ord=2)), None
    if isinstance(layer, nn.BatchNorm2d | nn.BatchNorm1d):
        if layer.running_var is None:
            raise ValueError(f"layer {name!r}: BatchNorm without running statistics is batch-dependent")
        gamma = layer.weight.double() if layer.weight is not None else torch.ones(layer.num_features)
        scale = gamma / torch.sqrt(layer.running_var.double() + layer.eps)
        return float(scale.abs().max()), None
    if isinstance(layer, InputTransform):
        return layer.lipschitz, None
    if isinstance(layer, nn.ReLU | nn.Tanh | nn.Identity | nn.Dropout | nn.Flatten):
        return 1.0, None
    if isinstance(layer, nn.LeakyReLU):
        return max(1.0, abs(layer.negative_slope)), None
    if isinstance(layer, nn.Sigmoid):
        return 0.25, None
    if isinstance(layer, nn.GELU):
        return GELU_LIPSCHITZ, None
    if isinstance(layer, nn.SiLU):
        return SILU_LIPSCHITZ, None
    if isinstance(layer, nn.MaxPool2d):
        kh, kw = _pair(layer.kernel_size)
        sh, sw = _pair(layer.stride or layer.kernel_size)
        return math.sqrt(math.ceil(kh / sh) * math.ceil(kw / sw)), None
    if isinstance(layer, nn.AvgPool2d):
        kh, kw = _pair(layer.kernel_size)
        sh, sw = _pair(layer.stride or layer.kernel_size)
        if not layer.count_include_pad and _pair(layer.padding) != (0, 0):
            raise ValueError(f"layer {name!r}: AvgPool2d with count_include_pad=False has no rule")
        # ||mean_w x||² <= mean_w x², and each input lies in <= ⌈k/s⌉ windows per axis.
        return math.sqrt(math.ceil(kh / sh) * math.ceil(kw / sw) / (kh * kw)), None
    raise ValueError(
        f"layer {name!r} ({type(layer).__name__}) has no Lipschitz rule; supported: Conv2d, "
        "Linear, BatchNorm, ReLU/LeakyReLU/Tanh/Sigmoid/GELU/SiLU, MaxPool2d, AvgPool2d, "
        "InputTransform, Identity, Dropout, Flatten"
    )


def conv2d_operator_norm(conv: nn.Conv2d, input_shape: tuple[int, ...]) -> float:
    """Certified ℓ2 operator norm bound of ``conv`` on ``C x H x W`` inputs (FFT on the torus)."""
    if conv.groups != 1 or _pair(conv.dilation) != (1, 1):
        raise ValueError("conv2d_operator_norm supports groups=1 and dilation=1 only")
    if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
        raise ValueError("conv2d_operator_norm needs numeric zero padding")
    _, h, w = input_shape
    ph, pw = _pair(conv.padding)
    n_h, n_w = h + 2 * ph, w + 2 * pw
    weight = conv.weight.detach().double()
    largest = 0.0
    # Chunk over frequency rows: the full spectrum of a wide layer would not fit in memory.
    spectrum_rows = torch.fft.fft(weight, n=n_h, dim=2)
    for row in range(n_h):
        block = torch.fft.fft(spectrum_rows[:, :, row, :], n=n_w, dim=2)  # C_out x C_in x N_w
        norms = torch.linalg.matrix_norm(block.permute(2, 0, 1), ord=2)
        largest = max(largest, float(norms.max()))
    return largest


def _power_norm(layer: nn.Conv2d, shape: tuple[int, ...], iters: int) -> float:
    """Power iteration on AᵀA for the linear part of ``layer`` (bias removed): a lower estimate."""
    generator = torch.Generator().manual_seed(0)
    v = torch.randn((1, *shape), generator=generator, dtype=torch.float64)
    weight = layer.weight.detach().double()

    def apply(x: torch.Tensor) -> torch.Tensor:
        return nn.functional.conv2d(x, weight, None, layer.stride, _pair(layer.padding))  # type: ignore[arg-type]

    sigma = 0.0
    for _ in range(iters):
        v = v / v.norm()
        with torch.enable_grad():
            v_req = v.clone().requires_grad_(True)
            out = apply(v_req)
            (grad,) = torch.autograd.grad(0.5 * out.pow(2).sum(), v_req)
        sigma = float(out.norm())
        v = grad
    return sigma


def _pair(value: int | tuple[int, ...]) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    return int(value[0]), int(value[1])


def jacobian_lower_bound(
    f: Callable[[torch.Tensor], torch.Tensor], points: torch.Tensor, iters: int = 30
) -> float:
    """max over ``points`` of ||J_f(x)||₂ by power iteration: a lower bound on Lip(f)."""
    best = 0.0
    for x in points:
        x = x.unsqueeze(0)
        v = torch.randn_like(x)
        sigma = 0.0
        for _ in range(iters):
            v = v / v.norm()
            jv = torch.func.jvp(f, (x,), (v,))[1]
            vjp_fn = torch.func.vjp(f, x)[1]
            v = vjp_fn(jv)[0]
            sigma = float(jv.detach().norm())
        best = max(best, sigma)
    return best


def pair_lower_bound(
    f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor
) -> float:
    """max over pairs of ||f(x) - f(y)|| / ||x - y||: a lower bound on Lip(f)."""
    with torch.no_grad():
        num = (f(x) - f(y)).flatten(1).norm(dim=1)
        den = (x - y).flatten(1).norm(dim=1)
    return float((num / den).max())

