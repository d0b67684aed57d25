"""Diagonal-Gaussian KL to N(0, I), the reparameterised sample and per-sample posterior statistics.

`gaussian_kl` and `sample_and_kl` run the fused Triton kernels (`triton.py`) on CUDA and the PyTorch
reference (`reference.py`) on CPU; see `rd_kernels._backend`. fp64 inputs always run the reference:
it is the ground truth the kernels are tested against.

The Triton path is two ``torch.library`` custom ops, ``rd_kernels::sample_and_kl`` and
``rd_kernels::gaussian_kl`` (forward, one kernel launch each), with ``rd_kernels::gaussian_kl_backward``
(one launch) as their registered autograd formula and fake (meta) implementations written from the
launchers' allocations. So ``torch.compile(fullgraph=True)`` traces through them without a graph
break, and a CUDA graph can capture them: nothing in the path synchronises with the host. Eager calls
run the same launches through a plain autograd.Function (`_EagerSampleAndKL`): cheaper to dispatch.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import Tensor

from rd_kernels import _backend
from rd_kernels.gaussian_kl import reference


class PosteriorStats(NamedTuple):
    """Per-sample diagnostics (detached: they are metrics, not training signals)."""

    anisotropy: torch.Tensor  # Var_j(log σ_j²), population variance over all latent coordinates
    variance_kl: torch.Tensor  # ½ Σ_j (σ_j² - 1 - log σ_j²), nats


# -- the custom ops (Triton) ------------------------------------------------------------------------

@torch.library.custom_op("rd_kernels::sample_and_kl", mutates_args=())
def _sample_and_kl_op(mu: Tensor, logvar: Tensor, eps: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(z, kl, variance_kl, anisotropy): one launch."""
    from rd_kernels.gaussian_kl import triton as kernels

    kl, var_kl, aniso, z = kernels.forward(mu, logvar, eps)
    assert z is not None
    return z, kl, var_kl, aniso


