"""`rd-train plan`: the training stages' runs as the stages list them, a run's cost from two timed lengths,
and the span of a block on its workers (what the sweep's process pool does)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from rd_train.params import load_params
from rd_train.pipeline.plan import (
    RunCost,
    calibrate,
    default_lengths,
    format_plan,
    list_schedule,
    planned_blocks,
    predict,
)

ROOT = Path(__file__).parents[3]


@pytest.mark.parametrize(("durations", "workers", "span"), [
    ([3, 1, 1, 1], 2, 3),  # the long run first: the other worker takes the three short ones meanwhile
    ([1, 1, 1, 3], 2, 4),  # the long run last starts when a worker frees at 1
    ([2, 2, 2], 1, 6),
    ([5], 4, 5),
    ([], 2, 0),
])
def test_a_block_is_scheduled_in_order_on_the_first_free_worker(durations, workers, span):
    assert list_schedule(durations, workers) == span


def test_a_noisy_calibration_never_predicts_that_more_steps_take_less_time():
    """The bug this names: the miniature plan's 4-step runs once came out faster than its 2-step runs, the
    line through them fell, and every block of the plan was predicted at 0 s."""
    cost = RunCost.through((2, 4), (1.0, 0.9))
    assert cost.per_step == 0.0 and cost.fixed == pytest.approx(0.95)
    assert cost.seconds_for(1000) == pytest.approx(0.95)


def test_a_run_cost_is_the_line_through_its_two_timed_lengths():
    cost = RunCost.through((10, 30), (5.0, 9.0))
    assert cost.per_step == pytest.approx(0.2) and cost.fixed == pytest.approx(3.0)
    assert cost.seconds_for(100) == pytest.approx(23.0)
    with pytest.raises(ValueError, match="increase"):
        RunCost.through((30, 10), (9.0, 5.0))
    assert default_lengths(1500) == (150, 450)


def test_the_blocks_are_every_run_the_training_stages_train_in_their_order():
    validated = load_params(ROOT / "params.yaml")
    blocks = planned_blocks(validated)
    params = validated.raw
    s, sp = params["sweep"], params["spatial"]
    neural = list(params["losses"])
    length_targets = len(s["length_replicate"]["targets"])
    expected = (
        [("fixed", "pixel", len(s["betas"]) * len(s["seeds"]))]
        + [("fixed", f, len(s["lams"]) * len(s["betas"]) * len(s["seeds"])) for f in neural]
        + [("geco", "pixel", len(s["rate_targets"]) * len(s["seeds"]))]
        + [("geco", f, len(s["lams"]) * len(s["rate_targets"]) * len(s["seeds"])) for f in neural]
        + [("length", "pixel", length_targets * len(s["seeds"]))]
        + [("length", f, len(s["lams"]) * length_targets * len(s["seeds"])) for f in neural]
        + [("control", f, len(s["norm_matched"]["lams"]) * len(s["norm_matched"]["betas"]) * len(s["seeds"]))
           for f in neural]
        + ([("spatial", "pixel", len(sp["betas"]) * len(sp["seeds"]))]  # no fixed-β block without a β
           + [("spatial", f, len(sp["lams"]) * len(sp["betas"]) * len(sp["seeds"])) for f in sp["families"]]
           if sp["betas"] else [])
        + [("spatial", "pixel", len(sp["rate_targets"]) * len(sp["seeds"]))]
        + [("spatial", f, len(sp["lams"]) * len(sp["rate_targets"]) * len(sp["seeds"]))
           for f in sp["families"]]
    )
    length_runs = [c for b in blocks if b.stage == "length" for c in b.configs]
    factor = s["length_replicate"]["steps_factor"]
    assert {c.optim.max_steps for c in length_runs} == {factor * params["optim"]["max_steps"]}
    # a pure dilation: the warm-up and the validations stay the same fractions of training
    assert {c.rate.warmup_steps for c in length_runs} == {factor * params["rate"]["warmup_steps"]}
    assert {c.val_every_n_steps for c in length_runs} == {factor * params["trainer"]["val_every_n_steps"]}
    assert [(b.stage, b.family, len(b.configs)) for b in blocks] == expected
    assert {b.model for b in blocks if b.stage == "spatial"} == {"spatial"}
    assert all(c.model.kind == "spatial" for b in blocks if b.stage == "spatial" for c in b.configs)
    assert all(c.model.kind == "vector" for b in blocks if b.stage != "spatial" for c in b.configs)


def test_each_model_and_family_is_timed_once_and_the_prediction_follows_its_cost():
    validated = load_params(ROOT / "params.yaml")
    blocks = planned_blocks(validated)
    params = validated.raw
    per_step = {("vector", "pixel"): 0.01, ("vector", "perceptual"): 0.08, ("vector", "adversarial"): 0.03,
                ("spatial", "pixel"): 0.07, ("spatial", "perceptual"): 0.13}
    # GECO's held-out batch and its validation schedule cost more per step: timed apart from fixed β
    rates = {(*key, controller): rate * (1.1 if controller == "geco" else 1.0)
             for key, rate in per_step.items() for controller in ("fixed", "geco")}
    calls = []

    def fake_timer(config, steps, copies, where):
        key = (config.model.kind, "pixel" if config.loss.neural == "none" else
               {"vgg16_hed": "perceptual", "patchgan": "adversarial"}[config.loss.neural], config.rate.mode)
        calls.append((key, steps, copies))
        return [4.0 + rates[key] * steps] * copies

    costs = calibrate(blocks, 2, timer=fake_timer, report=lambda line: None)
    timed = {key for key, _, _ in calls}
    assert timed == {b.cost_key for b in blocks} and len(calls) == 2 * len(timed)
    assert {("vector", "pixel", "fixed"), ("vector", "pixel", "geco")} <= timed
    rates = {key: rate for key, rate in rates.items() if key in timed}
    assert {steps for _, steps, _ in calls} == set(default_lengths(params["optim"]["max_steps"]))
    for key, rate in rates.items():
        assert costs[key].per_step == pytest.approx(rate) and costs[key].fixed == pytest.approx(4.0)
    plans = predict(blocks, costs, 2)
    steps = params["optim"]["max_steps"]
    first = plans[0]  # fixed/pixel: n runs of 4 + 0.01 steps on two workers
    n = len(first.block.configs)
    assert first.seconds == pytest.approx((4.0 + 0.01 * steps) * ((n + 1) // 2))
    geco_pixel = next(p for p in plans if p.block.stage == "geco" and p.block.family == "pixel")
    assert geco_pixel.seconds_per_run == pytest.approx(4.0 + 0.011 * steps)  # GECO's own cost, not fixed β's
    table = format_plan(plans, 2)
    assert "spatial" in table and f"({sum(len(b.configs) for b in blocks)} runs, 2 worker(s))" in table


def test_a_block_without_runs_needs_no_cost():
    """A grid with no β leaves the fixed-β blocks empty: the plan times and prices only the blocks with
    runs (a block's cost key reads its runs' rate controller, which an empty block does not have)."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["sweep"]["betas"] = []
    from rd_train.params import from_mapping

    blocks = planned_blocks(from_mapping(raw, "a grid with no β"))
    empty = [b for b in blocks if not b.configs]
    assert {(b.sweep, b.family) for b in empty} == {("fixed", "pixel"), ("fixed", "perceptual"),
                                                    ("fixed", "adversarial")}
    costs = calibrate(blocks, 2, timer=lambda config, steps, copies, where: [1.0 + 0.01 * steps] * copies,
                      report=lambda line: None)
    plans = predict(blocks, costs, 2)
    assert all(p.seconds == 0 for p in plans if not p.block.configs)
    assert all(p.seconds > 0 for p in plans if p.block.configs)


