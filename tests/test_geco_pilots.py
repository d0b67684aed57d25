"""The GECO tracking pilots' rules (benchmarks/geco_*_pilot.py), as written in their docstrings before they
ran, the runs they narrow the params to, and the fixed-β diagnostic's runs and measures."""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import fixed_beta_wander  # noqa: E402
import geco_average_pilot  # noqa: E402
import geco_pi_pilot  # noqa: E402
import geco_ramp_pilot  # noqa: E402
import geco_trained_heldout_gain_pilot  # noqa: E402
import geco_trained_heldout_pilot  # noqa: E402
from geco_tracking_runs import as_the_pilots_read_it, narrowed  # noqa: E402


def project_params() -> dict:
    """params.yaml as the pilots start from it (`as_the_pilots_read_it`), without bench_params' check that the
    embedded data is built (a fresh clone's CI has not built it, and narrowing reads no data)."""
    from rd_train.params import load_params

    return as_the_pilots_read_it(dict(load_params(ROOT / "params.yaml").raw))


def test_the_gain_pilot_takes_the_smallest_passing_gain_else_the_smallest_worst_error():
    assert geco_pi_pilot.choose({0.0: [0.01, 0.2], 1.0: [0.02, -0.025], 3.0: [0.0, 0.01]}) == 1.0
    assert geco_pi_pilot.choose({0.0: [0.21, 0.01], 1.0: [-0.19], 3.0: [0.166]}) == 3.0


def test_the_average_pilot_takes_the_first_passing_candidate_in_its_order_else_the_smallest_worst_error():
    assert geco_average_pilot.choose({"trained": [0.029], "averaged": [0.001], "averaged-0.02": [0.0]}) \
        == "trained"
    assert geco_average_pilot.choose({"trained": [0.2], "averaged": [-0.05], "averaged-0.02": [0.02]}) \
        == "averaged-0.02"
    assert geco_average_pilot.choose({"trained": [0.2], "averaged": [0.05], "averaged-0.02": [-0.05]}) \
        == "averaged"  # a tie goes to the earlier


def test_the_average_pilots_first_candidate_is_the_first_pilots_runs():
    """Its first candidate must be the same configs as the gain pilot's κ_p = 3 runs, which it reuses:
    no geco_tracks key, the same gain, bound and step size."""
    base = project_params()
    first = narrowed(base, geco_average_pilot.candidate_rate("trained", 0.05))
    gain = narrowed(base, {"geco_proportional": 3.0, "geco_proportional_limit": geco_pi_pilot.LIMIT})
    assert first == gain and "geco_tracks" not in first["rate"]
    averaged = narrowed(base, geco_average_pilot.candidate_rate("averaged", 0.02))
    assert averaged["rate"]["geco_tracks"] == "averaged" and averaged["rate"]["geco_step_size"] == 0.02


def test_the_pilots_run_the_largest_lambda_at_the_extreme_targets_on_seeds_outside_the_sweep():
    base = project_params()
    params = narrowed(base, {})
    sweep, spatial = params["sweep"], params["spatial"]
    assert sweep["lams"] == [max(base["sweep"]["lams"])]
    assert sweep["rate_targets"] == [min(base["sweep"]["rate_targets"]), max(base["sweep"]["rate_targets"])]
    assert spatial["lams"] == [max(base["spatial"]["lams"])] and spatial["betas"] == []
    assert not set(sweep["seeds"]) & set(base["sweep"]["seeds"])
    assert not set(spatial["seeds"]) & set(base["spatial"]["seeds"])


def test_the_held_out_pilot_compares_the_second_pilots_choice_with_the_same_gecos_held_out_loop():
    import geco_heldout_pilot

    (first, kept), (second, held_out) = geco_heldout_pilot.candidates({"chosen": "averaged-0.02"})
    assert first == "averaged-0.02" and kept == geco_average_pilot.candidate_rate("averaged", 0.02)
    assert second == "heldout" and held_out == {**kept, "geco_tracks": "heldout"}
    order = ["averaged-0.02", "heldout"]
    assert geco_heldout_pilot.choose({"averaged-0.02": [0.02], "heldout": [0.01]}, order) == "averaged-0.02"
    assert geco_heldout_pilot.choose({"averaged-0.02": [0.08], "heldout": [-0.04]}, order) == "heldout"


