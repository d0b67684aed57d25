"""The protocol's stabilisers and controls: the weight average evaluations read, the PI form of GECO,
the balancer's combined-gradient norm and its norm-matched control, the window rule as the filter."""

import copy
import json
import math
from pathlib import Path

import pytest
import torch
from rd_train import from_dict
from rd_train.analysis.convergence import Rules, check
from rd_train.analysis.stationarity import WindowRule
from rd_train.config import RateConfig
from rd_train.training.ema import WeightAverage
from rd_train.training.module import VAEModule
from rd_train.training.rate import GECO, RAMP_LIMIT
from rd_train.training.run import fit, load_trained


def test_weight_average_is_the_exponential_average_and_leaves_the_model_alone():
    model = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    average = WeightAverage(model, decay=0.5)
    expected = torch.zeros(1, 2)
    for value in (4.0, 2.0, 8.0):
        with torch.no_grad():
            model.weight.fill_(value)
        average.update()
        expected = 0.5 * expected + 0.5 * value
    torch.testing.assert_close(average.averaged_model().weight, expected)
    assert float(model.weight.detach()[0, 0]) == 8.0  # the trained weights are never swapped
    restored = WeightAverage(torch.nn.Linear(2, 1, bias=False), decay=0.5)
    restored.load_state_dict(average.state_dict())
    torch.testing.assert_close(restored.averaged_model().weight, expected)
    with pytest.raises(ValueError, match="does not match"):
        WeightAverage(torch.nn.Linear(3, 1), 0.5).load_state_dict(average.state_dict())


def test_evaluations_read_the_average_and_training_is_unchanged_by_it(tiny, tmp_path):
    plain = fit(from_dict({**tiny(optim={"max_steps": 24}), "out_dir": str(tmp_path / "plain")}))
    averaged_config = from_dict({**tiny(optim={"max_steps": 24, "ema_decay": 0.9}),
                                 "out_dir": str(tmp_path / "ema")})
    averaged = fit(averaged_config)
    assert plain["evaluated_weights"] == "trained" and averaged["evaluated_weights"] == "ema"
    # Same training trajectory (the average only reads the weights) ...
    assert averaged["training_averages"] == plain["training_averages"]
    # ... but a different model evaluated.
    assert averaged["kl"] != pytest.approx(plain["kl"], rel=1e-6)
    # Loading a finished run for analysis gives the evaluated weights: its metrics again.
    saved = load_trained(averaged_config.out_dir, evaluated=False)
    assert saved.module.ema is not None and saved.evaluate()["kl"] == pytest.approx(averaged["kl"], rel=1e-6)
    evaluated = load_trained(averaged_config.out_dir)
    assert evaluated.module.ema is None
    assert evaluated.evaluate()["kl"] == pytest.approx(averaged["kl"], rel=1e-6)
    assert evaluated.metrics["kl"] == averaged["kl"]


def _geco(proportional: float, target: float = 10.0) -> GECO:
    return GECO(RateConfig(mode="geco", beta=0.032, target=target, warmup_steps=150, geco_step_size=0.05,
                           geco_ema_decay=0.95, geco_proportional=proportional), 3000)


def _tracking(geco: GECO, lag: float, steps: int = 3000) -> tuple[float, float]:
    """A model whose rate follows 0.8 / β^0.7 with a first-order lag of ``lag`` steps: (late half-range,
    late mean error), relative to the target."""
    kl, trace, finite = 30.0, [], torch.tensor(True)
    for step in range(steps):
        kl += (0.8 / float(geco.value(step)) ** 0.7 - kl) / lag
        geco.update(step, torch.tensor(kl), finite)
        trace.append(kl)
    late = trace[int(0.6 * steps):]
    return (max(late) - min(late)) / 2 / geco.target, abs(sum(late) / len(late) - geco.target) / geco.target


def test_pi_geco_damps_the_oscillation_integral_only_geco_keeps():
    swing_i, _ = _tracking(_geco(0.0), lag=300)
    swing_pi, error_pi = _tracking(_geco(3.0), lag=300)
    assert swing_i > 0.1  # the integral-only loop still swings by > 10 % of the target late in training
    assert swing_pi < 0.01 and error_pi < 0.01


