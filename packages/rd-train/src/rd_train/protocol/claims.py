r"""Protocol v3's claims computed from run records: every run counts, each claim tested as it is stated.

The records (`rd_train.protocol.records`) are grouped into cells, each a seeds × λ table:

* **rate** (sweep ``fixed``): the final validation KL, one cell per (architecture, family, β);
* **anisotropy at matched rate** (sweep ``geco``): the final anisotropy, one cell per (architecture,
  family, rate target); GECO brings each run's evaluated KL to its target, so its own value is the
  matched-rate value;
* the same at twice the steps (sweep ``length``): one cell per (architecture, family, target).

λ = 0 is the shared pixel-SSE arm (family ``pixel``) in every family's table. A seed enters a cell only
with a finite value at every λ: a run missing from the records or with a non-finite value (a run that
stopped non-finite) takes its seed's block out of that cell, and is listed. No other rule removes a run.

Per cell: Page's test "decreasing in λ" (`paired.page`), Holm over the cells of one claim and length; the
effect λ_max vs λ = 0 (`paired.paired_log_ratio`); the adjacent steps that fall. Per (claim,
architecture, family): the stratified Page test over all the claim's (seed, cell) blocks at the default
length, Holm over the rows of one claim; for the matched-rate claim the same at twice the steps, which
the claim must also pass (`summary.verdict`). The λ × target interaction: per (architecture, family), the
per-seed log ratios at each target, Jonckheere–Terpstra "decreasing" over increasing targets (the drop
grows with the target), Holm over the rows.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rd_train.analysis.trends import format_relative_effect, holm, trend_test
from rd_train.protocol.paired import RelativeEffect, adjacent_falls, page, paired_log_ratio, stratified_page
from rd_train.protocol.summary import NOT_RESOLVED, HeadlineRow, summary_table

CLAIMS = {  # claim key -> (sweep, the key of a cell, the quantity, the words of the claim)
    "rate": ("fixed", "beta", "kl", "rate falls with λ at fixed β"),
    "anisotropy": ("geco", "target", "anisotropy", "anisotropy falls with λ at matched rate"),
    "anisotropy_long": ("length", "target", "anisotropy", "the same at twice the steps"),
}


@dataclass
class Cell:
    claim: str
    architecture: str
    family: str
    key: float  # β or target
    lams: list[float]
    seeds: list[int]  # the complete blocks
    table: np.ndarray  # seeds × λ
    left_out: list[str]  # runs missing or non-finite, named
    p: float = math.nan
    p_holm: float = math.nan
    statistic: float = math.nan

    @property
    def runs(self) -> int:
        return int(self.table.size)

    @property
    def testable(self) -> bool:
        """Page's test needs two complete seeds and three λ."""
        return len(self.seeds) >= 2 and len(self.lams) >= 3

    @property
    def effect(self) -> RelativeEffect:
        return paired_log_ratio(self.table[:, -1], self.table[:, 0])

    @property
    def falls(self) -> tuple[int, int]:
        return adjacent_falls(self.table)


@dataclass
class Interaction:
    architecture: str
    family: str
    targets: list[float]
    log_ratios: list[list[float]]  # per target, per complete seed
    p: float
    p_holm: float = math.nan


@dataclass
class Claims:
    cells: list[Cell]
    headlines: list[HeadlineRow]
    interactions: list[Interaction]
    left_out: list[str] = field(default_factory=list)


def _value(record: dict[str, Any], quantity: str) -> float:
    value = record["metrics"].get(quantity)
    return float(value) if isinstance(value, int | float) else math.nan