def test_the_gain_pilot_for_the_held_out_loop_starts_from_the_held_out_pilots_choice():
    import geco_heldout_gain_pilot
    import geco_heldout_pilot

    (first, chosen), (second, slower) = geco_heldout_gain_pilot.candidates()
    held_out = dict(geco_heldout_pilot.candidates({"chosen": "averaged"}))["heldout"]
    assert (first, chosen) == ("heldout", held_out)
    assert second == "heldout-0.02" and slower == {**held_out, "geco_step_size": 0.02}


def test_the_pilots_start_from_the_schema_defaults_of_the_keys_they_choose():
    """params.yaml now runs the chosen GECO; a pilot's candidate must still be its own configuration (κ_p = 0
    is integral-only GECO on the trained weights' KL), not the adopted keys with one of them changed."""
    base = project_params()
    assert base["rate"]["geco_tracks"] == "heldout"  # the adopted choice the pilots must not inherit
    integral = narrowed(base, {"geco_proportional": 0.0, "geco_proportional_limit": geco_pi_pilot.LIMIT})
    assert "geco_tracks" not in integral["rate"] and integral["rate"]["geco_proportional"] == 0.0
    heldout = narrowed(base, geco_average_pilot.candidate_rate("heldout", 0.05))
    assert heldout["rate"]["geco_tracks"] == "heldout" and heldout["rate"]["geco_proportional"] == 3.0


def test_the_trained_heldout_pilot_takes_the_fewest_misses_then_the_smallest_worst_then_the_default():
    choose = geco_trained_heldout_pilot.choose_fewest_misses
    order = ["heldout", "trained_heldout"]
    assert choose({"heldout": [0.01, 0.08], "trained_heldout": [0.029, -0.029]}, order) == "trained_heldout"
    assert choose({"heldout": [0.04, 0.01], "trained_heldout": [0.05, 0.2]}, order) == "heldout"  # fewer
    assert choose({"heldout": [0.05, 0.0], "trained_heldout": [0.04, 0.0]}, order) == "trained_heldout"
    assert choose({"heldout": [0.0, 0.02], "trained_heldout": [0.02, 0.0]}, order) == "heldout"  # a tie


def test_the_trained_heldout_pilot_differs_from_the_default_only_in_whose_kl_it_reads():
    base = project_params()
    (first, default), (second, trained) = geco_trained_heldout_pilot.candidates(base)
    assert (first, second) == ("heldout", "trained_heldout")
    assert {k: v for k, v in trained.items() if k != "geco_tracks"} == \
        {k: v for k, v in default.items() if k != "geco_tracks"}
    params = geco_trained_heldout_pilot.narrow(base, default)
    assert params["rate"] == base["rate"]  # the default candidate is the sweep's GECO
    assert params["sweep"]["lams"] == [5.0] and params["sweep"]["rate_targets"] == [5.0, 10.0, 20.0]
    assert params["sweep"]["seeds"] == params["spatial"]["seeds"] == [96, 97, 98, 99]
    assert params["spatial"]["betas"] == [] and params["spatial"]["lams"] == [5.0]
    assert geco_trained_heldout_pilot.narrow(base, trained)["rate"]["geco_tracks"] == "trained_heldout"


