"""rd_train.diffusability: distances with known answers, the sampler on a known distribution, the
verdict rules on planted trends, the stage's resume, and the params' validation."""

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from rd_train.diffusability import (
    kid,
    mmd_rbf,
    precision_recall,
    sample_flow,
    sliced_wasserstein,
    train_flow,
)
from rd_train.errors import ParamsError
from rd_train.params.sections import DiffusabilityConfig, FlowConfig


def gaussian(n, d, seed, shift=0.0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64) * scale + shift


def test_sliced_wasserstein_is_near_zero_for_one_distribution_and_matches_known_shifts():
    d = 4
    same = sliced_wasserstein(gaussian(4000, d, 0), gaussian(4000, d, 1), projections=512)
    assert same < 0.08  # finite-sample noise of the quantiles: the estimator's floor at n = 4000
    shift = torch.tensor([2.0, 0.0, 0.0, 0.0], dtype=torch.float64)
    shifted = sliced_wasserstein(gaussian(4000, d, 0), gaussian(4000, d, 1, shift=shift), projections=2000)
    assert shifted**2 == pytest.approx(4.0 / d, rel=0.08)  # SW² = |m|² / d
    assert same < 0.1 * shifted
    scaled = sliced_wasserstein(gaussian(4000, d, 0), gaussian(4000, d, 1, scale=1.5), projections=512)
    assert scaled == pytest.approx(0.5, rel=0.08)  # each projection: N(0, 1) vs N(0, 1.5²)
    values = [
        sliced_wasserstein(gaussian(2000, d, 0), gaussian(2000, d, 1, shift=s)) for s in (0.0, 0.5, 1.0, 2.0)
    ]
    assert values == sorted(values)
    unequal = sliced_wasserstein(gaussian(3000, d, 0), gaussian(1000, d, 1, shift=shift), projections=2000)
    assert unequal**2 == pytest.approx(1.0, rel=0.12)


def test_mmd_is_near_zero_for_one_distribution_and_grows_with_shift_and_scale():
    base = gaussian(1000, 3, 0)
    assert abs(mmd_rbf(base, gaussian(1000, 3, 1))) < 0.01
    shifts = [mmd_rbf(base, gaussian(1000, 3, 1, shift=s)) for s in (0.25, 0.5, 1.0)]
    scales = [mmd_rbf(base, gaussian(1000, 3, 1, scale=s)) for s in (1.25, 1.5, 2.0)]
    assert shifts == sorted(shifts) and scales == sorted(scales)
    assert shifts[0] > 0.01 and scales[0] > 0.01


def test_kid_matches_a_hand_computed_value():
    x = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    y = np.array([[0.5, 0.5], [2.0, 0.0]])

    def k(a, b):
        return (a @ b / 2 + 1) ** 3

    xx = sum(k(x[i], x[j]) for i in range(3) for j in range(3) if i != j) / 6
    yy = sum(k(y[i], y[j]) for i in range(2) for j in range(2) if i != j) / 2
    xy = sum(k(a, b) for a in x for b in y) / 6
    assert kid(x, y) == pytest.approx(xx + yy - 2 * xy, rel=1e-12)
    assert abs(kid(gaussian(800, 8, 0), gaussian(800, 8, 1), subset_size=400, subsets=20)) < 0.05
    assert kid(gaussian(800, 8, 0), gaussian(800, 8, 1, shift=1.0)) > 1.0


def test_precision_recall_on_known_cases():
    real = gaussian(300, 2, 0)
    assert precision_recall(real, real.clone()) == (1.0, 1.0)
    far = gaussian(300, 2, 1, shift=100.0)
    assert precision_recall(real, far) == (0.0, 0.0)
    collapsed = gaussian(300, 2, 2, scale=0.05)  # generated: a point mass at the mode
    precision, recall = precision_recall(real, collapsed)
    assert precision > 0.95 and recall < 0.2  # every sample is realistic, little of the data is covered


