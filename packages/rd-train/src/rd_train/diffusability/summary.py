r"""From every run's scores to the verdicts and the relations with posterior geometry, by rules fixed in
params.yaml before the stage ran (``diffusability`` and ``rules``).

Verdict "generation improves with λ", per (loss family, rate target, endpoint), on the GECO runs of that
target (λ = 0: the shared pixel-only runs): the Jonckheere–Terpstra trend test over the λ grid in
increasing order (`rd_train.analysis.trend_test`), both directions, p = min(1, 2 min(p_dec, p_inc));
Holm over every (family, target, endpoint) test of a filter; **improves** if the adjusted p < α and the
trend is decreasing (every endpoint is lower-is-better), **worsens** if increasing, otherwise **not
resolved at this scale**. Effect, largest λ against λ = 0: the ratio of means − 1 with Fieller's interval
for the positive latent SW, the difference of means with Welch's interval for the excess KID (it can take
either sign). Protocol v3: every run counts, so the verdicts over every run are the primary ones; the same
over the runs within the window rule (`convergence.md`'s diagnostic) follow as a labelled sensitivity.

Relations over runs: Spearman ρ of each endpoint against each geometry quantity, pooled and within each
rate target (rate drives both geometry and generation, so the pooled ρ alone could be the rate talking),
with percentile bootstrap intervals over runs (seeded).
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import numpy as np
from scipy import stats

from rd_train.analysis import mean_ci, positive_ci
from rd_train.analysis.trends import difference_interval, holm, ratio_interval, trend_test
from rd_train.params.sections import ENDPOINTS, DiffusabilityConfig

GEOMETRY = {
    "anisotropy": "anisotropy Var_j log σ²_j (validation)",
    "active_units": "active units",
    "aggregate_kl": "aggregate posterior's Gaussian KL to N(0, I) (nats)",
    "participation_ratio": "participation ratio of the aggregate covariance",
}
FILTERS = ("all", "converged")  # every run first (protocol v3); the window rule's subset a sensitivity
IMPROVES, WORSENS, UNRESOLVED = "improves", "worsens", "not resolved at this scale"


def records(geco_runs: list[Any], results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for r in geco_runs:
        res = results[r.dir.name]
        out.append(
            {
                "run": r.dir.name,
                "family": r.family,
                "lam": r.lam,
                "target": float(r.target),
                "seed": r.seed,
                "converged": r.convergence.passed,
                "reason": r.convergence.reason,
                **{
                    k: res[k]
                    for k in ("geometry", "flow", "latent", "image", "endpoints", "scaling_factor", "seconds")
                },
            }
        )
    return out


def _cell_runs(
    rows: list[dict[str, Any]], family: str, target: float, lam: float, only_converged: bool
) -> list[dict[str, Any]]:
    return [
        r
        for r in rows
        if r["target"] == target
        and r["lam"] == lam
        and (r["family"] == family or (lam == 0 and r["family"] == "pixel"))
        and (r["converged"] or not only_converged)
    ]


def verdicts(
    rows: list[dict[str, Any]],
    families: list[str],
    lams: dict[str, list[float]],
    targets: list[float],
    endpoints: tuple[str, ...],
    alpha: float,
    confidence: float,
) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for name in FILTERS:
        tests = []
        for family in families:
            for target in targets:
                for endpoint in endpoints:
                    groups = [
                        [
                            r["endpoints"][endpoint]
                            for r in _cell_runs(rows, family, target, lam, name == "converged")
                        ]
                        for lam in lams[family]
                    ]
                    tests.append(_one_test(family, target, endpoint, lams[family], groups, confidence))
        adjusted = holm([t["p"] for t in tests])
        for t, p in zip(tests, adjusted, strict=True):
            t["p_holm"] = p
            if not math.isfinite(p) or p >= alpha:
                t["verdict"] = UNRESOLVED + (
                    " (fewer than two λ with values)" if not math.isfinite(p) else ""
                )
            else:
                t["verdict"] = IMPROVES if t["p_decreasing"] <= t["p_increasing"] else WORSENS
        out[name] = tests
    return out


def _one_test(
    family: str, target: float, endpoint: str, lams: list[float], groups: list[list[float]], confidence: float
) -> dict[str, Any]:
    base, top = groups[0], groups[-1]
    if endpoint == "latent_sw":
        interval = ratio_interval(top, base, confidence) if base else None
        effect = {
            "kind": "ratio",
            "value": interval.effect if interval else math.nan,
            "low": interval.low if interval else math.nan,
            "high": interval.high if interval else math.nan,
            "text": interval.format() if interval else "–",
        }
    else:
        diff = difference_interval(top, base, confidence)
        effect = {
            "kind": "difference",
            "value": diff.effect,
            "low": diff.low,
            "high": diff.high,
            "text": diff.format(),
        }
    row: dict[str, Any] = {
        "family": family,
        "target": target,
        "endpoint": endpoint,
        "lams": lams,
        "n": [len(g) for g in groups],
        "means": [float(np.mean(g)) if g else math.nan for g in groups],
        "effect": effect,
    }
    if sum(bool(g) for g in groups) < 2:
        row.update(p_decreasing=math.nan, p_increasing=math.nan, p=math.nan, method="–")
        return row
    dec, inc = trend_test(groups, "decreasing"), trend_test(groups, "increasing")
    row.update(
        p_decreasing=dec.p_value,
        p_increasing=inc.p_value,
        p=min(1.0, 2 * min(dec.p_value, inc.p_value)),
        method=dec.method,
        statistic=dec.statistic,
    )
    return row


def spearman_with_interval(
    x: list[float], y: list[float], reps: int, seed: int, confidence: float
) -> dict[str, float]:
    a, b = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if a.size < 4 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return {"n": int(a.size), "rho": math.nan, "low": math.nan, "high": math.nan, "p": math.nan}
    result = stats.spearmanr(a, b)
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(reps):
        index = rng.integers(0, a.size, a.size)
        if np.ptp(a[index]) > 0 and np.ptp(b[index]) > 0:
            draws.append(stats.spearmanr(a[index], b[index]).statistic)
    tail = (1 - confidence) / 2
    low, high = np.quantile(draws, [tail, 1 - tail]) if draws else (math.nan, math.nan)
    return {
        "n": int(a.size),
        "rho": float(result.statistic),
        "low": float(low),
        "high": float(high),
        "p": float(result.pvalue),
    }


def relations(
    rows: list[dict[str, Any]],
    targets: list[float],
    endpoints: tuple[str, ...],
    config: DiffusabilityConfig,
    confidence: float,
) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for name in FILTERS:
        chosen = [r for r in rows if r["converged"] or name == "all"]
        table = []
        for endpoint in endpoints:
            for quantity in GEOMETRY:
                for target in [None, *targets]:
                    subset = [r for r in chosen if target is None or r["target"] == target]
                    stat = spearman_with_interval(
                        [r["geometry"][quantity] for r in subset],
                        [r["endpoints"][endpoint] for r in subset],
                        config.bootstrap,
                        config.seed,
                        confidence,
                    )
                    table.append({"endpoint": endpoint, "quantity": quantity, "target": target, **stat})
        out[name] = table
    return out


# Quantities > 0 by construction: their cells are geometric means with the interval in log, which cannot
# reach below 0 (a distance, a loss, an anisotropy). KID differences and MMD² estimates can be negative.
POSITIVE = ("latent_sw", "sw_gaussian", "sw_data", "held_out_flow_loss", "anisotropy")


def cells(
    rows: list[dict[str, Any]],
    families: list[str],
    lams: dict[str, list[float]],
    targets: list[float],
    confidence: float,
) -> list[dict[str, Any]]:
    """Mean [CI] over every seed of every reported number (the geometric mean for the `POSITIVE` ones),
    per (family, target, λ), and how many of the runs are within the window rule."""
    keys = {
        "latent_sw": lambda r: r["endpoints"]["latent_sw"],
        "excess_kid": lambda r: r["endpoints"]["excess_kid"],
        "sw_gaussian": lambda r: r["latent"]["gaussian"]["sw"],
        "sw_data": lambda r: r["latent"]["data"]["sw"],
        "mmd": lambda r: r["latent"]["generated"]["mmd"],
        "mmd_gaussian": lambda r: r["latent"]["gaussian"]["mmd"],
        "mmd_data": lambda r: r["latent"]["data"]["mmd"],
        # Exploratory, added after the first results (not an endpoint): what the sampler and the fitted
        # Gaussian add over the data floor, i.e. the part of the distance a sampler is responsible for.
        "sw_over_floor": lambda r: r["latent"]["generated"]["sw"] - r["latent"]["data"]["sw"],
        "sw_gaussian_over_floor": lambda r: r["latent"]["gaussian"]["sw"] - r["latent"]["data"]["sw"],
        "held_out_flow_loss": lambda r: r["flow"]["held_out_loss"],
        "anisotropy": lambda r: r["geometry"]["anisotropy"],
    }
    out = []
    for family in families:
        for target in targets:
            for lam in lams[family]:
                group = _cell_runs(rows, family, target, lam, False)
                total = len(group)
                within = len(_cell_runs(rows, family, target, lam, True))
                entry: dict[str, Any] = {
                    "family": family,
                    "target": target,
                    "lam": lam,
                    "converged": within,
                    "runs": total,
                }
                for key, get in keys.items():
                    summary = positive_ci if key in POSITIVE else mean_ci
                    ci = summary([get(r) for r in group], confidence)
                    entry[key] = {
                        "mean": ci.mean,
                        "low": ci.low,
                        "high": ci.high,
                        "n": ci.n,
                        "text": ci.format(3),
                    }
                out.append(entry)
    return out


def exploratory(rows: list[dict[str, Any]], config: DiffusabilityConfig, confidence: float) -> dict[str, Any]:
    """Added after the first results (not an endpoint): the latent SW split into the data floor and what
    the sampler adds over it, over every run, and each part's Spearman ρ with the anisotropy."""
    chosen = list(rows)

    def spread(values: list[float]) -> dict[str, float]:
        return {"mean": float(np.mean(values)), "min": float(np.min(values)), "max": float(np.max(values))}

    if not chosen:
        return {"runs": 0}
    floor = [r["latent"]["data"]["sw"] for r in chosen]
    excess = [r["latent"]["generated"]["sw"] - r["latent"]["data"]["sw"] for r in chosen]
    anisotropy = [r["geometry"]["anisotropy"] for r in chosen]
    return {
        "runs": len(chosen),
        "floor": spread(floor),
        "sampler_over_floor": spread(excess),
        "gaussian_over_floor": spread(
            [r["latent"]["gaussian"]["sw"] - r["latent"]["data"]["sw"] for r in chosen]
        ),
        "floor_vs_anisotropy": spearman_with_interval(
            anisotropy, floor, config.bootstrap, config.seed, confidence
        ),
        "excess_vs_anisotropy": spearman_with_interval(
            anisotropy, excess, config.bootstrap, config.seed, confidence
        ),
    }