def test_the_ramp_pilot_differs_from_the_default_only_in_the_integral_gain_and_the_ramp_term():
    """Its default candidate is the sweep's GECO on the trained-heldout pilot's runs (so they are reused);
    its second adds the ramp term and lowers η, as the loop model's candidate does."""
    base = project_params()
    (first, default), (second, ramp) = geco_ramp_pilot.candidates(base)
    assert (first, second) == ("default", "ramp")
    assert ramp == {**default, "geco_step_size": 0.03, "geco_ramp_gain": 1e-4, "geco_ramp_start": 0.3}
    assert geco_ramp_pilot.narrow(base, default) == geco_trained_heldout_pilot.narrow(
        base, geco_trained_heldout_pilot.candidates(base)[0][1])
    narrowed_ramp = geco_ramp_pilot.narrow(base, ramp)["rate"]
    assert {k: v for k, v in narrowed_ramp.items() if k not in ramp} == \
        {k: v for k, v in base["rate"].items() if k not in ramp}
    assert narrowed_ramp["geco_step_size"] == 0.03 and narrowed_ramp["geco_ramp_gain"] == 1e-4
    assert geco_ramp_pilot.choose_fewest_misses is geco_trained_heldout_pilot.choose_fewest_misses


def test_the_trained_heldout_gain_pilot_differs_from_the_default_in_whose_kl_it_reads_and_its_step():
    """Its default is the sweep's GECO on the trained-heldout pilot's runs and seeds; its candidate reads the
    trained weights with twice the integral step; the rule is that pilot's (fewest misses, then the smaller
    worst, then the default)."""
    base = project_params()
    (first, default), (second, candidate) = geco_trained_heldout_gain_pilot.candidates(base)
    assert (first, second) == ("heldout", "trained_heldout_0.1")
    assert default == {k: base["rate"][k] for k in ("geco_proportional", "geco_proportional_limit",
                                                    "geco_tracks", "geco_step_size")}
    assert candidate == {**default, "geco_tracks": "trained_heldout", "geco_step_size": 0.1}
    assert default["geco_step_size"] == 0.05  # twice the default's step
    narrow = geco_trained_heldout_gain_pilot.narrow
    assert narrow(base, default) == geco_trained_heldout_pilot.narrow(
        base, geco_trained_heldout_pilot.candidates(base)[0][1])
    narrowed_candidate = narrow(base, candidate)["rate"]
    assert {k: v for k, v in narrowed_candidate.items() if k not in candidate} == \
        {k: v for k, v in base["rate"].items() if k not in candidate}
    rule = geco_trained_heldout_gain_pilot.choose_fewest_misses
    assert rule is geco_trained_heldout_pilot.choose_fewest_misses
    assert not set(geco_trained_heldout_gain_pilot.SEEDS) & {*base["sweep"]["seeds"], 90, 91, 92, 93}


def test_the_fixed_beta_diagnostic_trains_patchgan_at_the_largest_lambda_and_measures_relative_movement():
    """Its runs: the fixed-β sweep at λ = 5, β 0.004 and 0.008, the pilots' seeds. Its measures: a KL
    that falls from 20 to 10 and climbs back to 15 ranges over 10 / mean of the second half, and drifts
    by the least-squares change over the last 40 % relative to that window's mean."""
    params = fixed_beta_wander.narrow(project_params())
    assert params["sweep"]["lams"] == [5.0] and params["sweep"]["betas"] == [0.004, 0.008]
    assert params["sweep"]["seeds"] == [96, 97, 98, 99]
    steps = [100.0 * i for i in range(1, 11)]
    kl = [20.0, 18.0, 16.0, 14.0, 12.0, 10.0, 11.0, 12.0, 13.0, 15.0]
    history = [[s, k, 0.0, 0.0] for s, k in zip(steps, kl, strict=True)]
    row = fixed_beta_wander.summarise({"validation_history": history, "identity": {"seed": 96, "beta": 0.004},
                                       "kl": 15.0})
    second_half = kl[5:]  # steps 600-1000, after 500
    assert row["range_second_half"] == pytest.approx(5.0 / (sum(second_half) / 5))
    window = kl[5:]  # steps >= 600
    mean = sum(window) / 5
    slope = sum((s - 800.0) * (k - mean) for s, k in zip(steps[5:], window, strict=True)) / 100000.0
    assert row["drift_last_40"] == pytest.approx(slope * 400.0 / mean)