def build_cells(records: Iterable[dict[str, Any]], claim: str) -> list[Cell]:
    """The cells of ``claim`` (a key of CLAIMS) from ``records``."""
    sweep, key_name, quantity, _ = CLAIMS[claim]
    values: dict[tuple[str, str, float], dict[tuple[int, float], tuple[float, str]]] = defaultdict(dict)
    for record in records:
        identity = record["identity"]
        if identity["sweep"] != sweep:
            continue
        architecture, family = identity["architecture"], identity["family"]
        entry = (_value(record, quantity), record["path"])
        key = float(identity[key_name])
        values[(architecture, family, key)][(int(identity["seed"]), float(identity["lam"]))] = entry
    cells = []
    for (architecture, family, key), own in sorted(values.items()):
        if family == "pixel":
            continue
        merged = {**values.get((architecture, "pixel", key), {}), **own}
        lams = sorted({lam for _, lam in merged} | {0.0})
        seeds = sorted({seed for seed, _ in merged})
        complete, left_out = [], []
        for seed in seeds:
            row = [merged.get((seed, lam)) for lam in lams]
            bad = [f"seed {seed}, λ = {lam:g}: "
                   + ("no finished run" if entry is None else f"{entry[1]} is not finite")
                   for lam, entry in zip(lams, row, strict=True)
                   if entry is None or not math.isfinite(entry[0])]
            if bad:
                left_out += bad
            else:
                complete.append(seed)
        table = np.array([[merged[(seed, lam)][0] for lam in lams] for seed in complete]).reshape(
            len(complete), len(lams))
        cells.append(Cell(claim, architecture, family, key, lams, complete, table, left_out))
    for cell in cells:
        if cell.testable:
            result = page(cell.table)
            cell.p, cell.statistic = result.p_value, result.statistic
    for cell, adjusted in zip(cells, holm([c.p for c in cells]), strict=True):
        cell.p_holm = adjusted
    return cells


def _pooled_effect(cells: list[Cell]) -> RelativeEffect:
    treated = np.concatenate([c.table[:, -1] for c in cells])
    control = np.concatenate([c.table[:, 0] for c in cells])
    return paired_log_ratio(treated, control)


def _stratified_p(cells: list[Cell]) -> float:
    usable = [c.table for c in cells if c.testable]
    widths = {t.shape[1] for t in usable}
    return stratified_page(usable).p_value if usable and len(widths) == 1 else math.nan


def headline_rows(cells: list[Cell], long_cells: list[Cell], labels: dict[str, str]) -> list[HeadlineRow]:
    """One row per (claim, architecture, family) of ``cells``; ``long_cells`` (the matched-rate claim at
    twice the steps) add their own stratified p to the anisotropy rows."""
    rows: list[HeadlineRow] = []
    for claim in dict.fromkeys(c.claim for c in cells):
        groups: dict[tuple[str, str], list[Cell]] = defaultdict(list)
        for c in cells:
            if c.claim == claim and c.runs:
                groups[(c.architecture, c.family)].append(c)
        ps = holm([_stratified_p(group) for group in groups.values()])
        long_ps: list[float | None] = []
        if claim == "anisotropy":
            long_groups = {key: [c for c in long_cells if (c.architecture, c.family) == key and c.runs]
                           for key in groups}
            raw = [_stratified_p(g) if g else math.nan for g in long_groups.values()]
            long_ps = [p if group else None for p, group in zip(holm(raw), long_groups.values(), strict=True)]
        for i, ((architecture, family), group) in enumerate(groups.items()):
            rows.append(HeadlineRow(CLAIMS[claim][3], labels.get(family, family), architecture,
                                    _pooled_effect(group), ps[i], sum(c.runs for c in group),
                                    long_ps[i] if long_ps else None))
    return rows


def interactions(cells: list[Cell]) -> list[Interaction]:
    """The λ × target interaction of the matched-rate cells (module docstring)."""
    groups: dict[tuple[str, str], list[Cell]] = defaultdict(list)
    for c in cells:
        if c.claim == "anisotropy":
            groups[(c.architecture, c.family)].append(c)
    out = []
    for (architecture, family), group in groups.items():
        if len(group) < 2:  # one target: no interaction to test
            continue
        group.sort(key=lambda c: c.key)
        ratios = [list(np.log(c.table[:, -1] / c.table[:, 0])) if c.runs else [] for c in group]
        filled = [r for r in ratios if r]
        p = trend_test(ratios, "decreasing").p_value if len(filled) >= 2 else math.nan
        out.append(Interaction(architecture, family, [c.key for c in group], ratios, p))
    for row, adjusted in zip(out, holm([r.p for r in out]), strict=True):
        row.p_holm = adjusted
    return out


