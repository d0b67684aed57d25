r"""The toy model's mechanism tested on trained VAEs: predict each posterior's variance profile from its
decoder's effective distortion weights, and compare with what the encoder does.

For a finished run, on ``n_images`` validation images, at the encoder's posterior mean μ:

    c_i = Σ_k σ_k c_i^k,     c_i^k = ||J_{r_k} J_dec e_i||²                     (Gauss–Newton weights)

over the reconstruction terms of the run's per-sample objective (module.py): pixel SSE (r = x̂ - x) and
the neural term, σ_k = s_k / B the balancer's per-sample weights at the end of training. For PatchGAN
only the discriminator feature-matching part of the generator loss is a distance and enters c (its
score term has no residual form); VGG16 (HED) features enter whole. Then the toy model's optimum
(`rd_theory.toy`, σ_i² = β / (β + 2 c_i), β the run's final KL weight) is the prediction:

* per sample, Spearman ρ between predicted and measured log σ²_i over coordinates, averaged;
* per sample, predicted anisotropy Var_i log σ²_pred beside the measured Var_i log σ²;
* the spread of the prices, Var_i log c_i.

Vector latents only: every run of the default and GPU profiles has vector latents
(`curvature.channel_weights` handles spatial ones per channel).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import stats

from rd_train.mechanism.curvature import gauss_newton_weights, predicted_variances


def residual_maps(module: Any) -> dict[str, Any]:
    """Loss name -> residual map r(x, x̂) of that reconstruction term (d = ||r||² per sample)."""
    maps: dict[str, Any] = {"pixel": lambda x, x_hat: (x_hat - x).flatten(1)}
    if module.neural is not None:
        maps["neural"] = (
            module.neural.feature_matching_residual if module.adversarial else module.neural.residual
        )
    return maps


@torch.no_grad()
def run_prices(
    module: Any, images: torch.Tensor, beta: float, sample_weights: dict[str, float]
) -> dict[str, Any]:
    """Per-run summary (means over the images) and per-image arrays (lists) of the comparison."""
    module.eval()
    mu, logvar = module.model.encode(images)
    if mu.dim() != 2:
        raise ValueError(f"run_prices handles vector latents, got latents of shape {tuple(mu.shape)}")
    prices = torch.zeros_like(mu, dtype=torch.float64)
    per_term = {}
    with torch.enable_grad():  # forward-mode AD only, but the modules' no_grad contexts stay as they are
        for name, residual in residual_maps(module).items():
            c = gauss_newton_weights(module.model.decode, residual, images, mu).double()
            per_term[name] = c
            prices += sample_weights[name] * c
    weights = prices.clamp_min(1e-30).cpu().numpy()
    measured = logvar.double().cpu().numpy()
    predicted = np.log(predicted_variances(weights, beta))
    rho = np.array([stats.spearmanr(p, m).statistic for p, m in zip(predicted, measured, strict=True)])
    log_c = np.log(weights)
    return {
        "beta": beta,
        "sample_weights": sample_weights,
        "spearman_rho": float(np.nanmean(rho)),
        "spearman_rho_defined": int(np.isfinite(rho).sum()),
        "predicted_anisotropy": float(predicted.var(axis=1).mean()),
        "measured_anisotropy": float(measured.var(axis=1).mean()),
        "log_price_spread": float(log_c.var(axis=1).mean()),
        "predicted_mean_log_variance": float(predicted.mean()),
        "measured_mean_log_variance": float(measured.mean()),
        "price_share_neural": float(
            (sample_weights.get("neural", 0.0) * per_term["neural"]).sum() / prices.sum()
        )
        if "neural" in per_term
        else 0.0,
        "sorted_log_prices": np.sort(log_c, axis=1)[:, ::-1].mean(axis=0).tolist(),
        "images": int(images.shape[0]),
    }


def analyse_run(run_dir: Path, images: int) -> dict[str, Any]:
    """`run_prices` of a finished run (`load_trained`: weights only, BatchNorm recalibrated as its final
    evaluation did) on its first ``images`` validation images."""
    from rd_train.training.run import load_trained

    run = load_trained(run_dir, device="cuda" if torch.cuda.is_available() else "cpu")
    module = run.module
    return run_prices(module, run.images("val", images).to(module.device), float(run.metrics["beta"]),
                      run.metrics["balancer"]["sample_weight"])