def mixture(n, seed):
    """Four well-separated Gaussians in 2-d, standardised by construction (known answer)."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[-1.0, -1.0], [-1.0, 1.0], [1.0, -1.0], [1.0, 1.0]])
    which = torch.randint(4, (n,), generator=g)
    return centres[which] + 0.15 * torch.randn(n, 2, generator=g)


def test_the_sampler_beats_a_fitted_gaussian_on_a_mixture_and_approaches_the_floor():
    torch.set_num_threads(1)
    train, held, data_floor = mixture(4000, 0), mixture(1000, 1), mixture(1000, 2)
    flow = train_flow(
        train, FlowConfig(width=64, depth=3, steps=800, batch_size=256, lr=2e-3, ema_decay=0.99)
    )
    samples = sample_flow(flow.model, 1000, (2,), steps=16)
    mean, cov = train.double().mean(0), torch.cov(train.double().T)
    fitted = torch.distributions.MultivariateNormal(mean, cov).sample((1000,))
    sw = {
        name: sliced_wasserstein(x, held)
        for name, x in (("flow", samples), ("gaussian", fitted), ("floor", data_floor))
    }
    mmd = {
        name: mmd_rbf(x, held) for name, x in (("flow", samples), ("gaussian", fitted), ("floor", data_floor))
    }
    assert sw["flow"] < 0.5 * sw["gaussian"] and mmd["flow"] < 0.3 * mmd["gaussian"]
    assert sw["flow"] < sw["floor"] + 0.5 * (sw["gaussian"] - sw["floor"])


def test_the_sampler_is_seeded():
    data = mixture(500, 0)
    config = FlowConfig(width=16, depth=2, steps=30, batch_size=64)
    a = sample_flow(train_flow(data, config).model, 50, (2,), 4)
    b = sample_flow(train_flow(data, config).model, 50, (2,), 4)
    assert torch.equal(a, b)


def test_the_conv_sampler_runs_on_spatial_latents():
    data = torch.randn(64, 4, 4, 4)
    flow = train_flow(data, FlowConfig(width=16, depth=2, steps=5, batch_size=16))
    assert sample_flow(flow.model, 8, (4, 4, 4), 2).shape == (8, 4, 4, 4)


def test_params_are_validated_by_name():
    with pytest.raises(ParamsError, match="unknown key"):
        DiffusabilityConfig.from_params({"diffusability": {"sample": 10}})
    with pytest.raises(ParamsError, match="spaces"):
        DiffusabilityConfig.from_params({"diffusability": {"spaces": ["inception"]}})
    with pytest.raises(ParamsError, match="flow"):
        DiffusabilityConfig.from_params({"diffusability": {"flow": {"steps": 0}}})
    assert DiffusabilityConfig.from_params({}).samples == 1024


def planted(trend: float, seeds=(0, 1, 2), converged=lambda lam, seed: True):
    """GECO-like records whose latent SW falls (trend > 0) with λ in {0, 1, 5}; excess KID flat."""
    rng = np.random.default_rng(0)
    rows = []
    for lam, family in ((0.0, "pixel"), (1.0, "perceptual"), (5.0, "perceptual")):
        for seed in seeds:
            rows.append(
                {
                    "run": f"{family}_{lam}_{seed}",
                    "family": family,
                    "lam": lam,
                    "target": 10.0,
                    "seed": seed,
                    "converged": converged(lam, seed),
                    "reason": "",
                    "endpoints": {
                        "latent_sw": 1.0 - trend * lam / 5 + 0.01 * rng.normal(),
                        "excess_kid": 0.5 + 0.3 * rng.normal(),
                    },
                    "geometry": {
                        "anisotropy": 0.5 - 0.05 * lam + 0.01 * rng.normal(),
                        "active_units": 16,
                        "aggregate_kl": 1.0 + rng.normal() * 0.1,
                        "participation_ratio": 10 + rng.normal(),
                    },
                }
            )
    return rows


def test_verdicts_find_a_planted_trend_and_leave_noise_unresolved():
    from rd_train.diffusability.summary import verdicts

    rows = planted(0.5)
    out = verdicts(
        rows, ["perceptual"], {"perceptual": [0.0, 1.0, 5.0]}, [10.0], ("latent_sw", "excess_kid"), 0.05, 0.95
    )
    by = {t["endpoint"]: t for t in out["converged"]}
    assert by["latent_sw"]["verdict"] == "improves"
    assert by["latent_sw"]["p_holm"] == pytest.approx(min(1.0, 2 * by["latent_sw"]["p"]))  # Holm over 2
    assert by["latent_sw"]["effect"]["value"] == pytest.approx(
        np.mean([r["endpoints"]["latent_sw"] for r in rows if r["lam"] == 5])
        / np.mean([r["endpoints"]["latent_sw"] for r in rows if r["lam"] == 0])
        - 1
    )
    assert by["excess_kid"]["verdict"].startswith("not resolved")
    rising = verdicts(
        planted(-0.5), ["perceptual"], {"perceptual": [0.0, 1.0, 5.0]}, [10.0], ("latent_sw",), 0.05, 0.95
    )
    assert rising["converged"][0]["verdict"] == "worsens"


def test_the_unfiltered_verdict_uses_every_run():
    from rd_train.diffusability.summary import verdicts

    rows = planted(0.5, converged=lambda lam, seed: lam == 0 or seed == 0)
    out = verdicts(rows, ["perceptual"], {"perceptual": [0.0, 1.0, 5.0]}, [10.0], ("latent_sw",), 0.05, 0.95)
    assert out["converged"][0]["n"] == [3, 1, 1] and out["all"][0]["n"] == [3, 3, 3]


def test_every_run_is_the_primary_analysis_and_the_window_rule_a_sensitivity():
    """Protocol v3: the per-cell means and the first verdicts read every run; the runs within the window
    rule come second, labelled as the sensitivity they are."""
    from rd_train.diffusability.report import WHICH
    from rd_train.diffusability.summary import FILTERS, cells

    assert FILTERS[0] == "all" and "sensitivity" in WHICH["converged"]
    rows = planted(0.5, converged=lambda lam, seed: seed == 0)
    for r in rows:  # what cells() also reads of a scored run
        r["latent"] = {"generated": {"sw": r["endpoints"]["latent_sw"], "mmd": 0.1},
                       "gaussian": {"sw": 1.0, "mmd": 0.2}, "data": {"sw": 0.5, "mmd": 0.0}}
        r["flow"] = {"held_out_loss": 1.0}
    by = {c["lam"]: c for c in cells(rows, ["perceptual"], {"perceptual": [0.0, 1.0, 5.0]}, [10.0], 0.95)}
    assert (by[5.0]["runs"], by[5.0]["converged"], by[5.0]["latent_sw"]["n"]) == (3, 1, 3)
    # latent SW is a distance (> 0): its cell is the geometric mean of every run, its interval in log.
    assert by[5.0]["latent_sw"]["mean"] == pytest.approx(
        np.exp(np.mean(np.log([r["endpoints"]["latent_sw"] for r in rows if r["lam"] == 5.0]))))
    assert by[5.0]["latent_sw"]["low"] > 0


def test_the_stage_resumes_and_recomputes_only_what_changed(tmp_path, monkeypatch):
    from rd_train.diffusability import stage

    runs = []
    for name in ("a", "b"):
        run = tmp_path / "runs" / name
        run.mkdir(parents=True)
        (run / "metrics.json").write_text(json.dumps({"kl": 1.0}))
        runs.append(run)
    calls = []

    def fake(args):
        calls.append(args[0])
        return {
            "endpoints": {"latent_sw": 0.1, "excess_kid": 0.2},
            "geometry": {"anisotropy": 0.3},
            "seconds": 0.0,
        }

    monkeypatch.setattr(stage, "_score", fake)
    config, out = DiffusabilityConfig(), tmp_path / "out"
    stream = SimpleNamespace(write=lambda s: None, flush=lambda: None)
    stage.score_all(runs, config, out, jobs=1, stream=stream)
    assert len(calls) == 2
    stage.score_all(runs, config, out, jobs=1, stream=stream)
    assert len(calls) == 2  # both reused
    (runs[1] / "metrics.json").write_text(json.dumps({"kl": 2.0}))
    results = stage.score_all(runs, config, out, jobs=1, stream=stream)
    assert calls[2:] == [str(runs[1])] and set(results) == {"a", "b"}
    assert math.isfinite(results["a"]["endpoints"]["latent_sw"])