def test_pi_geco_with_no_proportional_gain_is_the_integral_form_and_round_trips():
    geco, finite = _geco(0.0), torch.tensor(True)
    beta, ema_sum, weight = 0.032, 0.0, 0.0
    for step, kl in enumerate([12.0, 11.0] * 100):
        geco.update(step, torch.tensor(kl), finite)
        ema_sum, weight = 0.95 * ema_sum + kl, 0.95 * weight + 1
        if step >= 150:
            beta = min(max(beta * math.exp(0.05 * (ema_sum / weight - 10) / 10), 1e-4), 1e4)
    assert float(geco.beta) == pytest.approx(beta, rel=1e-12)
    pi = _geco(2.0)
    for step, kl in enumerate([12.0, 11.0] * 100):
        pi.update(step, torch.tensor(kl), finite)
    state = pi.state_dict()
    violation = (state["ema_sum"] / state["ema_weight"] - 10) / 10
    assert state["beta"] == pytest.approx(state["integral"] * math.exp(2.0 * violation), rel=1e-12)
    restored = _geco(2.0)
    restored.load_state_dict(state)
    assert restored.state_dict() == state


def _ramp_geco(ramp_gain: float, step_size: float, steps: int = 3000) -> GECO:
    return GECO(RateConfig(mode="geco", beta=0.032, target=10.0, warmup_steps=150, geco_step_size=step_size,
                           geco_ema_decay=0.95, geco_proportional=3.0, geco_proportional_limit=0.5,
                           geco_ramp_gain=ramp_gain, geco_ramp_start=0.3), steps)


def _drifting(geco: GECO, drift: float, lag: float = 100.0, steps: int = 3000) -> float:
    """A model whose rate follows exp(drift t) 0.8 / β^0.7 with a first-order lag of ``lag`` steps: the
    late mean error, relative to the target (signed)."""
    kl, trace, finite = 30.0, [], torch.tensor(True)
    for step in range(steps):
        kl += (math.exp(drift * step) * 0.8 / float(geco.value(step)) ** 0.7 - kl) / lag
        geco.update(step, torch.tensor(kl), finite)
        trace.append(kl)
    late = trace[int(0.8 * steps):]
    return sum(late) / len(late) / geco.target - 1


def test_the_ramp_term_removes_the_lag_error_a_drifting_rate_leaves():
    """A rate that climbs 0.05 % a step at fixed β: PI GECO ends above the target by about
    drift / (η K) (K = 0.7 here: 1.4 % at η = 0.05, 2.4 % at η = 0.03); with the ramp term the error goes
    and J holds the slope log β needs, drift / K. Without a drift, the ramp term changes no end point."""
    pi = _ramp_geco(0.0, 0.05)
    assert _drifting(pi, 0.0005) == pytest.approx(0.0005 / (0.05 * 0.7), rel=0.05)
    assert _drifting(_ramp_geco(0.0, 0.03), 0.0005) == pytest.approx(0.0005 / (0.03 * 0.7), rel=0.05)
    ramp = _ramp_geco(1e-4, 0.03)
    assert abs(_drifting(ramp, 0.0005)) < 0.001
    assert ramp.state_dict()["ramp"] == pytest.approx(0.0005 / 0.7, rel=0.02)
    assert abs(_drifting(_ramp_geco(1e-4, 0.03), 0.0)) < 0.001
    assert pi.state_dict()["ramp"] == 0.0  # gain 0: the PI controller, J never moves


