"""The one-screen summary that opens claims.md under protocol v3: claim × family × architecture → verdict.

Each row is one headline test (`rd_train.protocol.paired.stratified_page` over every (seed, cell) block
of the claim for that family and architecture, Holm over the rows of one claim) with its effect (the
paired log ratio λ_max vs λ = 0 over the same blocks, as a relative change of the geometric mean with its
t-interval), the runs it holds, and for the matched-rate claim whether it also holds at twice the steps.
The verdict words come from `verdict`, one rule for every row:

* p (Holm) >= α: "not resolved at this scale";
* p (Holm) < α and no length replicate: "holds";
* p (Holm) < α at the default length and at twice the steps: "holds at both lengths";
* p (Holm) < α at the default length only: "not shown: holds at the default length, not at 2x steps"
  (the claim holds only where it holds at both lengths).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from rd_train.analysis.trends import format_relative_effect
from rd_train.protocol.paired import RelativeEffect

NOT_RESOLVED = "not resolved at this scale"


@dataclass(frozen=True)
class HeadlineRow:
    claim: str
    family: str  # its label
    architecture: str
    effect: RelativeEffect
    p_holm: float  # the headline test, Holm over the rows of one claim
    runs: int
    long_p_holm: float | None = None  # the same claim at twice the steps (matched rate), Holm-adjusted


def verdict(p_holm: float, alpha: float, long_p_holm: float | None = None) -> str:
    """The verdict words of a row (module docstring)."""
    if not math.isfinite(p_holm):
        return "not testable"
    if p_holm >= alpha:
        return NOT_RESOLVED
    if long_p_holm is None:
        return "holds"
    if math.isfinite(long_p_holm) and long_p_holm < alpha:
        return "holds at both lengths"
    return "not shown: holds at the default length, not at 2x steps"


def _p(p: float | None) -> str:
    return "–" if p is None or not math.isfinite(p) else f"{p:.2g}"


def summary_table(rows: list[HeadlineRow], alpha: float) -> list[str]:
    """The Markdown table of ``rows``, in their order."""
    lines = ["| claim | family | architecture | verdict | effect λ_max vs λ = 0 [95 % CI] | p (Holm) | "
             "p at 2x steps (Holm) | runs |", "|---|---|---|---|---|---:|---:|---:|"]
    for row in rows:
        e = row.effect
        lines.append(f"| {row.claim} | {row.family} | {row.architecture} | "
                     f"**{verdict(row.p_holm, alpha, row.long_p_holm)}** | "
                     f"{format_relative_effect(e.effect, e.low, e.high)} | {_p(row.p_holm)} | "
                     f"{_p(row.long_p_holm)} | {row.runs} |")
    return lines
