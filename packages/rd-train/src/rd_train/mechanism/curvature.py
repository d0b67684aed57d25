r"""Effective distortion weights of a trained decoder: the price each latent coordinate's variance pays.

In the linear-Gaussian toy model (`rd_theory.toy`, spec D.2) coordinate i costs c_i = ||M A e_i||² per
unit of posterior variance, and the optimal variance is σ_i² = β / (β + 2 c_i). For a deep decoder and
any per-sample distortion d(x, x̂), the same price is the curvature of the distortion along e_i at the
posterior mean (second-order Taylor: E d(x, dec(μ + σ ⊙ ε)) ≈ d(x, dec(μ)) + Σ_i c_i σ_i²):

    c[b, i] = ½ ∂²/∂t² d(x_b, dec(μ_b + t e_i)) |_{t=0}                       (`effective_weights`)

computed by forward-over-forward autodiff (two nested JVPs), all coordinates at once with ``vmap``.
For a distortion quadratic in x̂ and a linear decoder it equals the toy model's ||M A e_i||².

Gauss–Newton form (`gauss_newton_weights`): when d = ||r(x, x̂)||² for a residual map r,

    ½ ∂²_t ||r||² = ||∂_t r||² + <r, ∂²_t r>   ≈   c^GN[b, i] = ||J_r J_dec e_i||²

(one JVP per coordinate, and never negative). It drops the residual-curvature term <r, ∂²_t r>: the
two agree exactly where the residual vanishes (x̂ = x) or where r(dec(μ + t e_i)) is linear in t (a
linear decoder into a linear residual), and differ otherwise by that term, which can have either sign.

Spatial latents (B, C, H, W): `channel_weights` estimates, per latent channel, the mean per-position
Gauss–Newton weight with Rademacher probes over that channel's positions (Hutchinson:
E_v ||J v||² = Σ_positions ||J e_p||², divided by H·W).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import rd_theory.toy as toy
import torch

Decode = Callable[[torch.Tensor], torch.Tensor]
Distortion = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x, x̂) -> (B,)
Residual = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x, x̂) -> (B, ...), d = ||r||² per sample


def _directions(mu: torch.Tensor) -> torch.Tensor:
    dims = mu.shape[1]
    return torch.eye(dims, dtype=mu.dtype, device=mu.device).unsqueeze(1).expand(dims, *mu.shape)


def effective_weights(
    decode: Decode, distortion: Distortion, x: torch.Tensor, mu: torch.Tensor
) -> torch.Tensor:
    """c[b, i] = ½ ∂²/∂t² distortion(x, decode(μ + t e_i))[b] at t = 0, shape (B, D); exact."""
    if mu.dim() != 2:
        raise ValueError(
            f"effective_weights needs vector latents (B, D), got {tuple(mu.shape)}; spatial "
            "latents: channel_weights"
        )

    def curvature(direction: torch.Tensor) -> torch.Tensor:
        def slope(m: torch.Tensor) -> torch.Tensor:
            return torch.func.jvp(lambda point: distortion(x, decode(point)), (m,), (direction,))[1]

        return 0.5 * torch.func.jvp(slope, (mu,), (direction,))[1]

    return torch.func.vmap(curvature)(_directions(mu)).T


def gauss_newton_weights(
    decode: Decode, residual: Residual, x: torch.Tensor, mu: torch.Tensor
) -> torch.Tensor:
    """c^GN[b, i] = ||J_r J_dec e_i||² for distortion = ||residual(x, x̂)||² per sample, shape (B, D)."""
    if mu.dim() != 2:
        raise ValueError(f"gauss_newton_weights needs vector latents (B, D), got {tuple(mu.shape)}")

    def squared_jvp(direction: torch.Tensor) -> torch.Tensor:
        tangent = torch.func.jvp(lambda point: residual(x, decode(point)), (mu,), (direction,))[1]
        return tangent.flatten(1).pow(2).sum(1)

    return torch.func.vmap(squared_jvp)(_directions(mu)).T


def channel_weights(
    decode: Decode,
    residual: Residual,
    x: torch.Tensor,
    mu: torch.Tensor,
    probes: int = 8,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Per latent channel of spatial latents (B, C, H, W): the mean Gauss–Newton weight of one position,
    estimated with ``probes`` Rademacher vectors per channel; shape (B, C)."""
    if mu.dim() != 4:
        raise ValueError(f"channel_weights needs spatial latents (B, C, H, W), got {tuple(mu.shape)}")
    b, c, h, w = mu.shape
    signs = torch.randint(0, 2, (c, probes, h, w), generator=generator).to(mu) * 2 - 1
    directions = torch.zeros(c, probes, b, c, h, w, dtype=mu.dtype, device=mu.device)
    for k in range(c):
        directions[k, :, :, k] = signs[k].unsqueeze(1)

    def squared_jvp(direction: torch.Tensor) -> torch.Tensor:
        tangent = torch.func.jvp(lambda point: residual(x, decode(point)), (mu,), (direction,))[1]
        return tangent.flatten(1).pow(2).sum(1)

    estimates = torch.func.vmap(squared_jvp)(directions.reshape(c * probes, b, c, h, w)).reshape(c, probes, b)
    return (estimates.mean(1) / (h * w)).T


def predicted_variances(c: torch.Tensor | np.ndarray, beta: float) -> np.ndarray:
    """The toy model's optimal posterior variances σ² = β / (β + 2 c) (`rd_theory.toy.optimal_variances`),
    for each row of ``c`` (B, D) or a single row (D,). Negative weights (possible for exact second
    derivatives, never for Gauss–Newton) are refused there."""
    weights = np.atleast_2d(
        np.asarray(c.detach().cpu() if isinstance(c, torch.Tensor) else c, dtype=np.float64)
    )
    return np.stack([toy.optimal_variances(row, beta) for row in weights]).reshape(np.shape(c))
