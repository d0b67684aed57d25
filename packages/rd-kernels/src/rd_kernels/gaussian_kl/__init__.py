"""Diagonal-Gaussian KL to N(0, I), the reparameterised sample and per-sample posterior statistics.

`gaussian_kl` and `sample_and_kl` dispatch to the fused Triton kernels (`triton.py`) on CUDA and to
the PyTorch reference (`reference.py`) on CPU; see `rd_kernels._backend`. fp64 inputs always run
the reference: it is the ground truth the kernels are tested against.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch

from rd_kernels import _backend
from rd_kernels.gaussian_kl import reference


class PosteriorStats(NamedTuple):
    """Per-sample diagnostics (detached: they are metrics, not training signals)."""

    anisotropy: torch.Tensor  # Var_j(log σ_j²), population variance over all latent coordinates
    variance_kl: torch.Tensor  # ½ Σ_j (σ_j² - 1 - log σ_j²), nats


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


class _FusedKL(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor | None):
        from rd_kernels.gaussian_kl import triton as kernels

        kl, var_kl, aniso, z = kernels.forward(mu, logvar, eps)
        ctx.save_for_backward(mu, logvar, eps)
        ctx.mark_non_differentiable(var_kl, aniso)
        if z is None:
            return kl, var_kl, aniso
        return kl, var_kl, aniso, z

    @staticmethod
    def backward(ctx: Any, grad_kl: torch.Tensor, _gv: Any, _ga: Any, grad_z: torch.Tensor | None = None):
        from rd_kernels.gaussian_kl import triton as kernels

        mu, logvar, eps = ctx.saved_tensors
        if grad_kl is None:
            grad_kl = torch.zeros(mu.shape[0], device=mu.device)
        grad_mu, grad_lv = kernels.backward(mu, logvar, eps, grad_kl, grad_z)
        return grad_mu, grad_lv, None


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor, *, backend: str | None = None) -> torch.Tensor:
    """Per-sample KL(N(μ, diag exp(logvar)) || N(0, I)) in nats, summed over non-batch dims (fp32)."""
    _check(mu, logvar)
    if _use_triton(backend, mu):
        return _FusedKL.apply(mu, logvar, None)[0]
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
    both backends.
    """
    _check(mu, logvar, eps)
    if eps is None:
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
    if _use_triton(backend, mu):
        kl, var_kl, aniso, z = _FusedKL.apply(mu, logvar, eps)
        return z, kl, PosteriorStats(aniso, var_kl)
    stats = PosteriorStats(reference.anisotropy(logvar.detach()), reference.variance_kl(logvar.detach()))
    return reference.sample(mu, logvar, eps), reference.gaussian_kl(mu, logvar), stats