def test_the_offset_gain_pilot_starts_from_the_sweeps_geco_and_changes_only_the_offset_gain():
    """Unlike the earlier pilots it starts from the sweep's GECO of its time (trained-heldout at η = 0.10,
    offset gain 0.5), not as the pilots before that default read it; params.yaml's GECO differs from that
    in the offset gain alone (0.5 until the sweep took the pilot's choice); its candidate raises only
    ``geco_outer_gain``; its seeds are new to every sweep, exploration and pilot; its rule is the earlier
    pilots'."""
    import geco_offset_gain_pilot as pilot
    from rd_train.params import load_params

    today = dict(load_params(ROOT / "params.yaml").raw)
    later = ("geco_outer_gain", "geco_offset_average", "geco_outer_terminal",  # what the sweep took since
             "geco_correct_every_n_steps")
    assert {k: v for k, v in pilot.PILOT_RATE.items() if k not in later} == \
        {k: today["rate"][k] for k in pilot.PILOT_RATE if k not in later}
    assert today["rate"]["geco_outer_gain"] in (0.5, 0.8)
    base = pilot.as_the_pilot_read_it(today)
    assert base["rate"] == {**today["rate"], "geco_outer_gain": 0.5, "geco_offset_average": "geco_ema",
                            "geco_outer_terminal": False, "geco_correct_every_n_steps": 0}
    assert today["rate"] is not base["rate"]
    (first, default), (second, candidate) = pilot.candidates(base)
    assert (first, second) == ("default", "offset_gain_0.8")
    assert candidate == {**default, "geco_outer_gain": 0.8}
    params = pilot.narrow(base, default)
    assert params["rate"] == base["rate"]  # the default candidate is the sweep's GECO, every key
    assert params["sweep"]["lams"] == [5.0] and params["sweep"]["rate_targets"] == [5.0, 10.0, 20.0]
    assert params["spatial"]["lams"] == [5.0] and params["spatial"]["betas"] == []
    assert params["sweep"]["seeds"] == params["spatial"]["seeds"] == [100, 101, 102, 103]
    assert pilot.narrow(base, candidate)["rate"] == {**base["rate"], "geco_outer_gain": 0.8}
    earlier = {*base["sweep"]["seeds"], *base["spatial"]["seeds"], *geco_trained_heldout_pilot.SEEDS,
               90, 91, 92, 93}
    assert not set(pilot.SEEDS) & earlier
    assert pilot.choose_fewest_misses is geco_trained_heldout_pilot.choose_fewest_misses
    order = ["default", "offset_gain_0.8"]
    assert pilot.choose_fewest_misses({"default": [0.04, 0.0], "offset_gain_0.8": [0.04, 0.01]}, order) \
        == "default"  # a tie in misses and worst error keeps the default


def test_the_offset_trace_follows_the_explorations_worst_default_run_and_changes_no_number():
    """benchmarks/geco_offset_trace.py traces the run its docstring names: the gain exploration's worst run
    under the default (gain 0.8); its committed default trace ends where that exploration's run ended, to
    the bit (tracing reads each step's KL on the host, nothing more), and the lag-matched trace where the
    lag-matched exploration's run did."""
    import json

    import geco_offset_trace as trace

    explored = json.loads(trace.EXPLORED.read_text())["runs"]
    default = [r for r in explored if r["variant"] == "offset08"]
    worst = max(default, key=lambda r: abs(r["error"]))
    assert (worst["family"], worst["lam"], worst["target"], worst["seed"]) == trace.RUN
    result = json.loads((trace.RESULTS / "cpu-geco-offset-trace.json").read_text())
    traced = {t["variant"]: t for t in result["traces"]}
    assert traced["default"]["error"] == worst["error"] and result["default_equals_exploration"]
    lagmatched = json.loads((trace.RESULTS / "cpu-geco-lagmatched-exploration.json").read_text())["runs"]
    (same,) = [r["error"] for r in lagmatched if (r["family"], r["lam"], r["target"], r["seed"]) == trace.RUN]
    assert traced["lagmatched"]["error"] == same
    steps = [row["step"] for row in traced["default"]["validations"]]
    assert steps == list(range(50, 1001, 50))  # every validation, the corrections from step 500 on