def run_cli(*args, cwd, env=None):
    code = "import sys; from rd_train.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, check=False, timeout=900)


def test_plan_times_real_short_runs_of_a_miniature_grid_and_writes_its_prediction(tmp_path):
    params = yaml.safe_load((ROOT / "tests" / "data" / "miniature_params.yaml").read_text())
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    from rd_train.config import DataConfig
    from rd_train.training.data import save_embedded

    save_embedded(tmp_path / "data" / "embedded", DataConfig(**params["embedded"]))
    env = {**os.environ, "RD_TRAIN_CORES": "1"}
    done = run_cli("plan", "--lengths", "2", "4", "--json", "plan.json", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "GPU available" not in done.stdout + done.stderr  # the timed fits' banners go to their logs
    result = json.loads((tmp_path / "plan.json").read_text())
    blocks = planned_blocks(load_params(tmp_path / "params.yaml"))
    assert [b["runs"] for b in result["blocks"]] == [len(b.configs) for b in blocks]
    assert result["workers"] == 1
    assert all(b["seconds"] > 0 for b in result["blocks"])
    assert result["training_seconds"] == pytest.approx(sum(b["seconds"] for b in result["blocks"]))
    assert not list(tmp_path.glob("runs*")), "plan trains in a scratch directory, never under runs/"
    assert done.stdout.count("[plan] timed ") == len({b.cost_key for b in blocks if b.configs})

    again = run_cli("plan", "--costs", "plan.json", "--json", "again.json", cwd=tmp_path, env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "[plan] timed" not in again.stdout  # every cost reused: nothing trained
    assert json.loads((tmp_path / "again.json").read_text())["blocks"] == result["blocks"]
    other = run_cli("plan", "--costs", "plan.json", "--jobs", "2", cwd=tmp_path,
                    env={**os.environ, "RD_TRAIN_CORES": "2"})
    assert other.returncode == 2 and "timed with 1 worker(s), this plan has 2" in other.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["--lengths", "30", "10"], "rd-train: --lengths must be two increasing positive step counts"),
    (["--jobs", "0"], "rd-train: --jobs must be >= 1"),
    (["--params", "absent.yaml"], "absent.yaml"),
])
def test_plan_rejects_bad_input_in_one_line(tmp_path, args, message):
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    done = run_cli("plan", *args, cwd=tmp_path)
    assert done.returncode == 2, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], done.stderr