def test_the_ramp_term_integrates_the_violation_from_its_start_bounded_and_reset_at_a_clamp():
    """J is 0 before geco_ramp_start (0.3 of 100 steps) and then sums η₂ ν, within ±RAMP_LIMIT; the
    integral moves by η ν + J each step; a clamped integral resets J. Fails if J starts early, is not
    added, is unbounded, or winds up at β_max."""
    geco, finite = _ramp_geco(0.001, 0.03, steps=100), torch.tensor(True)
    for step in range(30):
        geco.update(step, torch.tensor(12.0), finite)
    assert geco.state_dict()["ramp"] == 0.0  # warmup 150 > 30: the hold (and the start) not reached
    geco = GECO(RateConfig(mode="geco", beta=0.032, target=10.0, warmup_steps=10, geco_step_size=0.03,
                           geco_ema_decay=0.5, geco_ramp_gain=0.001, geco_ramp_start=0.3), 100)
    for step in range(30):  # the hold, then PI until step 30 = 0.3 x 100
        geco.update(step, torch.tensor(12.0), finite)
    before = geco.state_dict()
    assert before["ramp"] == 0.0
    geco.update(30, torch.tensor(12.0), finite)
    after = geco.state_dict()
    violation = 0.2  # the EMA sits at 12 after 30 equal steps
    assert after["ramp"] == pytest.approx(0.001 * violation, rel=1e-9)
    step_up = math.exp(0.03 * violation + 0.001 * violation)  # η ν + the new J
    assert after["integral"] == pytest.approx(before["integral"] * step_up, rel=1e-9)
    for step in range(31, 200):
        geco.update(step, torch.tensor(1000.0), finite)  # ν ≈ 99: J would pass 0.01 in one step
        assert abs(geco.state_dict()["ramp"]) <= RAMP_LIMIT
    assert geco.state_dict()["ramp"] == 0.0 and float(geco.beta) == 1e4  # at β_max: reset, no wind-up
    old = {k: v for k, v in before.items() if k != "ramp"}  # a checkpoint from before the ramp term
    restored = GECO(RateConfig(mode="geco", beta=0.032, target=10.0, geco_ramp_gain=0.001), 100)
    restored.load_state_dict(old)
    assert restored.state_dict()["ramp"] == 0.0 and restored.state_dict()["integral"] == before["integral"]


class _AgainstPixel(torch.nn.Module):
    """A 'neural' term whose gradient is exactly opposite to pixel SSE's: the balanced sum is shortest."""

    def forward(self, x, x_hat):
        return -(x_hat - x).pow(2).flatten(1).sum(1).mean()


@pytest.mark.parametrize("norm_match", [False, True])
def test_combined_gradient_norm_is_recorded_and_the_control_rescales_it(tiny, norm_match):
    config = tiny(loss={"neural": "lpips", "lam": 5.0, "norm_match": norm_match})
    module = VAEModule(from_dict(config).to_dict(), neural_loss=_AgainstPixel())
    x = torch.rand(8, 3, 16, 16) * 2 - 1
    out = module.objective(x, step=0)
    # First step: each term's norm EMA is its own norm, so the shares are 1/6 and 5/6, opposite.
    assert float(out.combined_norm) == pytest.approx(4 / 6, rel=1e-4)
    (g,) = torch.autograd.grad(out.surrogate, [out.x_hat])
    applied = (g * x.shape[0]).flatten(1).norm(dim=1).mean()
    assert float(applied) == pytest.approx(1.0 if norm_match else 4 / 6, rel=1e-4)


def test_pixel_alone_has_unit_combined_gradient_norm_in_a_finished_run(tiny):
    metrics = fit(from_dict(tiny(optim={"max_steps": 24})))
    for window in ("after_warmup", "second_half"):
        # n / n̄ per step: 1 up to the batch-to-batch change of the norm against its EMA
        assert metrics["training_averages"]["combined_gradient_norm"][window] == pytest.approx(1.0, abs=0.1)
    assert metrics["training_averages"]["discriminator_hinge"]["second_half"] is None  # no discriminator


def test_patchgan_run_reports_its_discriminator_hinge(tiny):
    metrics = fit(from_dict(tiny(loss={"neural": "patchgan", "lam": 1.0, "disc_channels": 8, "disc_layers": 1,
                                       "disc_lr_schedule": "cosine"}, optim={"max_steps": 16})))
    hinge = metrics["training_averages"]["discriminator_hinge"]["after_warmup"]
    assert hinge is not None and 0.0 <= hinge <= 4.0


def _params() -> dict:
    import yaml

    return yaml.safe_load((Path(__file__).resolve().parents[3] / "params.yaml").read_text())


def run_configs(params: dict, sweep: str, family: str, out: str) -> list:
    from rd_train.params import from_mapping

    return from_mapping(params, "params.yaml").run_configs(sweep, family, out)


