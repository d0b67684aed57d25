"""The λ-grid trend verdicts and the pass-rate tests of claims.md, on a study of planted runs."""

import math
from pathlib import Path

import pytest
from rd_train.analysis import Rules, trend_test
from rd_train.analysis.convergence import Convergence
from rd_train.report.study import Run, Study
from rd_train.report.trend_claims import FALLS, UNRESOLVED, pass_rates, trend_rows

PARAMS = {"losses": {"perceptual": {"neural": "vgg16_hed"}}, "sweep": {"rate_targets": [10.0]}}


def run(sweep, lam, seed, kl, anisotropy, passed=True, beta=0.016, target=None):
    family = "pixel" if lam == 0 else "perceptual"
    return Run(sweep, family, lam, beta, target, seed, Path(f"{family}_{lam}_{seed}"),
               {"kl": kl, "anisotropy": anisotropy, "distortion": {"pixel_sse": 1.0}},
               Convergence(0.0, 0.0, 0.0, None, None, passed, "" if passed else "moved"))


def study(falling: bool, fail_top: bool = False) -> Study:
    runs = []
    for lam in (0.0, 1.0, 5.0):
        for seed in range(3):
            kl = 30 - (3 * lam if falling else 0) + 0.1 * seed
            runs.append(run("fixed", lam, seed, kl, 1.0, passed=not (fail_top and lam == 5)))
            runs.append(run("fixed", lam, seed, kl / 4, 1.5, beta=0.064, passed=not (fail_top and lam == 5)))
            runs.append(run("geco", lam, seed, 10.0, 1.0 - (0.1 * lam if falling else 0) + 0.01 * seed,
                            target=10.0, passed=not (fail_top and lam == 5)))
    return Study(PARAMS, Rules(), runs)


def test_a_planted_monotone_fall_is_found_over_the_grid():
    rows = trend_rows(study(falling=True), converged=True)
    rate = [r for r in rows if r.claim == "rate"]
    assert len(rate) == 2 and all(r.verdict == FALLS for r in rate)
    assert all(r.p_holm == min(1.0, 2 * r.p_decreasing) for r in rate)  # Holm over the two β
    geco = next(r for r in rows if r.estimate == "GECO")
    assert geco.verdict == FALLS and geco.effect.low >= -1.0 and geco.effect.effect < 0
    interpolated = next(r for r in rows if r.estimate == "interpolated")
    assert [len(g) for g in interpolated.groups] == [3, 3, 3]  # every λ, not only the ends


def test_no_trend_is_not_resolved():
    rows = trend_rows(study(falling=False), converged=True)
    assert all(r.verdict.startswith(UNRESOLVED) for r in rows if r.claim == "rate")


def test_the_unfiltered_table_keeps_what_the_filter_removes_and_the_pass_rate_test_sees_it():
    s = study(falling=True, fail_top=True)
    filtered = next(r for r in trend_rows(s, converged=True) if r.claim == "rate")
    unfiltered = next(r for r in trend_rows(s, converged=False) if r.claim == "rate")
    assert [len(g) for g in filtered.groups] == [3, 3, 0] and [len(g) for g in unfiltered.groups] == [3, 3, 3]
    rates = pass_rates(s)
    assert rates.counts[("fixed", "perceptual", 5.0)] == (0, 6)
    assert rates.lam_tests[("fixed", "perceptual")] < 1e-3
    assert rates.lam_tests[("geco", "perceptual")] < 0.05


def test_geco_is_corrected_to_the_target_along_the_fixed_beta_slope():
    import math

    from rd_train.analysis import corrected_to_rate, slope_at_rate
    from rd_train.report.trend_claims import corrected_rows

    kl, values = [5.0, 10.0, 40.0], [2.0, 1.5, 0.5]
    assert slope_at_rate([2.0, 8.0], [1.0, 2.0], 4.0) == pytest.approx(1 / math.log(4))  # two points: a line
    assert corrected_to_rate(1.0, 11.0, 10.0, -0.5) == pytest.approx(1.0 + 0.5 * math.log(1.1))
    with pytest.raises(ValueError):
        slope_at_rate(kl, values, 50.0)  # no extrapolation
    s = study(falling=True)
    for r in s.runs:
        if r.sweep == "geco":
            r.metrics["kl"] = 11.0  # 10 % above the target
    rows, errors = corrected_rows(s, converged=True)
    assert errors == pytest.approx([0.1] * 9)
    # each seed's fixed-β curve: anisotropy 1.5 at K/4 and 1.0 at K, so dA/dlog K = -0.5 / log 4 there
    slope = -0.5 / math.log(4)
    raw = [[r.anisotropy for r in s.runs if r.sweep == "geco" and r.lam == lam] for lam in (0.0, 1.0, 5.0)]
    expected = [[a + slope * math.log(10 / 11) for a in g] for g in raw]
    assert rows[0].groups == [pytest.approx(g) for g in expected]


