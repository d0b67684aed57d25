"""Protocol v3's claims from run records (rd_train.protocol.claims), on hand-made records of known answer."""

import math

import pytest
from hand_made_records import SEEDS, _design
from rd_train.protocol.claims import build_cells, compute, document

LABELS = {"perceptual": "VGG16 (HED)", "adversarial": "PatchGAN"}


def test_a_family_that_falls_in_every_cell_holds_and_noise_does_not():
    claims = compute(_design(), LABELS)
    perceptual_rate = [c for c in claims.cells if c.claim == "rate" and c.family == "perceptual"]
    assert len(perceptual_rate) == 2 and all(c.runs == 18 for c in perceptual_rate)  # pixel shared as λ = 0
    for cell in perceptual_rate:
        assert cell.p == pytest.approx(1 / math.factorial(6) ** 3)  # every seed ranks exactly as predicted
        assert cell.falls == (5, 5)
    rows = {(r.claim.split()[0], r.family): r for r in claims.headlines}
    assert rows[("rate", "VGG16 (HED)")].p_holm < 1e-6
    assert rows[("rate", "PatchGAN")].p_holm > 0.05
    anisotropy = rows[("anisotropy", "VGG16 (HED)")]
    assert anisotropy.long_p_holm is not None and anisotropy.long_p_holm < 0.05
    assert anisotropy.runs == 3 * 18
    assert anisotropy.effect.high < 0 and anisotropy.effect.low > -1


def test_the_matched_rate_claim_must_hold_at_twice_the_steps():
    text = document(compute(_design(falling_long=False), LABELS), 0.05, "abc1234", LABELS)
    summary = text[text.index("## Summary"):text.index("## Every cell")]
    row = next(line for line in summary.splitlines() if "matched rate" in line and "VGG16 (HED)" in line)
    assert "**not shown: holds at the default length, not at 2x steps**" in row
    rate = next(line for line in summary.splitlines() if "fixed β" in line and "VGG16 (HED)" in line)
    assert "**holds**" in rate
    assert text.index("## Summary") < text.index("## Every cell") < text.index("## Left out")
    assert "abc1234" in text and "None: every run" in text


def test_claims_name_the_amending_commit_only_when_there_is_one():
    claims = compute(_design(), LABELS)
    amended = document(claims, 0.05, "abc1234", LABELS, amended_in="def5678")
    first = amended.splitlines()[2]
    assert "abc1234" in first and "v3.1 in commit def5678" in first
    plain = document(claims, 0.05, "abc1234", LABELS)
    assert "def5678" not in plain and "v3.1" not in plain


def test_the_interaction_reads_a_drop_that_grows_with_the_target():
    grows = {r.family: r for r in compute(_design(growing=True)).interactions}
    flat = {r.family: r for r in compute(_design(growing=False)).interactions}
    assert grows["perceptual"].targets == [5.0, 10.0, 20.0]
    assert grows["perceptual"].p < 0.01 < flat["perceptual"].p


def test_only_a_missing_or_non_finite_run_leaves_and_only_its_seed_in_its_cell():
    records = _design()
    def find(**wanted):
        return [r for r in records if all(r["identity"][k] == v for k, v in wanted.items())]

    bad, = find(sweep="geco", family="perceptual", target=5.0, seed=1, lam=2.0)
    bad["metrics"]["anisotropy"] = float("nan")
    missing, = find(sweep="fixed", family="pixel", seed=2, beta=0.256)
    records.remove(missing)
    claims = compute(records, LABELS)
    cell, = (c for c in claims.cells if (c.claim, c.family, c.key) == ("anisotropy", "perceptual", 5.0))
    assert cell.seeds == [0, 2]
    assert any(bad["path"] in why and "not finite" in why for why in claims.left_out)
    for family in ("perceptual", "adversarial"):  # the shared pixel arm is missing for both families
        rate = next(c for c in claims.cells if c.claim == "rate" and c.family == family and c.key == 0.256)
        assert rate.seeds == [0, 1]
    assert sum("no finished run" in why for why in claims.left_out) == 2
    others = [c for c in claims.cells if c is not cell and not (c.claim == "rate" and c.key == 0.256)]
    assert all(c.seeds == SEEDS for c in others)


def test_holm_runs_over_the_cells_of_one_claim():
    cells = build_cells(_design(), "rate")
    ps = sorted(c.p for c in cells)
    assert min(c.p_holm for c in cells) == pytest.approx(min(1.0, len(cells) * ps[0]))


def test_one_target_has_no_interaction_to_test():
    """With a single rate target (the AutoencoderKL's), the λ × target interaction has no row."""
    records = [r for r in _design() if r["identity"]["sweep"] != "geco" or r["identity"]["target"] == 10.0]
    assert compute(records, LABELS).interactions == []
    assert len(compute(_design(), LABELS).interactions) == 2  # three targets: one row per family