def summarise(
    study: Any, geco_runs: list[Any], results: dict[str, dict[str, Any]], config: DiffusabilityConfig
) -> dict[str, Any]:
    rows = records(geco_runs, results)
    families = study.families
    targets = [float(t) for t in config.targets] if config.targets else study.targets
    lams = {f: study.lams(f) for f in families}
    rules = study.rules
    passed: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for r in rows:
        key = f"{r['family']} λ={r['lam']:g}"
        passed[key][0] += r["converged"]
        passed[key][1] += 1
    return {
        "config": config.to_dict(),
        "alpha": rules.alpha,
        "confidence": rules.confidence,
        "endpoints": {e: ENDPOINTS[e] for e in config.endpoints},
        "geometry_quantities": GEOMETRY,
        "families": {f: study.label(f) for f in families},
        "lams": lams,
        "targets": targets,
        "pass_rates": dict(passed),
        "records": rows,
        "cells": cells(rows, families, lams, targets, rules.confidence),
        "verdicts": verdicts(rows, families, lams, targets, config.endpoints, rules.alpha, rules.confidence),
        "relations": relations(rows, targets, config.endpoints, config, rules.confidence),
        "exploratory": exploratory(rows, config, rules.confidence),
        "seconds": sum(r["seconds"] for r in rows),
    }