def test_the_terminal_pilot_starts_from_the_sweeps_geco_and_changes_only_the_explorations_two_keys(tmp_path):
    """It starts from the sweep's GECO of its time (trained-heldout at η = 0.10, offset gain 0.8, the ratio
    over GECO's KL EMA, no terminal aim); params.yaml differs from that at most in the two keys the pilot
    decides (the sweep has taken its choice); its candidate is the
    exploration's ``terminal`` variant, changes those two keys alone and trains valid configs (the weights'
    decay they need is set); its seeds are new to every sweep, exploration and pilot; its rule is the
    earlier pilots'."""
    import geco_gain_exploration
    import geco_offset_gain_pilot
    import geco_terminal_pilot as pilot
    from rd_train.params import load_params
    from rd_train.pipeline.sweep import run_configs

    decided = ("geco_offset_average", "geco_outer_terminal", "geco_correct_every_n_steps")  # and since
    today = dict(load_params(ROOT / "params.yaml").raw)
    fixed = {k: v for k, v in pilot.PILOT_RATE.items() if k not in decided}
    assert fixed == {k: today["rate"][k] for k in fixed}
    base = pilot.as_the_pilot_read_it(today)
    assert base["rate"] == {**today["rate"], "geco_offset_average": "geco_ema", "geco_outer_terminal": False,
                            "geco_correct_every_n_steps": 0}
    assert today["rate"] is not base["rate"]
    (first, default), (second, candidate) = pilot.candidates(base)
    assert (first, second) == ("default", "terminal")
    assert geco_gain_exploration.VARIANTS["terminal"] == {**pilot.PILOT_RATE, **pilot.CANDIDATE}
    assert candidate == {**default, "geco_offset_average": "weights", "geco_outer_terminal": True}
    params = pilot.narrow(base, candidate)
    assert params["rate"] == {**base["rate"], **pilot.CANDIDATE}
    assert params["sweep"]["lams"] == [5.0] and params["sweep"]["rate_targets"] == [5.0, 10.0, 20.0]
    assert params["sweep"]["seeds"] == params["spatial"]["seeds"] == [104, 105, 106, 107]
    configs = run_configs(params, "geco", "adversarial", tmp_path)
    assert len(configs) == 12 and all(c.rate.geco_outer_terminal for c in configs)
    assert all(c.optim.ema_decay == 0.99 for c in configs)  # what the terminal aim discounts with
    earlier = {*base["sweep"]["seeds"], *base["spatial"]["seeds"], *geco_trained_heldout_pilot.SEEDS,
               *geco_offset_gain_pilot.SEEDS, 90, 91, 92, 93}
    assert not set(pilot.SEEDS) & earlier
    assert pilot.choose_fewest_misses is geco_trained_heldout_pilot.choose_fewest_misses


