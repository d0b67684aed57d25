r"""Neural distortions and their affine domination by pixel SSE (spec §3.1, appendix C.4-C.6).

Pixel SSE ``d_pix(x, y) = ||x - y||²`` on the image domain ``Ω = [-1, 1]^n``. Reconstructions of the
lost formulas, each with its certificate ``d <= a d_pix + b``:

* Feature MSE (Thm 3, Lemma 23): ``d_φ = ||φ(x) - φ(y)||²`` with ``φ`` L-Lipschitz:  a = L², b = 0.
* Discriminator feature matching (Def. 25, Lemma 27): ``d_FM = Σ_l w_l ||D_l(x) - D_l(y)||²``
  with ``D_l`` L_l-Lipschitz:  a = Σ_l w_l L_l², b = 0.
* PatchGAN score (Def. 29): ``s(x) = mean of the logit grid``; generator hinge loss ``-s(x̂)``.
  The pairwise score difference ``s(x) - s(x̂)`` differs from it by a constant in x̂, and the shift
  ``Δ >= sup_Ω s - inf_Ω s`` makes it a distortion (eq. 36): ``d_h = s(x) - s(x̂) + Δ >= 0``.
  With ``s`` L_s-Lipschitz, Young's inequality ``L_s t <= a t² + L_s² / (4a)`` gives, for any a > 0,
  (Lemma 33)  ``d_h <= a d_pix + Δ + L_s² / (4a)``.  We certify ``Δ = L_s · diam(Ω)``.
* Mixtures (Cor. 5, C.6): ``Σ_k w_k d_k`` with ``w_k >= 0`` and ``d_k <= a_k d_pix + b_k``
  satisfies  a = Σ w_k a_k, b = Σ w_k b_k  (pixel SSE itself has a = 1, b = 0).

Lipschitz constants come from `rd_theory.lipschitz.lipschitz_upper_bound` (certified).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from rd_theory.domination import Domination
from rd_theory.lipschitz import lipschitz_upper_bound


def pixel_sse(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample ||x - y||² over all non-batch dimensions."""
    return (x - y).flatten(1).pow(2).sum(dim=1)


def feature_mse(phi: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return pixel_sse(phi(x), phi(y))


def block_features(model: nn.Sequential, x: torch.Tensor) -> list[torch.Tensor]:
    """Outputs of every child of ``model`` (the taps used for feature matching)."""
    features = []
    for block in model:
        x = block(x)
        features.append(x)
    return features


def feature_matching(
    model: nn.Sequential, weights: Sequence[float], x: torch.Tensor, y: torch.Tensor
) -> torch.Tensor:
    """Σ_l w_l ||D_l(x) - D_l(y)||² over the first ``len(weights)`` blocks of ``model``."""
    fx, fy = block_features(model, x), block_features(model, y)
    return sum(
        (w * pixel_sse(a, b) for w, a, b in zip(weights, fx, fy, strict=False)),
        start=torch.zeros(x.shape[0]),
    )


def patch_score(discriminator: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """s(x): the mean of the PatchGAN logit grid (spec eq. 31)."""
    return discriminator(x).flatten(1).mean(dim=1)


def shifted_hinge(
    discriminator: nn.Module, shift: float, x: torch.Tensor, y: torch.Tensor
) -> torch.Tensor:
    """d_h(x, y) = s(x) - s(y) + shift (spec eq. 36)."""
    return patch_score(discriminator, x) - patch_score(discriminator, y) + shift


def domain_diameter(input_shape: tuple[int, ...], low: float = -1.0, high: float = 1.0) -> float:
    return (high - low) * math.sqrt(math.prod(input_shape))


def feature_mse_domination(phi: nn.Module, input_shape: tuple[int, ...]) -> Domination:
    lip = lipschitz_upper_bound(phi, input_shape).upper
    return Domination(a=lip**2, b=0.0)


def feature_matching_domination(
    model: nn.Sequential, weights: Sequence[float], input_shape: tuple[int, ...]
) -> Domination:
    """a = Σ_l w_l L_l², L_l the certified bound of the map up to block l."""
    if any(w < 0 for w in weights):
        raise ValueError("feature-matching weights must be >= 0")
    per_block = _block_lipschitz(model, input_shape)
    return Domination(a=sum(w * lip**2 for w, lip in zip(weights, per_block, strict=False)), b=0.0)


@dataclass(frozen=True)
class HingeCertificate:
    score_lipschitz: float  # L_s
    shift: float  # Δ, certified >= the score's range on Ω

    def domination(self, a: float) -> Domination:
        if a <= 0:
            raise ValueError(f"a must be > 0, got {a}")
        return Domination(a=a, b=self.shift + self.score_lipschitz**2 / (4.0 * a))


def hinge_certificate(discriminator: nn.Sequential, input_shape: tuple[int, ...]) -> HingeCertificate:
    """L_s = L_D / sqrt(P) (the mean of P logits has norm 1/sqrt(P)) and Δ = L_s diam(Ω)."""
    bound = lipschitz_upper_bound(discriminator, input_shape).upper
    with torch.no_grad():
        logits = discriminator(torch.zeros((1, *input_shape)))
    score_lip = bound / math.sqrt(logits[0].numel())
    return HingeCertificate(score_lip, score_lip * domain_diameter(input_shape))


def mixture_domination(weights: Sequence[float], parts: Sequence[Domination]) -> Domination:
    """Certificate of Σ_k w_k d_k from the parts' certificates (pixel SSE is Domination(1, 0))."""
    if len(weights) != len(parts):
        raise ValueError(f"{len(weights)} weights for {len(parts)} distortions")
    if any(w < 0 for w in weights):
        raise ValueError("mixture weights must be >= 0")
    return Domination(
        a=sum(w * p.a for w, p in zip(weights, parts, strict=True)),
        b=sum(w * p.b for w, p in zip(weights, parts, strict=True)),
    )


PIXEL_SSE = Domination(a=1.0, b=0.0)


def _block_lipschitz(model: nn.Sequential, input_shape: tuple[int, ...]) -> list[float]:
    """Certified bound of the prefix map ending at each child block of ``model``."""
    bound = lipschitz_upper_bound(model, input_shape)
    prefixes = bound.prefix_uppers()
    block_of = [int(layer.name.split(".")[0]) for layer in bound.layers]
    # The prefix bound of block k is the running product at its last leaf layer.
    return [prefixes[max(i for i, b in enumerate(block_of) if b == k)] for k in range(len(model))]


def image_pairs(
    n: int, input_shape: tuple[int, ...], generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pairs in Ω = [-1, 1]^n at every scale: far apart, mid-range, and tiny perturbations.

    Smooth (low-pass) images plus noise, so pairs resemble images rather than white noise only.
    """
    c, h, w = input_shape
    coarse = torch.rand((n, c, max(1, h // 4), max(1, w // 4)), generator=generator) * 2 - 1
    smooth = nn.functional.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)
    x = (0.7 * smooth + 0.3 * (torch.rand((n, c, h, w), generator=generator) * 2 - 1)).clamp(-1, 1)
    scales = torch.logspace(-3, 0.3, n)[torch.randperm(n, generator=generator)]
    noise = torch.randn((n, c, h, w), generator=generator)
    y = (x + scales.view(-1, 1, 1, 1) * noise).clamp(-1, 1)
    return x, y