def test_page_trend_pairs_the_seeds_and_finds_a_fall_a_between_seed_spread_would_hide():
    import math

    from rd_train.report.paired_claims import page_row

    # Each seed falls with λ, but the seeds differ by more than the fall: unpaired, the groups overlap.
    blocks = {seed: {0.0: 10.0 + 5 * seed, 1.0: 9.5 + 5 * seed, 5.0: 9.0 + 5 * seed} for seed in range(3)}
    row = page_row("rate", "perceptual", 0.016, [0.0, 1.0, 5.0], blocks)
    assert row.seeds == [0, 1, 2] and row.p_value == pytest.approx(1 / 216)  # exact: 1 / (3!)^3
    unpaired = trend_test([[b[lam] for b in blocks.values()] for lam in (0.0, 1.0, 5.0)], "decreasing")
    assert unpaired.p_value > 0.05
    rising = {s: {lam: -v for lam, v in b.items()} for s, b in blocks.items()}
    assert page_row("rate", "perceptual", 0.016, [0.0, 1.0, 5.0], rising).p_value > 0.9
    incomplete = {0: blocks[0], 1: {0.0: 1.0, 1.0: 2.0}}  # seed 1 lacks λ = 5: one complete block
    assert math.isnan(page_row("rate", "perceptual", 0.016, [0.0, 1.0, 5.0], incomplete).p_value)


def test_the_interaction_finds_a_drop_that_grows_with_the_target():
    from rd_train.report.paired_claims import interaction_rows

    runs = []
    for lam in (0.0, 1.0, 5.0):
        for seed in range(3):
            for beta, kl in ((0.004, 40.0), (0.256, 2.0)):  # flat curves through every target: no correction
                runs.append(run("fixed", lam, seed, kl, 1.0, beta=beta))
            for target, drop in ((5.0, 0.05), (10.0, 0.3), (20.0, 0.6)):
                value = (1.0 + 0.2 * seed) * (1 - drop * lam / 5)
                runs.append(run("geco", lam, seed, target, value, target=target))
    params = {**PARAMS, "sweep": {"rate_targets": [5.0, 10.0, 20.0]}}
    (row,) = interaction_rows(Study(params, Rules(), runs), converged=True)
    assert [len(g) for g in row.log_ratios] == [3, 3, 3]
    assert row.log_ratios[0][0] == pytest.approx(math.log(0.95))
    assert row.p_value < 0.01 and row.p_holm == row.p_value  # one family: Holm changes nothing


def test_the_balancer_control_reports_the_share_of_the_drop_that_survives():
    from rd_train.report import balancer_control

    runs = []
    for seed in range(3):
        for lam, kl, norm in ((0.0, 30.0, 1.0), (5.0, 20.0, 0.8)):
            r = run("fixed", lam, seed, kl + 0.1 * seed, 1.0)
            r.metrics["training_averages"] = {"combined_gradient_norm": {"second_half": norm}}
            runs.append(r)
        c = run("control", 5.0, seed, 25.0 + 0.1 * seed, 1.0)
        runs.append(c)
    s = Study(PARAMS, Rules(), runs)
    lines = balancer_control.section(s)
    row = next(line for line in lines if line.startswith("| VGG16 (HED) features | 5 |"))
    assert "50%" in row and "the drop survives" in row  # (30 - 25) / (30 - 20)
    assert any("| fixed | VGG16 (HED) features | 5 | 0.800" in line for line in lines)
    assert balancer_control.section(Study(PARAMS, Rules(), [r for r in runs if r.sweep != "control"])) == []
