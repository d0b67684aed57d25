"""The finished sweeps as one object: every run with its convergence verdict, and each claim's
comparison computed once from the converged runs (tables, figures and metrics only format them).

Claims (spec §3.2, §4.2), each "at λ_max vs λ = 0" over seeds (`rd_train.analysis.statistics`):

* rate: at each fixed β, the final validation KL is lower;
* anisotropy at matched rate, two estimates per rate target R*:
  - interpolated: per (λ, seed), the fixed-β runs' (validation KL, anisotropy) curve read at R*
    (`rd_train.analysis.value_at_rate`; a seed whose curve does not reach R* is left out, named);
  - GECO: the anisotropy of the runs whose β GECO adapted to R* (spec appendix B).

Only runs that pass the convergence rules of params.yaml (`rd_train.analysis.convergence`) enter.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rd_train.analysis import Comparison, Rules, compare_lower, value_at_rate
from rd_train.analysis.convergence import Convergence, check
from rd_train.errors import MissingDataError
from rd_train.sweep import family_label, neural_families


@dataclass
class Run:
    sweep: str  # fixed | geco
    family: str  # pixel | a key of params.yaml losses
    lam: float
    beta: float  # the fixed β, or GECO's initial β
    target: float | None
    seed: int
    dir: Path
    metrics: dict[str, Any]
    convergence: Convergence

    @property
    def kl(self) -> float:
        return float(self.metrics["kl"])

    @property
    def anisotropy(self) -> float:
        return float(self.metrics["anisotropy"])

    @property
    def pixel_sse(self) -> float:
        return float(self.metrics["distortion"]["pixel_sse"])


STUDIED = ("fixed", "geco")  # the sweeps the weight analyses read (dvc.yaml: their stages' deps)


def load_runs(runs: str | Path, rules: Rules, window_rule: Any = None) -> list[Run]:
    """The finished runs of the fixed-β and GECO sweeps under ``runs`` (``<sweep>/<family>/<run>``), each
    named by the identity its sweep wrote into its metrics, never by its folder."""
    out = []
    for path in sorted(Path(runs).glob("*/*/*/metrics.json")):
        metrics = json.loads(path.read_text())
        identity, c = metrics.get("identity"), metrics["config"]
        if not isinstance(identity, dict) or "sweep" not in identity:
            raise MissingDataError(f"{path}: no run identity (a run trained before protocol v3); re-run its "
                                   "sweep stage")
        if identity["sweep"] not in STUDIED:
            continue
        out.append(
            Run(
                sweep=identity["sweep"],
                family=identity["family"],
                lam=float(c["loss"]["lam"]),
                beta=float(c["rate"]["beta"]),
                target=c["rate"]["target"],
                seed=int(c["seed"]),
                dir=path.parent,
                metrics=metrics,
                convergence=check(metrics, rules, window_rule),
            )
        )
    if not out:
        raise MissingDataError(
            f"no finished runs under {runs} (runs/<sweep>/<family>/<run>/metrics.json): "
            "run the sweep stages first (dvc repro)"
        )
    return out


@dataclass
class MatchedRate:
    """Both estimates of the anisotropy claim at one rate target, with what went into them."""

    target: float
    interpolated: Comparison
    geco: Comparison
    interpolated_values: dict[float, dict[int, float]]  # λ -> seed -> anisotropy at the target
    excluded: list[str] = field(default_factory=list)  # seeds without an interpolated value, and why


@dataclass
class Study:
    params: dict[str, Any]
    rules: Rules
    runs: list[Run]

    @property
    def families(self) -> list[str]:
        return neural_families(self.params)

    def label(self, family: str) -> str:
        return family_label(self.params, family)

    @property
    def targets(self) -> list[float]:
        return [float(t) for t in self.params["sweep"]["rate_targets"]]

    def runs_of(self, sweep: str, family: str, converged: bool = False) -> list[Run]:
        """The family's runs and the shared λ = 0 baseline."""
        return [
            r
            for r in self.runs
            if r.sweep == sweep and r.family in (family, "pixel") and (r.convergence.passed or not converged)
        ]

    def grouped(
        self, sweep: str, family: str, converged: bool = True
    ) -> dict[tuple[float, float], list[Run]]:
        """(λ, β or target) -> runs over seeds."""
        groups: dict[tuple[float, float], list[Run]] = defaultdict(list)
        for r in self.runs_of(sweep, family, converged):
            groups[(r.lam, float(r.target or 0) if sweep == "geco" else r.beta)].append(r)
        return dict(sorted(groups.items()))

    def lams(self, family: str) -> list[float]:
        return sorted({r.lam for r in self.runs_of("fixed", family) + self.runs_of("geco", family)})

    def rate_claim(self, family: str) -> dict[float, Comparison]:
        """β -> KL at λ_max vs λ = 0."""
        groups, top = self.grouped("fixed", family), max(self.lams(family))
        betas = sorted({beta for _, beta in groups} | {r.beta for r in self.runs_of("fixed", family)})
        return {
            beta: compare_lower(
                [r.kl for r in groups.get((0.0, beta), [])],
                [r.kl for r in groups.get((top, beta), [])],
                self.rules.alpha,
                self.rules.confidence,
            )
            for beta in betas
        }

    def curves(self, family: str, converged: bool = True) -> dict[tuple[float, int], list[Run]]:
        """(λ, seed) -> the fixed-β runs that trace that seed's (validation KL, anisotropy) curve."""
        curves: dict[tuple[float, int], list[Run]] = defaultdict(list)
        for r in self.runs_of("fixed", family, converged):
            curves[(r.lam, r.seed)].append(r)
        return dict(sorted(curves.items()))

    def matched_rate(self, family: str) -> list[MatchedRate]:
        top = max(self.lams(family))
        curves = self.curves(family)
        seeds = sorted({r.seed for r in self.runs_of("fixed", family)})
        geco = self.grouped("geco", family)
        out = []
        for target in self.targets:
            values: dict[float, dict[int, float]] = {0.0: {}, top: {}}
            excluded = []
            for lam in (0.0, top):
                for seed in seeds:
                    points = curves.get((lam, seed), [])
                    try:
                        values[lam][seed] = value_at_rate(
                            [r.kl for r in points], [r.anisotropy for r in points], target
                        )
                    except ValueError as error:
                        excluded.append(f"λ = {lam:g}, seed {seed}: {error}")
            interpolated = compare_lower(
                list(values[0.0].values()),
                list(values[top].values()),
                self.rules.alpha,
                self.rules.confidence,
            )
            geco_cmp = compare_lower(
                [r.anisotropy for r in geco.get((0.0, target), [])],
                [r.anisotropy for r in geco.get((top, target), [])],
                self.rules.alpha,
                self.rules.confidence,
            )
            out.append(MatchedRate(target, interpolated, geco_cmp, values, excluded))
        return out