def compute(records: list[dict[str, Any]], labels: dict[str, str] | None = None) -> Claims:
    """Every cell, headline and interaction of ``records``."""
    labels = labels or {}
    rate, matched, long = (build_cells(records, claim) for claim in CLAIMS)
    cells = rate + matched
    left_out = [f"{c.claim}, {c.architecture}, {c.family}, {c.key:g}: {why}" for c in cells + long
                for why in c.left_out]
    return Claims(cells + long, headline_rows(cells, long, labels), interactions(matched), left_out)


def _p(p: float) -> str:
    return "–" if not math.isfinite(p) else f"{p:.2g}"


def _interaction_line(row: Interaction, alpha: float, labels: dict[str, str]) -> str:
    parts = ", ".join(
        f"{t:g}: {np.mean(r):+.3f} → {math.expm1(float(np.mean(r))):+.1%} ({len(r)})" if r else f"{t:g}: –"
        for t, r in zip(row.targets, row.log_ratios, strict=True))
    verdict = "holds" if math.isfinite(row.p_holm) and row.p_holm < alpha else NOT_RESOLVED
    family = labels.get(row.family, row.family)
    return f"| **{verdict}**, {family} | {row.architecture} | {parts} | {_p(row.p)} ({_p(row.p_holm)}) |"


def _cell_line(c: Cell, labels: dict[str, str]) -> str:
    falls, steps = c.falls if c.runs else (0, len(c.lams) - 1)
    e = c.effect if c.runs else None
    effect = format_relative_effect(e.effect, e.low, e.high) if e else "–"
    stat = "–" if not math.isfinite(c.statistic) else f"{c.statistic:g}"
    return (f"| {CLAIMS[c.claim][3]} | {c.architecture} | {labels.get(c.family, c.family)} | {c.key:g} | "
            f"{len(c.seeds)} | {falls} of {steps} | {effect} | {stat} | {_p(c.p)} ({_p(c.p_holm)}) |")


def document(claims: Claims, alpha: float, preregistered_in: str | None,
             labels: dict[str, str] | None = None, sections: Sequence[str] = (),
             amended_in: str | None = None, sources: Sequence[str] = ()) -> str:
    """claims.md under protocol v3: the summary first, then every cell, the interaction, ``sections``
    (lines of further sections, e.g. the balancer control), what was left out. ``amended_in``: the commit
    that amended the design before any run it adds (v3.1); ``sources``: each records folder read, one
    clause each (`rd_train.protocol.records.Source.describe`)."""
    labels = labels or {}
    where = f"commit {preregistered_in}" if preregistered_in else "params.yaml"
    amended = (f" Amended to v3.1 in commit {amended_in}, before any run it adds: cells the budget rule had "
               "dropped on a slower machine (params.yaml, docs/protocol.md)." if amended_in else "")
    lines = [
        "# Claims", "",
        f"Protocol v3, fixed in {where} before the sweep's first run.{amended} Every run counts: only a run "
        "missing or non-finite leaves its seed's block (listed at the end).", "",
        *([f"Run records: {'; '.join(sources)}.", ""] if sources else []),
        "## Summary", "", *summary_table(claims.headlines, alpha), "",
        "| λ × target: the drop grows with the target | architecture | per target: mean log ratio → "
        "change (seeds) | JT p (Holm) |",
        "|---|---|---|---:|",
        *(_interaction_line(row, alpha, labels) for row in claims.interactions), "",
        "## Every cell", "",
        "Page's test over the λ grid with seeds as blocks, one-sided \"decreasing\", Holm over the cells of "
        "one claim and length; effect λ_max vs λ = 0 as the change of the geometric mean with its "
        "t-interval over seeds.", "",
        "| claim | architecture | family | β or target | seeds | adjacent steps that fall | effect | "
        "Page L | p (Holm) |",
        "|---|---|---|---:|---:|---:|---|---:|---:|",
        *(_cell_line(c, labels) for c in claims.cells), "",
        *([*sections, ""] if sections else []),
        "## Left out", "",
    ]
    everything = "None: every run of every cell is finite and present."
    lines += [f"- {why}" for why in claims.left_out] or [everything]
    return "\n".join(lines) + "\n"
