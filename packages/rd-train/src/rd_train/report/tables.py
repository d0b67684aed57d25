"""Markdown and CSV tables: the sweeps (mean and CI over converged seeds), every run's convergence
figures, and every run's numbers."""

from __future__ import annotations

import csv
import io
import math

from rd_train.analysis import mean_ci
from rd_train.report.study import Run, Study


def _ci(values: list[float], study: Study, digits: int = 3) -> str:
    return mean_ci(values, study.rules.confidence).format(digits)


def _passed(runs: list[Run]) -> str:
    return f"{sum(r.convergence.passed for r in runs)}/{len(runs)}"


def sweeps(study: Study) -> str:
    p, rules = study.params, study.rules
    d, m, o = p["data"], p["model"], p["optim"]
    lines = [
        f"# Sweeps (profile `{p.get('profile', 'default')}`)",
        "",
        f"Data: {d.get('name', 'embedded')} at {d['image_size']} px, batch {d['batch_size']}; model: "
        f"{m['kind']} VAE; "
        f"{o['max_steps']} steps per run; seeds {p['sweep']['seeds']}. Each cell: mean "
        f"[{rules.confidence:.0%} CI] over "
        "the seeds whose run passed the convergence rules (`convergence.md`); *passed* counts them. KL, "
        "pixel SSE and "
        "anisotropy on the validation split (nats; per image; population variance of log σ² over "
        "coordinates).",
        "",
    ]
    for family in study.families:
        lines += [
            f"## Fixed β: {study.label(family)}",
            "",
            "| λ | β | passed | KL (nats) | pixel SSE | PSNR (dB) | anisotropy |",
            "|---:|---:|---:|---:|---:|---:|---:|",
        ]
        everything = study.grouped("fixed", family, converged=False)
        for (lam, beta), runs in study.grouped("fixed", family, converged=False).items():
            ok = [r for r in runs if r.convergence.passed]
            lines.append(
                f"| {lam:g} | {beta:g} | {_passed(everything[(lam, beta)])} | "
                f"{_ci([r.kl for r in ok], study)} | "
                f"{_ci([r.pixel_sse for r in ok], study, 4)} | "
                f"{_ci([r.metrics['psnr'] for r in ok], study)} | "
                f"{_ci([r.anisotropy for r in ok], study)} |"
            )
        lines += [
            "",
            f"## Matched rate (GECO): {study.label(family)}",
            "",
            "| λ | target | passed | training KL (EMA) | validation KL | anisotropy | final β |",
            "|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for (lam, target), runs in study.grouped("geco", family, converged=False).items():
            ok = [r for r in runs if r.convergence.passed]
            lines.append(
                f"| {lam:g} | {target:g} | {_passed(runs)} | "
                f"{_ci([r.metrics['geco_training_kl_ema'] for r in ok], study)} | "
                f"{_ci([r.kl for r in ok], study)} | "
                f"{_ci([r.anisotropy for r in ok], study)} | {_ci([r.metrics['beta'] for r in ok], study)} |"
            )
        lines.append("")
    return "\n".join(lines)


def _percent(x: float | None) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{x:.1%}"


def convergence(study: Study) -> str:
    r_ = study.rules
    if r_.method == "window":
        from rd_train.analysis.stationarity import WindowRule

        w = WindowRule.from_params(study.params)
        rule = (f"over the last {w.window:.0%} of training (at least {w.min_points} validations), the "
                "least-squares drift of validation KL, pixel SSE and anisotropy stays within "
                f"max({w.relative:.0%} of the window mean, floors {w.floors[0]:g} nats, {w.floors[1]:g}, "
                f"{w.floors[2]:g}) (`rd_train/analysis/stationarity.py`)")
    else:
        rule = (f"over the last {r_.window:.0%} of training, validation KL, pixel SSE and anisotropy change "
                f"by at most {r_.max_relative_change:.0%} (relative to their final value; from the last "
                "validation at or before step T₀ to the final evaluation)")
    lines = [
        "# Convergence of every run",
        "",
        f"Rules (params.yaml `rules`, method `{r_.method}`, fixed before the sweep ran): {rule}; and a GECO "
        f"run's final training-KL EMA is within {r_.geco_tolerance:.0%} of its target. Runs that fail are "
        "left out of the filtered verdicts (claims.md also gives every verdict with no filter). The Δ "
        "columns are the two-point changes, shown whatever the method.",
        "",
    ]
    total = len(study.runs)
    passed = sum(r.convergence.passed for r in study.runs)
    lines += [
        f"**{passed} of {total} runs passed.**",
        "",
        "| sweep | family | λ | β / target | seed | steps | T₀ | Δ KL | Δ pixel SSE | Δ anisotropy | "
        "GECO error "
        "| passed | why not |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in sorted(study.runs, key=lambda r: (r.sweep, r.family, r.lam, r.target or r.beta, r.seed)):
        c = r.convergence
        control = f"{r.target:g} nats" if r.sweep == "geco" else f"{r.beta:g}"
        lines.append(
            f"| {r.sweep} | {r.family} | {r.lam:g} | {control} | {r.seed} | {r.metrics['steps']} | "
            f"{c.window_start if c.window_start is not None else '–'} | {_percent(c.kl_change)} | "
            f"{_percent(c.pixel_change)} | {_percent(c.anisotropy_change)} | {_percent(c.geco_error)} | "
            f"{'yes' if c.passed else 'NO'} | "
            f"{c.reason} |"
        )
    return "\n".join([*lines, "", *window_rule_section(study), "", *discriminator_section(study)]) + "\n"


def discriminator_section(study: Study) -> list[str]:
    """Does the PatchGAN discriminator keep learning? Its hinge loss, averaged over the second half."""
    cells: dict[tuple[str, str, float], list[float]] = {}
    for r in study.runs:
        value = (r.metrics.get("training_averages", {}).get("discriminator_hinge") or {}).get("second_half")
        if value is not None:
            cells.setdefault((r.sweep, r.family, r.lam), []).append(float(value))
    if not cells:
        return []
    lines = [
        "## The discriminator keeps learning",
        "",
        "PatchGAN's hinge loss mean relu(1 − D(x)) + mean relu(1 + D(x̂)), averaged over the second half "
        "of training: 2 when D cannot tell real from reconstructed, 0 when it separates them with margin "
        "(a discriminator that has won). Same schedule in every run (its learning rate decays with the "
        "generator's).",
        "",
        "| sweep | family | λ | mean | range | runs |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for (sweep, family, lam), values in sorted(cells.items()):
        lines.append(f"| {sweep} | {study.label(family)} | {lam:g} | {sum(values) / len(values):.3f} | "
                     f"{min(values):.3f}–{max(values):.3f} | {len(values)} |")
    return lines


def window_rule_section(study: Study) -> list[str]:
    """Pass counts under the window rule (params.yaml `stationarity`) beside the pre-registered rule."""
    import dataclasses

    from rd_train.analysis.convergence import check
    from rd_train.analysis.stationarity import WindowRule, stationarity
    from rd_train.report.trend_claims import pass_rate_chi2

    rule = WindowRule.from_params(study.params)
    two_point = dataclasses.replace(study.rules, method="two_point")
    counts: dict[tuple[str, str, float], list[int]] = {}
    for r in study.runs:
        s = stationarity(r.metrics, rule)
        geco_ok = r.convergence.geco_error is None or r.convergence.geco_error <= study.rules.geco_tolerance
        cell = counts.setdefault((r.sweep, r.family, r.lam), [0, 0, 0])
        cell[0] += check(r.metrics, two_point).passed
        cell[1] += s.passed and geco_ok
        cell[2] += 1
    decides = "window rule" if study.rules.method == "window" else "two-point rule"
    lines = [
        "## The two rules side by side",
        "",
        f"Over the last {rule.window:.0%} of training, the least-squares drift of validation KL, pixel SSE "
        "and "
        f"anisotropy within max({rule.relative:.0%} of the window mean, floors {rule.floors[0]:g} nats, "
        f"{rule.floors[1]:g}, {rule.floors[2]:g}), and the same GECO target tolerance "
        f"(`rd_train/analysis/stationarity.py`). The {decides} decides which runs enter the filtered "
        "verdicts; the other is a sensitivity check.",
        "",
        "| sweep | family | λ | two-point rule | window rule | runs |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for (sweep, family, lam), (old, new, n) in sorted(counts.items()):
        lines.append(f"| {sweep} | {family} | {lam:g} | {old} | {new} | {n} |")
    for sweep in ("fixed", "geco"):
        for index, name in ((0, "two-point rule"), (1, "window rule")):
            table = [[c[index], c[2] - c[index]] for (s, _, _), c in sorted(counts.items()) if s == sweep]
            p = pass_rate_chi2(table)
            if math.isfinite(p):
                lines.append(f"- {sweep}, {name}: pass rate against (family, λ), χ² p = {p:.2g}")
    return lines


RUN_COLUMNS = (
    "sweep",
    "family",
    "lam",
    "beta",
    "target",
    "seed",
    "steps",
    "kl",
    "variance_kl",
    "anisotropy",
    "pixel_sse",
    "psnr",
    "active_units",
    "final_beta",
    "geco_training_kl_ema",
    "kl_change",
    "pixel_change",
    "anisotropy_change",
    "geco_error",
    "converged",
)


def runs_csv(study: Study) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(RUN_COLUMNS)
    for r in sorted(study.runs, key=lambda r: (r.sweep, r.family, r.lam, r.target or r.beta, r.seed)):
        m, c = r.metrics, r.convergence
        writer.writerow(
            [
                r.sweep,
                r.family,
                r.lam,
                r.beta,
                "" if r.target is None else r.target,
                r.seed,
                m["steps"],
                f"{r.kl:.6g}",
                f"{m['variance_kl']:.6g}",
                f"{r.anisotropy:.6g}",
                f"{r.pixel_sse:.6g}",
                f"{m['psnr']:.6g}",
                m["active_units"],
                f"{m['beta']:.6g}",
                f"{m['geco_training_kl_ema']:.6g}" if "geco_training_kl_ema" in m else "",
                f"{c.kl_change:.6g}",
                f"{c.pixel_change:.6g}",
                f"{c.anisotropy_change:.6g}",
                "" if c.geco_error is None else f"{c.geco_error:.6g}",
                int(c.passed),
            ]
        )
    return out.getvalue()
