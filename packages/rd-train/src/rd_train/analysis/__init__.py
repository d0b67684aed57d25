"""Analyses of finished runs: matched-rate interpolation, convergence rules, statistics (trend tests and
positivity-respecting effect intervals in trends.py), and the
effective distortion weights of a decoder (the curvature of its distortion along each latent)."""

from rd_train.analysis.convergence import Convergence, Rules
from rd_train.analysis.curvature import (
    channel_weights,
    effective_weights,
    gauss_newton_weights,
    predicted_variances,
)
from rd_train.analysis.matched_rate import corrected_to_rate, slope_at_rate, value_at_rate
from rd_train.analysis.stationarity import Stationarity, WindowRule, stationarity
from rd_train.analysis.statistics import Comparison, Interval, compare_lower, mean_ci
from rd_train.analysis.trends import difference_interval, holm, ratio_interval, trend_test

__all__ = [
    "Comparison",
    "Convergence",
    "Interval",
    "Rules",
    "Stationarity",
    "WindowRule",
    "channel_weights",
    "compare_lower",
    "corrected_to_rate",
    "difference_interval",
    "effective_weights",
    "gauss_newton_weights",
    "holm",
    "mean_ci",
    "predicted_variances",
    "ratio_interval",
    "slope_at_rate",
    "stationarity",
    "trend_test",
    "value_at_rate",
]
