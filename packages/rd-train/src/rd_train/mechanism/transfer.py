r"""A mechanism test that is not circular: predict λ's matched-rate anisotropy from the λ = 0 model.

`prices.run_prices` compares each encoder with the toy model built from its own decoder at its own
optimum, which is close to the encoder's first-order condition, so agreement there says little about
whether the *loss* causes the change. Here the prediction for a run at λ uses nothing trained with λ's
reconstruction pressure on the autoencoder: the λ = 0 run of the same seed and rate target (its
posterior means μ and its decoder) under the λ-weighted distortion.

On the λ = 0 model, per image b and latent coordinate i (Gauss–Newton weights, `curvature.py`):

    c_pixel[b, i], c_neural[b, i]                  the two terms' effective weights at μ_b
    m_k = mean_b ||∂ℓ_k(b)/∂x̂_b||                  per-sample gradient norms on its reconstructions
    σ_k = f_k / m_k,  f = (1, λ) / (1 + λ)          the balancer's per-sample weights, for λ (module.py)
    P_λ = σ_pixel c_pixel + σ_neural c_neural,      P_0 = c_pixel / m_pixel

and the toy model's variances log σ²_i = log β / (β + 2 P_i). The λ = 0 prediction uses that run's own
β_0; the λ prediction a β'_b per image chosen so that its mean predicted log variance equals the λ = 0
one (the variance part of the rate held fixed, the means μ being the λ = 0 ones: the prediction at
matched rate). Predicted change: Â_λ / Â_0 − 1 with Â = mean_b Var_i log σ²; measured change: the two
runs' measured anisotropies A_λ / A_0 − 1. A baseline that predicts no change has error
Σ (measured change)²; the prediction explains 1 − Σ (measured − predicted)² / Σ measured² of it.

The neural term is the λ-run's loss as it ended: VGG16 (HED) features are frozen, so nothing of the λ
run enters; PatchGAN's feature-matching term needs a discriminator, and the λ run's is the only one
trained against such a decoder (stated beside the result).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rd_train.mechanism.curvature import gauss_newton_weights
from rd_train.mechanism.prices import residual_maps
from rd_train.training.losses import pixel_sse


def per_sample_gradient_norm(loss: Any, x: torch.Tensor, x_hat: torch.Tensor) -> float:
    """mean_b ||∂ℓ(b)/∂x̂_b|| for a batch-mean loss ``loss(x, x̂)`` of independent samples (eval mode)."""
    x_hat = x_hat.detach().requires_grad_(True)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(loss(x, x_hat) * x.shape[0], [x_hat])
    return float(grad.flatten(1).norm(dim=1).mean())


def matched_beta(prices: np.ndarray, target_mean_log_variance: np.ndarray) -> np.ndarray:
    """Per row of ``prices`` (B, D), the β with mean_i log(β / (β + 2 P_i)) equal to the row's target
    (bisection on log β: the mean is increasing in β)."""
    low, high = np.full(prices.shape[0], -40.0), np.full(prices.shape[0], 40.0)
    for _ in range(200):
        middle = 0.5 * (low + high)
        beta = np.exp(middle)[:, None]
        value = np.log(beta / (beta + 2 * prices)).mean(axis=1)
        below = value < target_mean_log_variance
        low, high = np.where(below, middle, low), np.where(below, high, middle)
    return np.exp(0.5 * (low + high))


def predicted_log_variances(prices: np.ndarray, beta: np.ndarray | float) -> np.ndarray:
    b = np.asarray(beta, dtype=np.float64).reshape(-1, 1) if np.ndim(beta) else float(beta)
    return np.log(b / (b + 2 * prices))


def predict_change(c_pixel: np.ndarray, c_neural: np.ndarray, m_pixel: float, m_neural: float, lam: float,
                   beta_0: float) -> dict[str, float]:
    """The predicted anisotropies at λ = 0 and λ from the λ = 0 model's weights (module docstring)."""
    p0 = np.clip(c_pixel / m_pixel, 1e-30, None)
    share = lam / (1 + lam)
    p_lam = np.clip((1 - share) * c_pixel / m_pixel + share * c_neural / m_neural, 1e-30, None)
    log_var_0 = predicted_log_variances(p0, beta_0)
    beta_lam = matched_beta(p_lam, log_var_0.mean(axis=1))
    log_var_lam = predicted_log_variances(p_lam, beta_lam)
    a0, a_lam = float(log_var_0.var(axis=1).mean()), float(log_var_lam.var(axis=1).mean())
    return {"predicted_anisotropy_0": a0, "predicted_anisotropy_lam": a_lam,
            "predicted_change": a_lam / a0 - 1 if a0 > 0 else math.nan,
            "matched_beta_median": float(np.median(beta_lam))}


@torch.no_grad()
def transfer_run(base_dir: Path, lam_dir: Path, images: int) -> dict[str, Any]:
    """The prediction for the λ run in ``lam_dir`` from the λ = 0 run in ``base_dir`` (same seed and
    rate target) on the base run's first ``images`` validation images, and the two runs' measured
    anisotropies."""
    from rd_train.training.run import load_trained

    device = "cuda" if torch.cuda.is_available() else "cpu"
    base_run = load_trained(base_dir, device=device)
    lam_run = load_trained(lam_dir, device=device, evaluated=False)  # read for its losses only
    base, loss_owner = base_run.module, lam_run.module
    base_metrics, lam_metrics = base_run.metrics, lam_run.metrics
    loss_owner.eval()
    x = base_run.images("val", images).to(base.device)
    mu, _ = base.model.encode(x)
    x_hat = base.model.decode(mu)
    residuals = residual_maps(loss_owner)  # pixel and the λ run's neural residual
    with torch.enable_grad():
        c_pixel, c_neural = (gauss_newton_weights(base.model.decode, residuals[name], x, mu)
                             .detach().double().cpu().numpy() for name in ("pixel", "neural"))
    neural_loss = loss_owner.neural_generator_loss  # the term the balancer weighs, as a batch mean
    m_pixel = per_sample_gradient_norm(pixel_sse, x, x_hat)
    m_neural = per_sample_gradient_norm(neural_loss, x, x_hat)
    lam = float(lam_metrics["config"]["loss"]["lam"])
    prediction = predict_change(c_pixel, c_neural, m_pixel, m_neural, lam, float(base_metrics["beta"]))
    measured_0, measured_lam = float(base_metrics["anisotropy"]), float(lam_metrics["anisotropy"])
    return {**prediction, "lam": lam, "m_pixel": m_pixel, "m_neural": m_neural,
            "measured_anisotropy_0": measured_0, "measured_anisotropy_lam": measured_lam,
            "measured_change": measured_lam / measured_0 - 1, "images": int(x.shape[0])}


def explained_fraction(measured: list[float], predicted: list[float]) -> float:
    """1 − Σ (measured − predicted)² / Σ measured²: against a baseline that predicts no change."""
    m, p = np.asarray(measured, dtype=np.float64), np.asarray(predicted, dtype=np.float64)
    baseline = float((m**2).sum())
    return 1 - float(((m - p) ** 2).sum()) / baseline if baseline > 0 else math.nan
