"""Statistics only, on numbers (no run, checkpoint or torch): matched-rate interpolation, convergence
rules, comparisons, and the trend tests and positivity-respecting effect intervals of trends.py. What
reads trained weights (effective distortion weights, transfer) is `rd_train.mechanism`."""

from rd_train.analysis.convergence import Convergence, Rules
from rd_train.analysis.matched_rate import corrected_to_rate, slope_at_rate, value_at_rate
from rd_train.analysis.stationarity import Stationarity, WindowRule, stationarity
from rd_train.analysis.statistics import (
    Comparison,
    Interval,
    compare_lower,
    correlation_ci,
    mean_ci,
    positive_ci,
    share_ci,
)
from rd_train.analysis.trends import difference_interval, holm, ratio_interval, trend_test

__all__ = [
    "Comparison",
    "Convergence",
    "Interval",
    "Rules",
    "Stationarity",
    "WindowRule",
    "compare_lower",
    "corrected_to_rate",
    "correlation_ci",
    "difference_interval",
    "holm",
    "mean_ci",
    "positive_ci",
    "ratio_interval",
    "share_ci",
    "slope_at_rate",
    "stationarity",
    "trend_test",
    "value_at_rate",
]