def test_the_cadence_pilot_starts_from_the_sweeps_geco_and_cadence_and_changes_only_the_cadence(tmp_path):
    """It starts from the sweep's GECO and validation cadence of its time: params.yaml's, less the schedule
    the sweep took from its choice (``geco_correct_every_n_steps``, then absent: one cadence throughout);
    its candidate validates every 25 steps and changes nothing else, in every run it trains, the
    AutoencoderKL's included; the length stage would scale it; its seeds are new to every sweep,
    exploration and pilot; its rule is the earlier pilots'."""
    import geco_cadence_pilot as pilot
    import geco_offset_gain_pilot
    import geco_terminal_pilot
    from rd_train.params import from_mapping, load_params
    from rd_train.pipeline.sweep import run_configs
    from rd_train.training.cadence import cadence as schedule_of

    today = dict(load_params(ROOT / "params.yaml").raw)
    later = ("geco_correct_every_n_steps",)  # what the sweep took since, from this pilot's choice
    assert {k: today["rate"][k] for k in pilot.PILOT_RATE if k not in later} == \
        {k: v for k, v in pilot.PILOT_RATE.items() if k not in later}
    assert today["rate"]["geco_correct_every_n_steps"] == 25
    assert today["trainer"]["val_every_n_steps"] == pilot.PILOT_CADENCE == 50
    base = pilot.as_the_pilot_read_it(today)
    assert base == {**today, "rate": {**today["rate"], "geco_correct_every_n_steps": 0}}
    assert base["rate"] is not today["rate"]
    (first, default), (second, candidate) = pilot.candidates(base)
    assert (first, second) == ("default", "every-25")
    assert candidate == {**default, "val_every_n_steps": 25}
    for rates, cadence in ((default, 50), (candidate, 25)):
        params = pilot.narrow(base, rates)
        assert params["rate"] == base["rate"] and params["trainer"] == {**today["trainer"],
                                                                       "val_every_n_steps": cadence}
        assert params["sweep"]["lams"] == [5.0] and params["sweep"]["rate_targets"] == [5.0, 10.0, 20.0]
        assert params["sweep"]["seeds"] == params["spatial"]["seeds"] == [108, 109, 110, 111]
        configs = run_configs(params, "geco", "adversarial", tmp_path / str(cadence))
        assert len(configs) == 12 and all(c.val_every_n_steps == cadence for c in configs)
        loaded = from_mapping(params, "the cadence pilot")
        spatial = loaded.spatial_params().run_configs("geco", "perceptual", tmp_path / f"spatial-{cadence}")
        assert len(spatial) == 4 and all(c.val_every_n_steps == cadence for c in spatial)
        length = run_configs(params, "length", "adversarial", tmp_path / f"length-{cadence}")
        assert length and all(c.val_every_n_steps == 2 * cadence for c in length)
        assert all(schedule_of(c).correcting_from is None for c in [*configs, *spatial, *length])
    assert today["trainer"]["val_every_n_steps"] == 50  # narrowing changed a copy
    earlier = {*base["sweep"]["seeds"], *base["spatial"]["seeds"], *geco_trained_heldout_pilot.SEEDS,
               *geco_offset_gain_pilot.SEEDS, *geco_terminal_pilot.SEEDS, 90, 91, 92, 93}
    assert not set(pilot.SEEDS) & earlier
    assert pilot.choose_fewest_misses is geco_trained_heldout_pilot.choose_fewest_misses


def test_every_pilot_base_and_exploration_variant_names_every_geco_key_params_yaml_sets():
    """A pilot or exploration re-run trains the configs it trained then: each pilot's base and each
    exploration variant but ``default`` names every rate.geco_* key params.yaml sets, at its value of the
    time, so none follows a later default (the sweep's move to offset gain 0.8, then to the terminal aim,
    moved keys the earlier pilots and explorations left to params.yaml)."""
    import geco_cadence_pilot
    import geco_gain_exploration
    import geco_offset_gain_pilot
    import geco_terminal_pilot
    from geco_tracking_runs import PILOTS_RATE
    from rd_train.params import load_params

    keys = {k for k in load_params(ROOT / "params.yaml").raw["rate"] if k.startswith("geco_")}
    explored = geco_gain_exploration.VARIANTS
    pinned = {"the pilots of geco_tracking_runs": PILOTS_RATE,
              "the offset gain pilot": geco_offset_gain_pilot.PILOT_RATE,
              "the terminal pilot": geco_terminal_pilot.PILOT_RATE,
              "the cadence pilot": geco_cadence_pilot.PILOT_RATE,
              **{f"exploration {v}": rate for v, rate in explored.items() if v != "default"}}
    for name, rate in pinned.items():
        assert keys <= set(rate), f"{name} leaves {sorted(keys - set(rate))} to params.yaml"
    assert PILOTS_RATE["geco_outer_gain"] == geco_offset_gain_pilot.PILOT_RATE["geco_outer_gain"] == 0.5
    assert geco_gain_exploration.VARIANTS["offset08"] == geco_gain_exploration.THIRD == {
        **geco_offset_gain_pilot.PILOT_RATE, "geco_outer_gain": 0.8}
