"""Analyses of finished runs: matched-rate interpolation, convergence rules, statistics."""

from rd_train.analysis.convergence import Convergence, Rules
from rd_train.analysis.matched_rate import value_at_rate
from rd_train.analysis.statistics import Comparison, Interval, compare_lower, mean_ci

__all__ = ["Comparison", "Convergence", "Interval", "Rules", "compare_lower", "mean_ci", "value_at_rate"]