def test_control_sweep_is_the_norm_matched_fixed_cells():
    params = _params()
    configs = run_configs(params, "control", "perceptual", "runs/control/perceptual")
    matched = params["sweep"]["norm_matched"]
    assert len(configs) == len(matched["lams"]) * len(matched["betas"]) * len(params["sweep"]["seeds"])
    assert all(c.loss.norm_match and c.rate.mode == "fixed" for c in configs)
    assert all(Path(c.out_dir).name.endswith(f"_normmatched_seed{c.seed}") for c in configs)
    fixed = {(c.loss.lam, c.rate.beta, c.seed): c for c in run_configs(params, "fixed", "perceptual", "x")}
    for c in configs:  # the same run as its fixed-β twin but for the rescaling
        twin = fixed[(c.loss.lam, c.rate.beta, c.seed)].to_dict()
        mine = c.to_dict()
        twin["loss"]["norm_match"], twin["out_dir"] = True, mine["out_dir"]
        assert mine["identity"] == {**twin["identity"], "sweep": "control"}  # who it is, not what it trains
        twin["identity"] = mine["identity"]
        assert mine == twin
    from rd_train.errors import ParamsError

    with pytest.raises(ParamsError, match="neural families only"):
        run_configs(params, "control", "pixel", "x")


def test_a_fixed_beta_run_is_the_same_run_whatever_gecos_keys_say_and_a_geco_run_is_not():
    """A change to GECO's settings (here the offset gain) must not retrain the fixed-β sweep: its configs
    keep every GECO key at its default, and a finished fixed-β run written under other GECO keys is the
    same run (`same_config`, by `TrainConfig.training_spec`). A GECO run with another gain is another run, and
    so is a fixed-β run at another β. It fails if the sweep copies the params' GECO keys into fixed-β
    configs, or if runs are compared as written."""
    from rd_train.config import GECO_KEYS, RateConfig
    from rd_train.training.run import same_config

    params = _params()
    assert {"geco_outer_gain", "geco_outer_start", "geco_tracks", "geco_step_size"} <= set(GECO_KEYS)
    other = {**params, "rate": {**params["rate"], "geco_outer_gain": 0.2, "geco_step_size": 0.3}}
    for sweep in ("fixed", "control"):
        configs = run_configs(params, sweep, "adversarial", "x")
        elsewise = run_configs(other, sweep, "adversarial", "x")
        assert [c.to_dict() for c in configs] == [c.to_dict() for c in elsewise]
        assert all(getattr(c.rate, key) == getattr(RateConfig(), key) for c in configs for key in GECO_KEYS)
    fixed = run_configs(params, "fixed", "adversarial", "x")[0]
    stored = fixed.to_dict()
    stored["rate"].update(geco_outer_gain=0.5, geco_tracks="heldout")  # as the v3 sweep's runs hold them
    assert same_config(stored, fixed)
    stored["rate"]["beta"] = 2 * fixed.rate.beta
    assert not same_config(stored, fixed)
    geco = run_configs(params, "geco", "adversarial", "x")[0]
    stored = geco.to_dict()
    stored["rate"]["geco_outer_gain"] = 1.0 - geco.rate.geco_outer_gain / 2
    assert not same_config(stored, geco)
    assert same_config(geco.to_dict(), geco)


def test_a_seed_fixes_initialisation_noise_and_batch_order_at_every_lambda_beta_and_target():
    import lightning as L

    params = _params()
    params["sweep"]["length_replicate"] = {"targets": [params["sweep"]["rate_targets"][0]], "steps_factor": 2}
    configs = [c for sweep in ("fixed", "geco", "length") for family in ("pixel", "perceptual", "adversarial")
               for c in run_configs(params, sweep, family, "x")]
    seed = params["sweep"]["seeds"][0]
    mine = [c for c in configs if c.seed == seed]
    assert len({json.dumps(c.to_dict()["data"], sort_keys=True) for c in mine}) == 1  # batch order
    assert len({json.dumps(c.to_dict()["model"], sort_keys=True) for c in mine}) == 1
    pixel, adversarial = mine[0], mine[-1]
    assert (pixel.loss.lam, adversarial.loss.neural) == (0.0, "patchgan")
    x = torch.zeros(4, 3, 16, 16)
    modules = []
    for c in (pixel, adversarial):
        L.seed_everything(c.seed, workers=True, verbose=False)  # what run.fit does before building
        modules.append(VAEModule(c.to_dict()))
    first, second = (list(m.model.parameters()) for m in modules)
    assert all(torch.equal(p, q) for p, q in zip(first, second, strict=True))  # initialisation
    for step in (0, 7, 1499):  # flips and posterior noise of a step
        (flip_a, eps_a), (flip_b, eps_b) = (m.draw_noise(x, step) for m in modules)
        assert torch.equal(flip_a, flip_b) and torch.equal(eps_a, eps_b)


