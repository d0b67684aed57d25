r"""Paired analyses: a seed fixes the initialisation, the noise and the batch order at every λ, β and
target (tested in test_stabilisers.py), so each seed is a block and the λ grid its treatments.

* **Page's trend test** (`scipy.stats.page_trend_test`) per claim, family and β (rate) or target
  (anisotropy, GECO corrected to the target), over the seeds that have a value at every λ: the ordered
  alternative "decreasing in λ" within each seed, one-sided; Holm over the rows of one claim.
* **λ × target interaction** ("small at the lowest target, larger at higher ones", spec §4.2): per seed,
  the paired log ratio log(A(λ_max) / A(0)) of matched-rate anisotropy (GECO, corrected to the target);
  Jonckheere–Terpstra "decreasing" over the targets in increasing order (a larger relative drop at a
  higher target), per family; Holm over families. The scale (log ratio, paired) is fixed in params.yaml.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from rd_train.analysis import holm, trend_test
from rd_train.report.study import Study
from rd_train.report.trend_claims import geco_corrected_by_seed

Blocks = dict[int, dict[float, float]]  # seed -> λ -> value


@dataclass
class PageRow:
    claim: str
    family: str
    key: float
    lams: list[float]
    seeds: list[int]  # the complete blocks
    statistic: float
    p_value: float
    p_holm: float = math.nan


@dataclass
class InteractionRow:
    family: str
    targets: list[float]
    log_ratios: list[list[float]]  # per target, per complete seed: log(A(λ_max) / A(0))
    p_value: float
    p_holm: float = math.nan


def _rate_blocks(study: Study, family: str, beta: float, converged: bool) -> Blocks:
    blocks: Blocks = {}
    for (lam, b), runs in study.grouped("fixed", family, converged).items():
        if b == beta:
            for r in runs:
                blocks.setdefault(r.seed, {})[lam] = r.kl
    return blocks


def page_row(claim: str, family: str, key: float, lams: list[float], blocks: Blocks) -> PageRow:
    complete = sorted(s for s, values in blocks.items() if all(lam in values for lam in lams))
    if len(lams) < 3 or len(complete) < 2:  # Page's test needs three treatments and two blocks
        return PageRow(claim, family, key, lams, complete, math.nan, math.nan)
    data = np.array([[blocks[s][lam] for lam in lams] for s in complete])
    # Predicted ranks: the largest value at λ = 0, the smallest at λ_max (the claim "decreasing").
    result = stats.page_trend_test(data, predicted_ranks=list(range(len(lams), 0, -1)))
    return PageRow(claim, family, key, lams, complete, float(result.statistic), float(result.pvalue))


def page_rows(study: Study, converged: bool) -> list[PageRow]:
    rows = []
    for family in study.families:
        lams = study.lams(family)
        betas = sorted({beta for _, beta in study.grouped("fixed", family, converged=False)})
        rows += [page_row("rate", family, b, lams, _rate_blocks(study, family, b, converged)) for b in betas]
    for family in study.families:
        lams = study.lams(family)
        rows += [page_row("anisotropy", family, t, lams, geco_corrected_by_seed(study, family, t, converged))
                 for t in study.targets]
    for claim in ("rate", "anisotropy"):
        mine = [r for r in rows if r.claim == claim]
        for r, p in zip(mine, holm([r.p_value for r in mine]), strict=True):
            r.p_holm = p
    return rows


def interaction_rows(study: Study, converged: bool) -> list[InteractionRow]:
    rows = []
    for family in study.families:
        top = max(study.lams(family))
        ratios = []
        for target in study.targets:
            blocks = geco_corrected_by_seed(study, family, target, converged)
            ratios.append([math.log(v[top] / v[0.0]) for _, v in sorted(blocks.items())
                           if top in v and 0.0 in v and v[top] > 0 and v[0.0] > 0])
        filled = [g for g in ratios if g]
        p = trend_test(ratios, "decreasing").p_value if len(filled) >= 2 else math.nan
        rows.append(InteractionRow(family, list(study.targets), ratios, p))
    for r, p in zip(rows, holm([r.p_value for r in rows]), strict=True):
        r.p_holm = p
    return rows


def _p(p: float) -> str:
    return "–" if not math.isfinite(p) else f"{p:.2g}"


def section(study: Study) -> list[str]:
    alpha = study.rules.alpha
    lines = [
        "## Paired analyses: seeds as blocks",
        "",
        "A seed fixes the initialisation, the noise and the batch order at every λ, β and target, so each "
        "seed is a block. Page's trend test, one-sided \"decreasing in λ\", over the seeds with a value at "
        "every λ; Holm over the rows of one claim. Anisotropy: GECO corrected to the target. λ × target "
        "interaction: per seed log(A(λ_max) / A(0)) at each target, Jonckheere–Terpstra decreasing over "
        "the targets (the drop grows with the target), Holm over families. Fixed in params.yaml (`rules` "
        "comment) before this sweep ran.",
        "",
    ]
    for converged, name in ((True, "Converged runs"), (False, "Every run, no filter")):
        lines += [f"### {name}", "", "| claim | family | β or target | complete seeds | Page L | p (Holm) "
                  "| verdict |", "|---|---|---:|---:|---:|---:|---|"]
        for r in page_rows(study, converged):
            verdict = ("falls with λ" if r.p_holm < alpha else "not resolved at this scale"
                       if math.isfinite(r.p_holm) else "not testable (fewer than 2 complete seeds)")
            stat = "–" if not math.isfinite(r.statistic) else f"{r.statistic:g}"
            lines.append(f"| {r.claim} | {study.label(r.family)} | {r.key:g} | {len(r.seeds)} | {stat} | "
                         f"{_p(r.p_value)} ({_p(r.p_holm)}) | **{verdict}** |")
        lines += ["", "| family | per target: mean log ratio A(λ_max)/A(0) → relative change (n) | "
                  "JT p, drop grows with target (Holm) | verdict |", "|---|---|---:|---|"]
        for row in interaction_rows(study, converged):
            cells = ", ".join(
                f"{t:g} nats: {np.mean(g):+.3f} → {math.expm1(np.mean(g)):+.1%} ({len(g)})" if g
                else f"{t:g} nats: – (0)" for t, g in zip(row.targets, row.log_ratios, strict=True))
            verdict = ("the drop grows with the target" if row.p_holm < alpha else
                       "not resolved at this scale" if math.isfinite(row.p_holm) else "not testable")
            lines.append(f"| {study.label(row.family)} | {cells} | {_p(row.p_value)} ({_p(row.p_holm)}) | "
                         f"**{verdict}** |")
        lines.append("")
    return lines
