"""The finished fixed-β and GECO sweeps as one object for the analyses that load weights (effective
weights, transfer, diffusability): every finished run, named by the identity its sweep wrote into its
metrics, with its window-rule verdict (`rd_train.analysis.convergence`) carried as a diagnostic.

Protocol v3 counts every run: nothing here filters on an outcome. The claims themselves are tested from
the run records (`rd_train.protocol`).
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rd_train.analysis import Rules
from rd_train.analysis.convergence import Convergence, check
from rd_train.errors import MissingDataError

if TYPE_CHECKING:
    from rd_train.params import Params


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
class Study:
    params: Params
    runs: list[Run]

    @property
    def rules(self) -> Rules:
        return self.params.rules

    @property
    def families(self) -> list[str]:
        return self.params.families

    def label(self, family: str) -> str:
        return self.params.label(family)

    @property
    def targets(self) -> list[float]:
        return self.params.rate_targets

    def runs_of(self, sweep: str, family: str) -> list[Run]:
        """The family's runs and the shared λ = 0 baseline: every finished run."""
        return [r for r in self.runs if r.sweep == sweep and r.family in (family, "pixel")]

    def grouped(self, sweep: str, family: str) -> dict[tuple[float, float], list[Run]]:
        """(λ, β or target) -> every run over seeds."""
        groups: dict[tuple[float, float], list[Run]] = defaultdict(list)
        for r in self.runs_of(sweep, family):
            groups[(r.lam, float(r.target or 0) if sweep == "geco" else r.beta)].append(r)
        return dict(sorted(groups.items()))

    def lams(self, family: str) -> list[float]:
        return sorted({r.lam for r in self.runs_of("fixed", family) + self.runs_of("geco", family)})