def _history(values):
    return [[75 * (k + 1), kl, 100.0, aniso] for k, (kl, aniso) in enumerate(values)]


def test_the_window_rule_decides_when_params_choose_it():
    # A stationary oscillation ending on a swing: two points move 8 %, the fitted drift does not.
    values = [(10.0 + (0.8 if k % 4 == 1 else -0.8 if k % 4 == 3 else 0.0), 0.5) for k in range(20)]
    metrics = {"steps": 1500, "kl": values[-1][0], "anisotropy": 0.5, "distortion": {"pixel_sse": 100.0},
               "validation_history": _history(values), "config": {"rate": {"mode": "fixed", "target": None}}}
    metrics["kl"] = 10.8
    two_point = check(metrics, Rules())
    window = check(metrics, Rules(method="window"), WindowRule())
    assert not two_point.passed and window.passed
    drifting = dict(metrics, validation_history=_history([(10.0 + 0.1 * k, 0.5) for k in range(20)]))
    assert not check(drifting, Rules(method="window"), WindowRule()).passed
    with pytest.raises(ValueError, match="WindowRule"):
        check(metrics, Rules(method="window"))


@pytest.mark.parametrize("limit", [None, 0.5])
def test_the_proportional_part_acts_on_the_violation_bounded_by_its_limit(limit):
    """A bounded PI GECO: after the hold, with the training KL three times the target, log β moves by the
    integral's η ν plus κ_p × min(ν, L); unbounded (None), by κ_p × ν. It fails if the bound also
    clips the integral part, or is ignored."""
    geco = GECO(RateConfig(mode="geco", beta=0.032, target=10.0, warmup_steps=1, geco_step_size=0.05,
                           geco_ema_decay=0.95, geco_proportional=2.0, geco_proportional_limit=limit), 3000)
    finite = torch.tensor(True)
    geco.update(0, torch.tensor(30.0), finite)  # the hold: only the EMA moves
    geco.update(1, torch.tensor(30.0), finite)
    violation = 2.0  # (30 - 10) / 10
    acting = violation if limit is None else limit
    integral = float(geco.state_dict()["integral"])
    assert integral == pytest.approx(0.032 * math.exp(0.05 * violation), rel=1e-12)
    assert float(geco.beta) == pytest.approx(0.032 * math.exp(0.05 * violation + 2.0 * acting), rel=1e-12)


def test_a_proportional_limit_must_be_positive():
    from rd_train.errors import ConfigError

    with pytest.raises(ConfigError, match="geco_proportional_limit must be > 0"):
        from_dict({"rate": {"mode": "geco", "target": 5.0, "beta": 0.1, "geco_proportional_limit": 0.0}})


def test_geco_steers_the_weight_averages_kl_when_asked(tiny):
    """rate.geco_tracks: averaged feeds GECO the weight average's KL on the step's batch (its encoder,
    BatchNorm on the batch's statistics), not the trained model's. It fails if the trained model's KL
    is passed, or the average's is taken before the step's average update."""
    config = tiny(rate={"mode": "geco", "target": 5.0, "beta": 0.1, "geco_tracks": "averaged"},
                  optim={"ema_decay": 0.9, "max_steps": 4})
    module = VAEModule(from_dict(config).to_dict())
    module.manual_backward = lambda loss: loss.backward()
    optimizers, schedulers = module.configure_optimizers()
    seen = []
    original = module.rate.update
    module.rate.update = lambda step, kl, finite: seen.append(kl.clone()) or original(step, kl, finite)
    torch.manual_seed(3)
    batch = torch.rand(32, 3, 16, 16)
    for _ in range(2):
        result = module.train_step(batch, optimizers, schedulers)
    from rd_train.training.metrics import kl_per_sample

    average = module.ema.averaged_model().train()
    with torch.no_grad():
        expected = kl_per_sample(*average.encode(batch)).mean()
        trained = kl_per_sample(*module.model.train().encode(batch)).mean()
    assert float(seen[-1]) == pytest.approx(float(expected), rel=1e-6)
    assert abs(float(seen[-1]) - float(result.kl_mean)) > 1e-3 * float(result.kl_mean)
    assert abs(float(expected) - float(trained)) > 1e-3 * float(trained)


