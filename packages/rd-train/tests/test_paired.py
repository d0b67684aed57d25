"""Protocol v3's paired tests (rd_train.protocol.paired) against scipy and hand-computed cases."""

import math

import numpy as np
import pytest
from rd_train.protocol.paired import adjacent_falls, page, paired_log_ratio, stratified_page
from scipy import stats


def test_page_is_scipys_test_of_a_fall_along_the_grid():
    rng = np.random.default_rng(0)
    for blocks, k in ((3, 6), (3, 3), (18, 6)):
        data = rng.normal(size=(blocks, k))
        ours = page(data)
        theirs = stats.page_trend_test(data[:, ::-1])  # reversed columns: "increasing" is our "decreasing"
        assert ours.statistic == pytest.approx(theirs.statistic)
        assert ours.p_value == pytest.approx(theirs.pvalue)


def test_page_reads_the_direction_of_the_claim():
    falling = np.array([[6.0, 5, 4, 3, 2, 1], [9, 8, 7, 6, 5, 4], [3, 2.5, 2, 1.5, 1, 0.5]])
    result = page(falling)
    # Every block ranks exactly as predicted: the smallest p the exact null allows, 1 / (6!)^3.
    assert result.method == "exact"
    assert result.p_value == pytest.approx(1 / math.factorial(6) ** 3)
    assert page(falling[:, ::-1]).p_value == pytest.approx(1.0)  # rising: no evidence of a fall


def test_stratified_page_pools_blocks_of_every_cell_by_hand():
    rng = np.random.default_rng(1)
    # Six cells of three seeds (the rate claim at two β, or anisotropy at 3 targets x 2 lengths), of
    # very different scales: ranks within a block pool them.
    cells = [scale * (rng.normal(size=(3, 6)) + np.arange(6)[::-1] * 0.3) for scale in (1, 10, 100, 1, 2, 3)]
    result = stratified_page(cells)
    n, k = 18, 6
    ranks = np.vstack([stats.rankdata(row) for cell in cells for row in cell])
    weights = np.arange(k, 0, -1)  # predicted: the largest value at λ = 0
    statistic = float((weights * ranks.sum(axis=0)).sum())
    assert result.statistic == pytest.approx(statistic)
    assert result.statistic == pytest.approx(sum(page(c).statistic for c in cells))
    mean = n * k * (k + 1) ** 2 / 4
    var = n * k**2 * (k + 1) * (k**2 - 1) / 144
    assert result.method == "asymptotic"
    assert result.p_value == pytest.approx(stats.norm.sf((statistic - mean) / math.sqrt(var)), rel=1e-9)
    assert result.blocks == 18


def test_stratified_page_refuses_cells_on_different_grids():
    with pytest.raises(ValueError, match="same λ grid"):
        stratified_page([np.zeros((3, 6)), np.zeros((3, 5))])


def test_paired_log_ratio_by_hand():
    effect = paired_log_ratio([2.0, 4.0, 8.0], [4.0, 4.0, 4.0])
    # d = (log ½, 0, log 2): mean 0, sd log 2, t(0.975, 2) = 4.302653
    half = 4.302652729911275 * math.log(2) / math.sqrt(3)
    assert effect.effect == pytest.approx(0.0, abs=1e-12)
    assert effect.low == pytest.approx(math.expm1(-half))
    assert effect.high == pytest.approx(math.expm1(half))
    assert effect.low > -1.0  # a positive quantity cannot fall by more than 100 %


def test_paired_log_ratio_is_paired_not_pooled():
    # The same shift in every block at very different levels: a pooled interval would span zero.
    control = np.array([1.0, 10.0, 100.0])
    effect = paired_log_ratio(0.5 * control * np.array([1.0, 1.01, 0.99]), control)
    assert effect.high < 0 and effect.effect == pytest.approx(-0.5, abs=0.01)


def test_paired_log_ratio_needs_positive_pairs():
    with pytest.raises(ValueError, match="positive"):
        paired_log_ratio([1.0, -1.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="equal"):
        paired_log_ratio([1.0, 2.0], [1.0])


def test_adjacent_falls_counts_steps_of_the_mean():
    assert adjacent_falls([[5, 4, 4.5, 3], [5, 4, 4.5, 3]]) == (2, 3)
    assert adjacent_falls([[1, 2, 3]]) == (0, 2)