@torch.library.custom_op("rd_kernels::gaussian_kl", mutates_args=())
def _gaussian_kl_op(mu: Tensor, logvar: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(kl, variance_kl, anisotropy): one launch."""
    from rd_kernels.gaussian_kl import triton as kernels

    kl, var_kl, aniso, _ = kernels.forward(mu, logvar, None)
    return kl, var_kl, aniso


@torch.library.custom_op("rd_kernels::gaussian_kl_backward", mutates_args=())
def _backward_op(
    mu: Tensor, logvar: Tensor, eps: Tensor | None, grad_kl: Tensor | None, grad_z: Tensor | None
) -> tuple[Tensor, Tensor]:
    """(∂μ, ∂ℓ) from ∂KL (per sample) and ∂z: one launch."""
    from rd_kernels.gaussian_kl import triton as kernels

    return kernels.backward(mu, logvar, eps, grad_kl, grad_z)


def _per_sample(mu: Tensor) -> Tensor:
    return mu.new_empty(mu.shape[0], dtype=torch.float32)


@_sample_and_kl_op.register_fake
def _(mu: Tensor, logvar: Tensor, eps: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    return mu.new_empty(mu.shape), _per_sample(mu), _per_sample(mu), _per_sample(mu)


@_gaussian_kl_op.register_fake
def _(mu: Tensor, logvar: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    return _per_sample(mu), _per_sample(mu), _per_sample(mu)


@_backward_op.register_fake
def _(mu: Tensor, logvar: Tensor, eps: Tensor | None, grad_kl: Tensor | None,
      grad_z: Tensor | None) -> tuple[Tensor, Tensor]:
    return mu.new_empty(mu.shape), logvar.new_empty(logvar.shape)


def _setup(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
    mu, logvar, *rest = inputs
    ctx.save_for_backward(mu, logvar, *rest)
    # An unused output (z, or the statistics) gets None instead of a zero-filled gradient: no fill
    # kernel, and the backward launch skips that term.
    ctx.set_materialize_grads(False)


def _sample_backward(
    ctx: Any, grad_z: Tensor | None, grad_kl: Tensor | None, _gv: Any, _ga: Any
) -> tuple[Any, ...]:
    mu, logvar, eps = ctx.saved_tensors
    if grad_z is None and grad_kl is None:
        return None, None, None
    grad_mu, grad_lv = _backward_op(mu, logvar, eps, grad_kl, grad_z)
    return grad_mu, grad_lv, None


def _kl_backward(ctx: Any, grad_kl: Tensor | None, _gv: Any, _ga: Any) -> tuple[Any, ...]:
    mu, logvar = ctx.saved_tensors
    if grad_kl is None:
        return None, None
    grad_mu, grad_lv = _backward_op(mu, logvar, None, grad_kl, None)
    return grad_mu, grad_lv


_sample_and_kl_op.register_autograd(_sample_backward, setup_context=_setup)
_gaussian_kl_op.register_autograd(_kl_backward, setup_context=_setup)


class _EagerSampleAndKL(torch.autograd.Function):
    """The same two launches as the custom ops, for eager calls: dispatching a custom op costs ~250 µs
    of host time per forward + backward on an H200, twice the launches themselves (measured,
    benchmarks/results/*-dispatch.json); a plain autograd.Function costs about half. Under
    torch.compile the ops are what is traced."""

    @staticmethod
    def forward(ctx: Any, mu: Tensor, logvar: Tensor, eps: Tensor | None) -> tuple[Tensor, ...]:
        from rd_kernels.gaussian_kl import triton as kernels

        kl, var_kl, aniso, z = kernels.forward(mu, logvar, eps)
        ctx.save_for_backward(mu, logvar, eps)
        ctx.set_materialize_grads(False)
        ctx.mark_non_differentiable(var_kl, aniso)
        return (kl, var_kl, aniso) if z is None else (z, kl, var_kl, aniso)

    @staticmethod
    def backward(ctx: Any, *grads: Tensor | None) -> tuple[Any, ...]:
        mu, logvar, eps = ctx.saved_tensors
        grad_z, grad_kl = (grads[0], grads[1]) if eps is not None else (None, grads[0])
        if grad_z is None and grad_kl is None:
            return None, None, None
        from rd_kernels.gaussian_kl import triton as kernels

        grad_mu, grad_lv = kernels.backward(mu, logvar, eps, grad_kl, grad_z)
        return grad_mu, grad_lv, None


def _fused(mu: Tensor, logvar: Tensor, eps: Tensor | None) -> tuple[Tensor, ...]:
    """(z,) kl, variance_kl, anisotropy through the custom ops when compiling, the Function otherwise."""
    if torch.compiler.is_compiling():
        return _sample_and_kl_op(mu, logvar, eps) if eps is not None else _gaussian_kl_op(mu, logvar)
    return _EagerSampleAndKL.apply(mu, logvar, eps)


# -- public API --------------------------------------------------------------------------------------

def _check(mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor | None = None) -> None:
    _backend.check_floating("mu", mu)
    _backend.check_floating("logvar", logvar)
    if mu.shape != logvar.shape:
        raise ValueError(f"mu has shape {tuple(mu.shape)} but logvar has {tuple(logvar.shape)}")
    if mu.dim() < 2:
        raise ValueError(f"expected a batch of latents (B x D or B x C x H x W), got shape {tuple(mu.shape)}")
    if mu.dtype != logvar.dtype or mu.device != logvar.device:
        raise ValueError(f"mu ({mu.dtype}, {mu.device}) and logvar ({logvar.dtype}, {logvar.device}) "
                         "must share dtype and device")
    if eps is not None:
        _backend.check_floating("eps", eps)
        if eps.shape != mu.shape or eps.device != mu.device:
            raise ValueError(f"eps must match mu's shape {tuple(mu.shape)} and device, got "
                             f"{tuple(eps.shape)} on {eps.device}")


def _use_triton(backend: str | None, mu: torch.Tensor) -> bool:
    return _backend.resolve(backend, mu) == "triton" and mu.dtype != torch.float64


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor, *, backend: str | None = None) -> torch.Tensor:
    """Per-sample KL(N(μ, diag exp(logvar)) || N(0, I)) in nats, summed over non-batch dims (fp32)."""
    _check(mu, logvar)
    if _use_triton(backend, mu):
        return _fused(mu, logvar, None)[0]
    return reference.gaussian_kl(mu, logvar)


def sample_and_kl(
    mu: torch.Tensor,
    logvar: torch.Tensor,
    eps: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    *,
    backend: str | None = None,
) -> tuple[torch.Tensor, torch.Tensor, PosteriorStats]:
    """``(z, kl, stats)``: z = μ + exp(logvar/2) ε (input dtype), per-sample KL (fp32), statistics.

    ``eps`` defaults to ``torch.randn`` drawn with ``generator`` on mu's device, the same stream for
    both backends. ``eps`` is a constant: no gradient flows into it.
    """
    _check(mu, logvar, eps)
    if eps is None:
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
    if _use_triton(backend, mu):
        z, kl, var_kl, aniso = _fused(mu, logvar, eps.detach())
        return z, kl, PosteriorStats(aniso.detach(), var_kl.detach())
    stats = PosteriorStats(reference.anisotropy(logvar.detach()), reference.variance_kl(logvar.detach()))
    return reference.sample(mu, logvar, eps), reference.gaussian_kl(mu, logvar), stats
