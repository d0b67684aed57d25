"""The DVC stage ``analysis``: effective distortion weights of every finished run
(`rd_train.mechanism.prices`), ``paper/tables/effective_weights.md``, its two figures, and the data
``aggregate`` turns into a claims line."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from rd_theory.atomic import atomic_write_text
from scipy import stats

from rd_train.analysis import compare_lower, correlation_ci, positive_ci, share_ci
from rd_train.mechanism.study import Run, Study
from rd_train.pipeline.workers import map_in_workers


def compute(study: Study, n_images: int, jobs: int = 1) -> list[dict[str, Any]]:
    """One record per finished run: where it sits in the sweeps, and its `run_prices` summary."""
    runs = sorted((r for r in study.runs if r.sweep in ("fixed", "geco")), key=lambda r: str(r.dir))
    results = list(map_in_workers(_analyse, [(str(r.dir), n_images) for r in runs], jobs))
    return _records(runs, results) + _transfer_records(study, n_images, jobs)


# How a cell of the matched-rate table summarises each quantity over seeds: on the scale where it is
# unbounded (`rd_train.analysis.statistics`), so an interval stays within the quantity's range.
CELL_SUMMARY = {"spearman_rho": correlation_ci, "predicted_anisotropy": positive_ci,
                "measured_anisotropy": positive_ci, "log_price_spread": positive_ci,
                "price_share_neural": share_ci}


def _records(runs: list[Run], results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "sweep": r.sweep,
            "family": r.family,
            "lam": r.lam,
            "beta": r.beta,
            "target": r.target,
            "seed": r.seed,
            "converged": r.convergence.passed,
            "run": r.dir.name,
            **result,
        }
        for r, result in zip(runs, results, strict=True)
    ]


def _transfer_records(study: Study, n_images: int, jobs: int) -> list[dict[str, Any]]:
    """Per GECO run at λ > 0: the prediction from the λ = 0 run of its seed and target
    (`rd_train.mechanism.transfer`), as records with sweep "transfer"."""
    pairs = []
    for family in study.families:
        base = {(r.target, r.seed): r for r in study.runs_of("geco", family) if r.lam == 0}
        pairs += [(family, base[(r.target, r.seed)], r) for r in study.runs_of("geco", family)
                  if r.lam > 0 and (r.target, r.seed) in base]
    results = list(map_in_workers(_transfer, [(str(b.dir), str(r.dir), n_images) for _, b, r in pairs], jobs))
    return [{"sweep": "transfer", "family": family, "lam": r.lam, "target": r.target, "seed": r.seed,
             "run": r.dir.name, "base_run": b.dir.name,
             "converged": r.convergence.passed and b.convergence.passed, **result}
            for (family, b, r), result in zip(pairs, results, strict=True)]


def _analyse(args: tuple[str, int]) -> dict[str, Any]:
    from rd_train.mechanism.prices import analyse_run

    run_dir, n_images = args
    return analyse_run(Path(run_dir), n_images)


def _transfer(args: tuple[str, str, int]) -> dict[str, Any]:
    from rd_train.mechanism.transfer import transfer_run

    base_dir, lam_dir, n_images = args
    return transfer_run(Path(base_dir), Path(lam_dir), n_images)


def _by_run(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {f"{r['sweep']}/{r['run']}": r for r in records}


def _geco_records(
    study: Study, records: list[dict[str, Any]], family: str
) -> dict[tuple[float, float], list[dict]]:
    index, out = _by_run(records), {}
    for (lam, target), runs in study.grouped("geco", family).items():
        out[(lam, target)] = [index[f"geco/{r.dir.name}"] for r in runs if f"geco/{r.dir.name}" in index]
    return out


def agreement(records: list[dict[str, Any]]) -> dict[str, float]:
    """Predicted vs measured anisotropy over every matched-rate (GECO) run (protocol v3: no filter)."""
    chosen = [r for r in records if r["sweep"] == "geco"]
    if len(chosen) < 3:
        return {"runs": len(chosen)}
    predicted = np.array([r["predicted_anisotropy"] for r in chosen])
    measured = np.array([r["measured_anisotropy"] for r in chosen])
    return {
        "runs": len(chosen),
        "pearson": float(stats.pearsonr(predicted, measured).statistic),
        "spearman": float(stats.spearmanr(predicted, measured).statistic),
        "median_ratio": float(np.median(predicted / measured)),
        "mean_rho": float(np.mean([r["spearman_rho"] for r in chosen])),
    }


def table(study: Study, records: list[dict[str, Any]]) -> str:
    a, conf = agreement(records), study.rules.confidence
    lines = [
        "# Effective distortion weights: the toy model's mechanism in the trained VAEs",
        "",
        "For every finished run, on the first validation images, the Gauss-Newton effective weight c_i "
        "of each latent "
        "coordinate (the curvature of the run's per-sample distortion along e_i at the posterior mean; "
        "`rd_train/mechanism/prices.py`), the toy model's optimum σ_i² = β / (β + 2 c_i) as a prediction "
        "of the "
        "encoder's posterior variances, and the spread Var_i log c_i of the prices. PatchGAN: only the "
        "discriminator "
        "feature-matching part of its generator loss is a distance and enters c.",
        "",
    ]
    if a["runs"] >= 3:
        lines += [
            f"Over the {a['runs']} matched-rate (GECO) runs: predicted vs measured mean "
            "anisotropy, "
            f"Pearson r = {a['pearson']:.3f}, Spearman ρ = {a['spearman']:.3f}, median ratio predicted "
            "/ measured "
            f"= {a['median_ratio']:.2f}; per-coordinate Spearman ρ of predicted vs measured log σ², "
            "mean over runs "
            f"= {a['mean_rho']:.3f}.",
            "",
        ]
    lines += [
        f"## Matched rate (GECO runs; [{conf:.0%} CI] over every seed: ρ averaged in Fisher's z, the "
        "anisotropies and Var_i log c_i as geometric means, the neural share in logit, so no interval "
        "leaves its quantity's range)",
        "",
        "| family | λ | target | runs | ρ(pred, measured log σ²) | predicted anisotropy | measured "
        "anisotropy "
        "| Var_i log c_i | neural share of c |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for family in study.families:
        for (lam, target), group in _geco_records(study, records, family).items():
            def ci(key: str, rows: list[dict[str, Any]] = group) -> str:
                return CELL_SUMMARY[key]([r[key] for r in rows], conf).format(3)

            lines.append(
                f"| {study.label(family)} | {lam:g} | {target:g} | {len(group)} | "
                f"{ci('spearman_rho')} | "
                f"{ci('predicted_anisotropy')} | {ci('measured_anisotropy')} | {ci('log_price_spread')} | "
                f"{ci('price_share_neural')} |"
            )
    lines += ["", *flatter_prices(study, records)]
    lines += [
        "",
        "## Every run",
        "",
        "The window rule's verdict (`convergence.md`) is a diagnostic beside each run, never a filter.",
        "",
        "| sweep | run | within the window rule | β | ρ | predicted anisotropy | measured anisotropy | "
        "Var_i log c_i |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in (r for r in records if r["sweep"] != "transfer"):
        lines.append(
            f"| {r['sweep']} | {r['run']} | {'yes' if r['converged'] else 'no'} | {r['beta']:.4g} | "
            f"{r['spearman_rho']:.3f} | {r['predicted_anisotropy']:.3f} | {r['measured_anisotropy']:.3f} | "
            f"{r['log_price_spread']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def flatter_prices(study: Study, records: list[dict[str, Any]]) -> list[str]:
    """Does the neural loss flatten the price profile at matched rate, and does that track the anisotropy?
    λ_max against λ = 0 over every run (one-sided Welch), and the non-circular prediction of each λ's
    change (`mechanism.transfer_lines`)."""
    from rd_train.mechanism.transfer_tables import transfer_lines

    lines = [
        "## Flatter prices at matched rate?", "",
        "Var_i log c_i per GECO run, every seed: each λ column gives the geometric mean over seeds with "
        "its t-interval in log (it stays above 0); the effect is the ratio of the arithmetic means with "
        "Fieller's interval, and p the one-sided Welch test of λ = max below λ = 0.", "",
        "| family | target (nats) | Var_i log c_i at λ = 0 | at λ = max | effect [CI] | p | flatter prices? "
        "| anisotropy change (GECO) |",
        "|---|---:|---:|---:|---:|---:|---|---:|",
    ]
    for family in study.families:
        groups, top = _geco_records(study, records, family), max(study.lams(family))
        for target in study.targets:
            base = [r["log_price_spread"] for r in groups.get((0.0, target), [])]
            high = [r["log_price_spread"] for r in groups.get((top, target), [])]
            c = compare_lower(base, high, study.rules.alpha, study.rules.confidence)
            aniso = compare_lower(
                [r["measured_anisotropy"] for r in groups.get((0.0, target), [])],
                [r["measured_anisotropy"] for r in groups.get((top, target), [])],
            )
            effect = (
                "–"
                if not math.isfinite(c.effect)
                else (
                    f"{c.effect:+.1%}"
                    + (f" [{c.effect_low:+.1%}, {c.effect_high:+.1%}]" if math.isfinite(c.effect_low) else "")
                )
            )
            p = "–" if not math.isfinite(c.p_value) else f"{c.p_value:.2g}"
            lines.append(
                f"| {study.label(family)} | {target:g} | {_positive(base)} | {_positive(high)} | "
                f"{effect} | {p} | "
                f"**{c.verdict}** (λ = {top:g}) | "
                f"{'–' if not math.isfinite(aniso.effect) else f'{aniso.effect:+.1%}'} |"
            )
    return [*lines, "", *transfer_lines(study, records)]


def _positive(values: list[float]) -> str:
    return positive_ci(values).format(3) if values else "–"


def figures(study: Study, records: list[dict[str, Any]], directory: Path) -> None:
    from rd_train.report.plotting import panels, pyplot, save

    target = max(study.targets)
    fig, axes = panels(len(study.families))
    for ax, family in zip(axes, study.families, strict=True):
        groups, lams = _geco_records(study, records, family), study.lams(family)
        for lam in (lams[0], lams[-1]):
            rows = groups.get((lam, target), [])
            if rows:
                spectrum = np.exp(np.mean([r["sorted_log_prices"] for r in rows], axis=0))
                ax.plot(
                    range(1, len(spectrum) + 1),
                    spectrum,
                    "o-",
                    ms=3,
                    label=f"λ = {lam:g} ({len(rows)} seeds)",
                )
        ax.set(
            yscale="log",
            xlabel="latent coordinate (sorted by price)",
            ylabel="effective weight c_i (geometric mean)",
            title=f"Effective-weight spectra, GECO at {target:g} nats\n{study.label(family)}",
        )
        ax.legend(fontsize=8)
    save(fig, directory / "effective_weight_spectra.png")

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.6, 5.2))
    markers = {0.0: "o"}
    for i, family in enumerate(study.families):
        for (lam, _), group in _geco_records(study, records, family).items():
            rows = group
            marker = markers.setdefault(lam, "sD^v"[len(markers) % 4])
            label = f"{'pixel only' if lam == 0 else study.label(family)}, λ = {lam:g}"
            ax.plot(
                [r["measured_anisotropy"] for r in rows],
                [r["predicted_anisotropy"] for r in rows],
                marker,
                color="k" if lam == 0 else f"C{i}",
                mfc="none",
                label=label,
            )
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    values = [
        r[k] for r in records if r["sweep"] == "geco" for k in ("measured_anisotropy", "predicted_anisotropy")
    ]
    if values:
        top = max(values) * 1.05
        ax.plot([0, top], [0, top], "--", color="grey", lw=1, label="identity")
        unique["identity"] = ax.get_lines()[-1]
    ax.set(
        xlabel="measured anisotropy (encoder)",
        ylabel="predicted anisotropy (toy model from c_i)",
        title="Predicted vs measured anisotropy\n(every GECO run, all families and targets)",
    )
    ax.legend(unique.values(), unique.keys(), fontsize=7)
    save(fig, directory / "predicted_vs_measured_anisotropy.png")


def run_stage(study: Study, paper: Path, output: Path, n_images: int, jobs: int) -> list[dict[str, Any]]:
    records = compute(study, n_images, jobs)
    atomic_write_text(output, json.dumps(records, indent=1) + "\n")
    atomic_write_text(paper / "tables" / "effective_weights.md", table(study, records))
    figures(study, records, paper / "figures")
    return records


def load(path: Path) -> list[dict[str, Any]] | None:
    return json.loads(path.read_text()) if path.is_file() else None


__all__ = ["Run", "flatter_prices", "load", "run_stage"]