def test_steering_the_average_needs_one():
    from rd_train.errors import ConfigError

    with pytest.raises(ConfigError, match=r"rate\.geco_tracks=averaged steers the weight average's KL"):
        from_dict({"rate": {"mode": "geco", "target": 5.0, "beta": 0.1, "geco_tracks": "averaged"}})
    with pytest.raises(ConfigError, match=r"rate\.geco_offset_average=weights averages the KL as"):
        from_dict({"rate": {"mode": "geco", "target": 5.0, "beta": 0.1, "geco_offset_average": "weights"}})
    with pytest.raises(ConfigError, match=r"rate\.geco_offset_average must be one of \['geco_ema'"):
        from_dict({"rate": {"mode": "geco", "target": 5.0, "beta": 0.1, "geco_offset_average": "evaluated"}})
    with pytest.raises(ConfigError, match=r"rate\.geco_outer_terminal discounts what the weight average"):
        from_dict({"rate": {"mode": "geco", "target": 5.0, "beta": 0.1, "geco_outer_terminal": True}})


def held_out_tracking_module(tiny, tracks):
    """A GECO module reading a held-out batch (``rate.geco_tracks``: ``tracks``), its optimisers and
    schedulers, with 70 held-out images: two whole batches of 32, and 6 left over."""
    config = tiny(rate={"mode": "geco", "target": 5.0, "beta": 0.1, "geco_tracks": tracks},
                  optim={"ema_decay": 0.9, "max_steps": 8})
    module = VAEModule(from_dict(config).to_dict())
    module.manual_backward = lambda loss: loss.backward()
    optimizers, schedulers = module.configure_optimizers()
    torch.manual_seed(5)
    module.tracking_images = torch.rand(70, 3, 16, 16) * 2 - 1
    return module, optimizers, schedulers


def test_geco_steers_the_averages_kl_on_the_held_out_batch_of_the_step(tiny):
    """rate.geco_tracks: heldout feeds GECO the weight average's KL on the step's batch of the held-out
    images, cycled in order, encoded in eval mode with BatchNorm statistics just moved by the training
    batch (what an evaluation does after recalibrating). It fails if the training batch, another slice,
    or the held-out batch's own statistics are read."""
    module, optimizers, schedulers = held_out_tracking_module(tiny, "heldout")
    seen = []
    original = module.rate.update
    module.rate.update = lambda step, kl, finite: seen.append(kl.clone()) or original(step, kl, finite)
    batch = torch.rand(32, 3, 16, 16)
    from rd_train.training.metrics import kl_per_sample

    for step in range(3):
        module.train_step(batch, optimizers, schedulers)
        held_out = module.tracking_images[(step % 2) * 32:(step % 2 + 1) * 32]
        with torch.no_grad():
            average = module.ema.averaged_model()
            expected = kl_per_sample(*average.eval().encode(held_out)).mean()  # the step's statistics
            own_statistics = kl_per_sample(*average.train().encode(held_out)).mean()
        assert float(seen[-1]) == pytest.approx(float(expected), rel=1e-6), step
        assert float(seen[-1]) != pytest.approx(float(own_statistics), rel=1e-3), step


def test_the_held_out_images_gecos_reads_are_the_validation_split_shuffled_by_the_seed(tiny):
    from rd_train.training.run import data_module, first_images, tracking_images

    config = from_dict(tiny(rate={"mode": "geco", "target": 5.0, "beta": 0.1, "geco_tracks": "heldout"},
                            optim={"ema_decay": 0.9}))
    data = data_module(config)
    images, val = tracking_images(data, config), first_images(data, "val")
    assert images.shape == val.shape and not torch.equal(images, val)
    assert torch.equal(images.sum((1, 2, 3)).sort().values, val.sum((1, 2, 3)).sort().values)
    assert torch.equal(images, tracking_images(data, config))  # the same order every time
    assert tracking_images(data, from_dict(tiny())) is None


