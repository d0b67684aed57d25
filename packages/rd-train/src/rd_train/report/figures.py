"""Every figure under ``paper/figures/``, drawn from the runs (never from typed-in numbers)."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from rd_theory.atomic import atomic_write

from rd_train.analysis import mean_ci
from rd_train.report.study import Run, Study


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> None:
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    _pyplot().close(fig)


def _panels(study: Study, width: float = 5.2) -> tuple[Any, list[Any]]:
    n = len(study.families)
    fig, axes = _pyplot().subplots(1, n, figsize=(width * n, 4.3), squeeze=False)
    return fig, list(axes[0])


def _colour(study: Study, family: str) -> Callable[[float], Any]:
    lams = study.lams(family)
    cmap = _pyplot().get_cmap("viridis")
    return lambda lam: cmap(lams.index(lam) / max(1, len(lams) - 1) * 0.85)


def _ci_err(values: list[float], study: Study) -> tuple[float, float]:
    ci = mean_ci(values, study.rules.confidence)
    return ci.mean, (ci.high - ci.mean) if ci.n > 1 else 0.0


def rd_frontier(study: Study, path: Path) -> None:
    fig, axes = _panels(study)
    for ax, family in zip(axes, study.families, strict=True):
        colour, groups = _colour(study, family), study.grouped("fixed", family)
        for lam in study.lams(family):
            pts = sorted(
                (np.mean([r.kl for r in g]), np.mean([r.pixel_sse for r in g]))
                for (l_, _), g in groups.items()
                if l_ == lam and g
            )
            if pts:
                ax.plot(*zip(*pts, strict=True), "o-", color=colour(lam), label=f"λ = {lam:g}")
        ax.set(
            xlabel="rate: validation KL (nats per image)",
            ylabel="pixel SSE per image",
            title=f"RD points over β (mean over converged seeds)\n{study.label(family)}",
        )
        ax.legend(fontsize=8)
    _save(fig, path)


def kl_vs_beta(study: Study, family: str, path: Path) -> None:
    fig, ax = _pyplot().subplots(figsize=(5.5, 4.3))
    colour, groups = _colour(study, family), study.grouped("fixed", family)
    for lam in study.lams(family):
        pts = sorted(
            (beta, *_ci_err([r.kl for r in g], study)) for (l_, beta), g in groups.items() if l_ == lam and g
        )
        if pts:
            b, m, e = zip(*pts, strict=True)
            ax.errorbar(b, m, yerr=e, fmt="o-", capsize=3, color=colour(lam), label=f"λ = {lam:g}")
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="β (KL weight)",
        ylabel="final validation KL (nats per image)",
        title=f"Final KL vs β (mean, {study.rules.confidence:.0%} CI over seeds)\n{study.label(family)}",
    )
    ax.legend(fontsize=8)
    _save(fig, path)


def anisotropy_vs_kl(study: Study, path: Path) -> None:
    """The fixed-β sweep's (KL, anisotropy) points per λ and seed, the interpolating curves, and the
    interpolated values at the rate targets (the 'interpolated' estimate of the anisotropy claim)."""
    from scipy.interpolate import PchipInterpolator

    fig, axes = _panels(study, 5.6)
    for ax, family in zip(axes, study.families, strict=True):
        colour = _colour(study, family)
        curves: dict[tuple[float, int], list[Run]] = {}
        for r in study.runs_of("fixed", family, converged=True):
            curves.setdefault((r.lam, r.seed), []).append(r)
        for (lam, seed), runs in sorted(curves.items()):
            runs.sort(key=lambda r: r.kl)
            k, a = [r.kl for r in runs], [r.anisotropy for r in runs]
            first = seed == min(s for (l_, s) in curves if l_ == lam)
            ax.plot(k, a, "o", ms=3.5, color=colour(lam), label=f"λ = {lam:g}" if first else None)
            if len(k) >= 2 and min(np.diff(k)) > 0:
                grid = np.geomspace(k[0], k[-1], 60)
                ax.plot(
                    grid,
                    PchipInterpolator(np.log(k), a)(np.log(grid)),
                    "-",
                    lw=0.8,
                    color=colour(lam),
                    alpha=0.6,
                )
        for m in study.matched_rate(family):
            ax.axvline(m.target, ls=":", color="grey", lw=1)
            for lam, by_seed in m.interpolated_values.items():
                ax.plot(
                    [m.target] * len(by_seed), list(by_seed.values()), "x", ms=8, mew=2, color=colour(lam)
                )
        ax.set(
            xscale="log",
            xlabel="validation KL (nats per image)",
            ylabel="anisotropy Var_j(log σ²_j)",
            title=f"Anisotropy vs achieved rate (fixed-β sweep)\n{study.label(family)}; "
            "× = value at a target",
        )
        ax.xaxis.set_minor_formatter(_pyplot().NullFormatter())  # minor log labels collide
        ax.legend(fontsize=8)
    _save(fig, path)


def anisotropy_vs_lambda(study: Study, path: Path) -> None:
    fig, axes = _panels(study)
    for ax, family in zip(axes, study.families, strict=True):
        groups = study.grouped("geco", family)
        for i, m in enumerate(study.matched_rate(family)):
            pts = sorted(
                (lam, *_ci_err([r.anisotropy for r in g], study))
                for (lam, t), g in groups.items()
                if t == m.target and g
            )
            colour = f"C{i}"
            if pts:
                lam, mean, err = zip(*pts, strict=True)
                ax.errorbar(
                    lam, mean, yerr=err, fmt="o-", capsize=3, color=colour, label=f"GECO, {m.target:g} nats"
                )
            interp = [
                (lam, *_ci_err(list(v.values()), study))
                for lam, v in sorted(m.interpolated_values.items())
                if v
            ]
            if interp:
                lam, mean, err = zip(*interp, strict=True)
                ax.errorbar(
                    lam,
                    mean,
                    yerr=err,
                    fmt="s--",
                    capsize=3,
                    mfc="none",
                    color=colour,
                    label=f"interpolated, {m.target:g} nats",
                )
        ax.set(
            xlabel="λ (neural share weight)",
            ylabel="mean per-sample anisotropy",
            title=f"Anisotropy at matched rate (mean, {study.rules.confidence:.0%} CI)\n"
            f"{study.label(family)}",
        )
        ax.legend(fontsize=8)
    _save(fig, path)


def std_profiles(study: Study, path: Path) -> None:
    fig, axes = _panels(study)
    target = max(study.targets)
    for ax, family in zip(axes, study.families, strict=True):
        groups, lams = study.grouped("geco", family), study.lams(family)
        for lam in (lams[0], lams[-1]):
            runs = groups.get((lam, target), [])
            if runs:
                profile = np.mean([r.metrics["std_profile_sorted"] for r in runs], axis=0)
                ax.plot(range(len(profile)), profile, "o-", ms=3, label=f"λ = {lam:g} ({len(runs)} seeds)")
        ax.set(
            xlabel="latent dimension (sorted)",
            ylabel="mean posterior std σ",
            title=f"Posterior std profile, GECO at {target:g} nats\n{study.label(family)}",
        )
        ax.legend(fontsize=8)
    _save(fig, path)


def geco_tracking(study: Study, path: Path) -> None:
    """Training KL of every GECO run of the first seed: colour = target, line style = λ."""
    fig, axes = _panels(study, 5.8)
    seed = min(r.seed for r in study.runs)
    styles = ["-", "--", ":", "-."]
    for ax, family in zip(axes, study.families, strict=True):
        lams = study.lams(family)
        for r in study.runs_of("geco", family):
            if r.seed != seed:
                continue
            steps, kls = training_curve(r.dir, "train/kl")
            i = study.targets.index(float(r.target or 0))
            ax.plot(
                steps,
                kls,
                styles[lams.index(r.lam) % 4],
                lw=1.1,
                color=f"C{i}",
                label=f"λ = {r.lam:g}, target {r.target:g}",
            )
        for i, target in enumerate(study.targets):
            ax.axhline(target, color=f"C{i}", lw=0.8, alpha=0.5)
        ax.set(
            xlabel="training step",
            ylabel="training KL (nats per image)",
            yscale="log",
            title=f"GECO rate tracking (seed {seed}; thin lines: targets)\n{study.label(family)}",
        )
        ax.legend(fontsize=7, ncol=2)
    _save(fig, path)


def training_curve(run_dir: Path, column: str) -> tuple[list[int], list[float]]:
    path = run_dir / "logs" / "version_0" / "metrics.csv"
    steps, values = [], []
    with path.open() as f:
        for row in csv.DictReader(f):
            if row.get(column):
                steps.append(int(row["step"]))
                values.append(float(row[column]))
    return steps, values


def draw_all(study: Study, figures: Path) -> None:
    rd_frontier(study, figures / "rd_frontier.png")
    for family in study.families:
        kl_vs_beta(study, family, figures / f"kl_vs_beta_{family}.png")
    anisotropy_vs_kl(study, figures / "anisotropy_vs_kl.png")
    anisotropy_vs_lambda(study, figures / "anisotropy_vs_lambda.png")
    std_profiles(study, figures / "std_profiles.png")
    geco_tracking(study, figures / "geco_tracking.png")
