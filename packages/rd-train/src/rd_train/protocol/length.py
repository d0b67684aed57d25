"""The anisotropy effect against training length (protocol v3, issue 30 D), a section of claims.md.

The anisotropy keeps moving with training in every arm (convergence.md), so the effect λ_max vs λ = 0 is
shown at every length that was measured, side by side:

* **at matched rate**, this sweep's GECO runs at each target that was trained at more than one length
  (the ``geco`` sweep at the default steps, the ``length`` replicate at twice them);
* **at a fixed β**, this sweep's fixed-β runs and, beside them, the length pilot's runs of the same cells
  (``benchmarks/results/cpu-convergence-pilot.json``: an earlier code version and protocol, two seeds,
  1500 steps from its reference sweep, 3000 and 6000 trained by the pilot). The pilot rows describe;
  no verdict reads them.

Each effect is the paired change of the geometric mean over the seeds both arms have
(`paired.paired_log_ratio`), with its t-interval in log ratio.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from rd_train.analysis import positive_ci
from rd_train.analysis.trends import format_relative_effect
from rd_train.protocol.paired import paired_log_ratio

PILOT = "benchmarks/results/cpu-convergence-pilot.json"


@dataclass(frozen=True)
class LengthRow:
    rate: str  # "matched, 10 nats" or "fixed β = 0.016"
    family: str
    source: str
    steps: int
    control: dict[int, float]  # seed -> anisotropy at λ = 0
    treated: dict[int, float]  # seed -> anisotropy at λ_max
    lam: float
    architecture: str = "vector"

    def line(self, label: str) -> str:
        seeds = sorted(set(self.control) & set(self.treated))
        head = f"| {self.rate} | {label} | {self.architecture} | {self.source} | {self.steps}"
        if not seeds:
            return f"{head} | 0 | – | – | – |"
        c, t = [self.control[s] for s in seeds], [self.treated[s] for s in seeds]
        e = paired_log_ratio(t, c)
        return (f"{head} | {len(seeds)} | "
                f"{positive_ci(c).mean:.3f} | {positive_ci(t).mean:.3f} (λ = {self.lam:g}) | "
                f"{format_relative_effect(e.effect, e.low, e.high)} |")


def _by_seed(records: Iterable[dict[str, Any]]) -> dict[int, float]:
    out = {}
    for r in records:
        value = float(r["metrics"].get("anisotropy", math.nan))
        if math.isfinite(value) and value > 0:
            out[int(r["identity"]["seed"])] = value
    return out


def record_rows(records: list[dict[str, Any]], families: list[str],
                fixed_beta: float | None) -> list[LengthRow]:
    """The rows this sweep's records give, per architecture: matched rate at each target trained at
    several lengths, and the fixed-β cells at ``fixed_beta`` (the pilot's β)."""
    rows = []
    architectures = sorted({r["identity"]["architecture"] for r in records}, key=lambda a: a != "vector")
    for architecture, family in ((a, f) for a in architectures for f in families):
        arm = [r for r in records if r["identity"]["architecture"] == architecture
               and r["identity"]["family"] in (family, "pixel")]
        lams = sorted({float(r["identity"]["lam"]) for r in arm})
        if len(lams) < 2:
            continue
        top = lams[-1]

        def pick(sweep: str, key: str, value: float, lam: float, steps: int,
                 arm: list[dict[str, Any]] = arm) -> dict[int, float]:
            return _by_seed(r for r in arm if r["identity"]["sweep"] == sweep
                            and float(r["identity"][key]) == value and float(r["identity"]["lam"]) == lam
                            and int(r["identity"]["steps"]) == steps)

        tracked = [r["identity"] for r in arm if r["identity"]["sweep"] in ("geco", "length")]
        for target in sorted({float(i["target"]) for i in tracked}):
            lengths = sorted({(int(i["steps"]), i["sweep"]) for i in tracked if float(i["target"]) == target})
            if len({steps for steps, _ in lengths}) < 2:
                continue
            for steps, sweep in lengths:
                rows.append(LengthRow(f"matched, {target:g} nats", family, f"this sweep ({sweep})", steps,
                                      pick(sweep, "target", target, 0.0, steps),
                                      pick(sweep, "target", target, top, steps), top, architecture))
        if fixed_beta is not None:
            fixed = [r["identity"] for r in arm if r["identity"]["sweep"] == "fixed"
                     and float(r["identity"]["beta"]) == fixed_beta]
            for steps in sorted({int(i["steps"]) for i in fixed}):
                rows.append(LengthRow(f"fixed β = {fixed_beta:g}", family, "this sweep (fixed)", steps,
                                      pick("fixed", "beta", fixed_beta, 0.0, steps),
                                      pick("fixed", "beta", fixed_beta, top, steps), top, architecture))
    return rows


def pilot_rows(pilot: dict[str, Any], families: list[str]) -> list[LengthRow]:
    """The length pilot's runs as rows: its reference sweep's 1500 steps and each length it trained. Its
    runs are named by the cells it lists (``cells``), so nothing is parsed from a name."""
    cells = pilot["cells"]
    beta, seeds = float(cells["beta"]), [int(s) for s in cells["seeds"]]

    def name(family: str, seed: int) -> str:
        return f"{family}_lam{float(cells['lams'][family]):g}_beta{beta:g}_seed{seed}"

    lengths: list[tuple[int, str, dict[str, float]]] = []
    reference = pilot.get("reference_1500_steps")
    if reference:
        lengths.append((1500, "pilot's reference sweep (c0d52b8)",
                        {run: float(v["anisotropy"]) for run, v in reference["runs"].items()}))
    for steps, block in sorted(pilot["lengths"].items(), key=lambda kv: int(kv[0])):
        values = {v["run"]: float(v["anisotropy"]) for v in block["verdicts"]}
        lengths.append((int(steps), "length pilot", values))
    rows = []
    for family in families:
        if family not in cells["lams"]:
            continue
        for steps, source, values in lengths:
            control = {s: values[name("pixel", s)] for s in seeds if name("pixel", s) in values}
            treated = {s: values[name(family, s)] for s in seeds if name(family, s) in values}
            rows.append(LengthRow(f"fixed β = {beta:g}", family, source, steps, control, treated,
                                  float(cells["lams"][family])))
    return rows


def section(records: list[dict[str, Any]], labels: dict[str, str], pilot: dict[str, Any] | None) -> list[str]:
    """claims.md's section: the effect at every measured length, this sweep first, the pilot beside it."""
    families = [f for f in labels if f != "pixel"]
    beta = float(pilot["cells"]["beta"]) if pilot else None
    rows = record_rows(records, families, beta) + (pilot_rows(pilot, families) if pilot else [])
    if not rows:
        return []
    rows.sort(key=lambda r: (not r.rate.startswith("matched"), r.architecture != "vector", r.rate,
                             families.index(r.family), r.steps))
    lines = [
        "## The effect against training length",
        "",
        "The anisotropy still moves with training in every arm (`convergence.md`), so the effect λ_max vs "
        "λ = 0 at each length measured: the change of the geometric mean over the seeds both arms have, "
        "with its t-interval in log ratio. Matched rate: this sweep's GECO runs at each target trained at "
        "two lengths, per architecture (the verdict's \"at both lengths\"). Fixed β: this sweep's fixed-β "
        "runs and, beside "
        f"them, the length pilot's (`{PILOT}`: an earlier code version and protocol, two seeds); the "
        "pilot's rows describe, no verdict reads them.",
        "",
        "| rate | family | architecture | source | steps | seeds | anisotropy λ = 0 (geometric mean) | "
        "at λ_max | effect [95 % CI] |",
        "|---|---|---|---|---:|---:|---:|---:|---|",
    ]
    lines += [row.line(labels.get(row.family, row.family)) for row in rows]
    return [*lines, ""]