def test_the_held_out_loop_skips_the_statistics_pass_only_where_it_changes_nothing(tiny):
    """The AutoencoderKL has no BatchNorm: the training-mode pass that moves BatchNorm's statistics would
    change nothing there, so the held-out loop skips it, and its KL is the one the pass would have given.
    The vector VAE has BatchNorm and keeps the pass (the held-out test above)."""
    rate = {"mode": "geco", "target": 5.0, "beta": 0.1, "geco_tracks": "heldout"}
    spatial = VAEModule(from_dict(tiny(model={"kind": "spatial", "block_out_channels": [8, 16],
                                              "norm_num_groups": 4, "latent_channels": 2},
                                       rate=rate, optim={"ema_decay": 0.9})).to_dict())
    vector = VAEModule(from_dict(tiny(rate=rate, optim={"ema_decay": 0.9})).to_dict())
    assert not spatial.tracked_kl._averaged_has_batch_norm and vector.tracked_kl._averaged_has_batch_norm
    torch.manual_seed(7)
    batch, held_out = torch.rand(8, 3, 16, 16), torch.rand(8, 3, 16, 16)
    skipped = spatial.tracked_kl.averaged_kl(held_out, statistics=batch)
    model = spatial.ema.averaged_model()
    from rd_train.training.metrics import kl_per_sample

    with torch.no_grad():
        model.train()
        model.encode(batch)
        model.eval()
        with_pass = kl_per_sample(*model.encode(held_out)).mean()
    assert torch.equal(skipped, with_pass.float())


def test_geco_steers_the_trained_weights_kl_on_the_held_out_batch_of_the_step(tiny):
    """rate.geco_tracks: trained_heldout feeds GECO the trained weights' KL (after the step's update) on the
    step's batch of the held-out images, cycled in order, encoded in eval mode with the running BatchNorm
    statistics the training steps keep; reading it moves no statistics. It fails if the weight average,
    the training batch, another slice or the held-out batch's own statistics are read, or if the reading
    changes the model's buffers."""
    module, optimizers, schedulers = held_out_tracking_module(tiny, "trained_heldout")
    seen, moved = [], []
    reading = module.tracked_kl

    def read(step, batch, trained_kl):  # the buffers just before and after GECO's reading
        before = [b.clone() for b in module.model.buffers()]
        kl = reading(step, batch, trained_kl)
        moved.append(not all(torch.equal(a, b) for a, b in zip(before, module.model.buffers(), strict=True)))
        seen.append(kl.clone())
        return kl

    module.tracked_kl = read
    batch = torch.rand(32, 3, 16, 16)
    from rd_train.training.metrics import kl_per_sample

    for step in range(3):
        before = [b.clone() for b in module.model.buffers()]
        module.train_step(batch, optimizers, schedulers)
        assert module.model.training  # the reading puts the mode back
        assert not moved[-1], step  # the reading moved no statistics
        assert not all(torch.equal(a, b) for a, b in zip(before, module.model.buffers(), strict=True)), step
        held_out = reading.images[(step % 2) * 32:(step % 2 + 1) * 32]
        state = copy.deepcopy(module.model.state_dict())
        with torch.no_grad():
            expected = kl_per_sample(*module.model.eval().encode(held_out)).mean()
            own_statistics = kl_per_sample(*module.model.train().encode(held_out)).mean()
            module.model.load_state_dict(state)  # undo the train-mode pass
            average = kl_per_sample(*module.ema.averaged_model().eval().encode(held_out)).mean()
            training_batch = kl_per_sample(*module.model.eval().encode(batch)).mean()
        assert float(seen[-1]) == pytest.approx(float(expected), rel=1e-6), step
        for other in (own_statistics, average, training_batch):
            assert float(seen[-1]) != pytest.approx(float(other), rel=1e-3), step
        module.model.train()


def test_steering_the_trained_weights_on_held_out_images_needs_no_weight_average(tiny):
    config = from_dict(tiny(rate={"mode": "geco", "target": 5.0, "beta": 0.1,
                                  "geco_tracks": "trained_heldout"}))
    assert config.optim.ema_decay == 0 and config.rate.tracked == "trained_heldout"
