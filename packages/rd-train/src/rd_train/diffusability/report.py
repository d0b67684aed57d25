"""``paper/tables/diffusability.md``, the claims section, and the three figures, from the stage's summary."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from rd_train.diffusability.summary import FILTERS

# Protocol v3: every run is the primary analysis; the runs within the window rule (a diagnostic), a
# sensitivity.
WHICH = {"all": "every run, no filter", "converged": "sensitivity: runs within the window rule only"}


def _p(p: float) -> str:
    return "–" if not math.isfinite(p) else f"{p:.2g}" if p >= 1e-3 else f"{p:.1e}"


def _g(x: float, digits: int = 3) -> str:
    return "–" if not math.isfinite(x) else f"{x:.{digits}g}"


def verdict_rows(summary: dict[str, Any], name: str) -> list[str]:
    lines = [
        "| family | target (nats) | endpoint | means over λ (n) | effect, λ max vs 0 [CI] "
        "| p (JT, two-sided) "
        "| p (Holm) | verdict |",
        "|---|---:|---|---|---:|---:|---:|---|",
    ]
    for t in summary["verdicts"][name]:
        means = ", ".join(
            f"{lam:g}: {_g(m)} ({n})" for lam, m, n in zip(t["lams"], t["means"], t["n"], strict=True)
        )
        lines.append(
            f"| {summary['families'][t['family']]} | {t['target']:g} | {t['endpoint']} | {means} | "
            f"{t['effect']['text']} | {_p(t['p'])} | {_p(t['p_holm'])} | **{t['verdict']}** |"
        )
    return lines


def relation_rows(summary: dict[str, Any], name: str) -> list[str]:
    lines = ["| endpoint | geometry | runs | Spearman ρ [bootstrap CI] | p |", "|---|---|---:|---:|---:|"]
    for r in summary["relations"][name]:
        where = "all targets" if r["target"] is None else f"target {r['target']:g}"
        rho = "–" if not math.isfinite(r["rho"]) else f"{r['rho']:+.2f} [{r['low']:+.2f}, {r['high']:+.2f}]"
        lines.append(f"| {r['endpoint']} | {r['quantity']} ({where}) | {r['n']} | {rho} | {_p(r['p'])} |")
    return lines


def _header(summary: dict[str, Any]) -> list[str]:
    c, f = summary["config"], summary["config"]["flow"]
    spaces = " and ".join(f"`{s}`" for s in c["spaces"])
    return [
        f"Every matched-rate (GECO) run's latents get the same sampler: rectified flow, "
        f"an MLP for vector latents (a small residual conv net for spatial ones) of width {f['width']} × "
        f"depth {f['depth']}, {f['steps']} steps of "
        f"batch {f['batch_size']} (AdamW, lr {f['lr']:g}, cosine to 10 %), EMA {f['ema_decay']:g}, "
        f"{c['samples']} samples by Heun's method in {f['solver_steps']} steps, seed {c['seed']}. Latents "
        "standardised per coordinate with the training latents' statistics. Scores against the held-out "
        f"(validation) images and their latents; image features: {spaces} (the first is primary; "
        "`rd_train/diffusability/features.py` says why). Endpoints, lower is better: "
        + "; ".join(f"`{k}`: {v}" for k, v in summary["endpoints"].items())
        + ".",
        "",
    ]


def table(summary: dict[str, Any]) -> str:
    conf = summary["confidence"]
    primary = summary["config"]["spaces"][0]
    lines = [
        "# Beyond the paper: diffusability of the latents",
        "",
        *_header(summary),
        f"Stage time: {summary['seconds']:.0f} s of scoring over {len(summary['records'])} runs "
        "(sum over workers).",
        "",
        f"## Per cell (mean [{conf:.0%} CI] over every seed; latent SW, its floors, the flow loss and the "
        "anisotropy: geometric mean with its interval in log, which stays above 0)",
        "",
        "Floors in every row: *Gaussian*, a Gaussian with the training latents' mean and covariance; "
        "*data*, training latents themselves (what a perfect sampler of the training distribution "
        "scores at this sample size). *SW − floor*: the sampler's (and the Gaussian's) SW minus the data "
        "floor, the part a sampler is responsible for (exploratory: added after the first results).",
        "",
        "| family | target | λ | within the window rule | latent SW | SW Gaussian | SW data | SW − floor | "
        "SW − floor, Gaussian | MMD² | MMD² Gaussian | MMD² data | held-out flow loss | excess KID | "
        "anisotropy |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in summary["cells"]:
        lines.append(
            f"| {summary['families'][c['family']]} | {c['target']:g} | {c['lam']:g} | "
            f"{c['converged']}/{c['runs']} | "
            + " | ".join(
                c[k]["text"]
                for k in (
                    "latent_sw",
                    "sw_gaussian",
                    "sw_data",
                    "sw_over_floor",
                    "sw_gaussian_over_floor",
                    "mmd",
                    "mmd_gaussian",
                    "mmd_data",
                    "held_out_flow_loss",
                    "excess_kid",
                    "anisotropy",
                )
            )
            + " |"
        )
    lines += ["", *floor_lines(summary)]
    for name in FILTERS:
        heading = f"## Verdicts: generation improves with λ — {WHICH[name]}"
        lines += ["", heading, "", *verdict_rows(summary, name)]
    for name in FILTERS:
        which = WHICH[name]
        lines += ["", f"## Endpoints against posterior geometry — {which}", "", *relation_rows(summary, name)]
    lines += [
        "",
        "## Every run",
        "",
        f"KID ×1 in the standardised `{primary}` space; P / R: k-NN precision / recall of the decoded "
        "samples; *recon*: the VAE's reconstructions of held-out images (its own floor).",
        "",
        "| run | converged | anisotropy | aggregate KL | PR | latent SW (gen / Gauss / data) | "
        "MMD² (gen / Gauss / data) | flow loss held-out | KID (gen / Gauss / recon / data) | P / R | "
        + " | ".join(f"KID {s} (gen / recon)" for s in summary["config"]["spaces"][1:])
        + " |",
        "|---|---|---:|---:|---:|---|---|---:|---|---|" + "---|" * (len(summary["config"]["spaces"]) - 1),
    ]
    for r in summary["records"]:
        lat, img = r["latent"], r["image"][primary]
        other = " | ".join(
            f"{_g(r['image'][s]['generated']['kid'])} / {_g(r['image'][s]['reconstruction']['kid'])}"
            for s in summary["config"]["spaces"][1:]
        )
        lines.append(
            f"| {r['run']} | {'yes' if r['converged'] else 'no'} | {r['geometry']['anisotropy']:.3f} | "
            f"{r['geometry']['aggregate_kl']:.3f} | {r['geometry']['participation_ratio']:.2f} | "
            + " / ".join(_g(lat[k]["sw"]) for k in ("generated", "gaussian", "data"))
            + " | "
            + " / ".join(_g(lat[k]["mmd"]) for k in ("generated", "gaussian", "data"))
            + " | "
            + f"{r['flow']['held_out_loss']:.3f} | "
            + " / ".join(_g(img[k]["kid"]) for k in ("generated", "gaussian", "reconstruction", "data"))
            + " | "
            + f"{img['generated']['precision']:.2f} / {img['generated']['recall']:.2f} |"
            + (f" {other} |" if other else "")
        )
    return "\n".join(lines) + "\n"


def floor_lines(summary: dict[str, Any]) -> list[str]:
    """How much of the latent SW is the sampler's, and whether the floor alone follows the anisotropy."""
    e = summary.get("exploratory")
    if not e or not e["runs"]:
        return []
    rho = [
        f"{name}: ρ = {r['rho']:+.2f} [{r['low']:+.2f}, {r['high']:+.2f}]"
        for name, r in (
            ("data floor", e["floor_vs_anisotropy"]),
            ("sampler − floor", e["excess_vs_anisotropy"]),
        )
        if math.isfinite(r["rho"])
    ]
    return [
        f"Exploratory (added after the first results, not an endpoint): over {e['runs']} runs the "
        f"sampler's latent SW exceeds the data floor by {e['sampler_over_floor']['mean']:+.4f} on average "
        f"(range {e['sampler_over_floor']['min']:+.4f} to {e['sampler_over_floor']['max']:+.4f}), a fitted "
        f"Gaussian's by {e['gaussian_over_floor']['mean']:+.4f}, while the floor itself spans "
        f"{e['floor']['min']:.3f} to {e['floor']['max']:.3f} across runs; Spearman with the anisotropy, "
        + ("; ".join(rho) or "not computable (too few runs)")
        + ". Where the floor carries the relation, it describes how far held-out latents lie from the "
        "training latents, not how learnable the latents are.",
    ]


def figures(summary: dict[str, Any], results: dict[str, dict[str, Any]], directory: Path) -> None:
    from rd_train.report.plotting import pyplot, save

    plt = pyplot()
    families, endpoints = list(summary["families"]), list(summary["endpoints"])
    fig, axes = plt.subplots(
        len(endpoints), len(families), figsize=(5.2 * len(families), 3.8 * len(endpoints)), squeeze=False
    )
    for j, family in enumerate(families):
        lams = summary["lams"][family]
        positions = {lam: k for k, lam in enumerate(lams)}
        for i, endpoint in enumerate(endpoints):
            ax = axes[i][j]
            for t_index, target in enumerate(summary["targets"]):
                cells = [c for c in summary["cells"] if c["family"] == family and c["target"] == target]
                xs = [positions[c["lam"]] for c in cells if c[endpoint]["n"]]
                ys = [c[endpoint]["mean"] for c in cells if c[endpoint]["n"]]
                shown = [c[endpoint] for c in cells if c[endpoint]["n"]]  # a log interval is lopsided
                err = [[0 if e["n"] < 2 else e["mean"] - e["low"] for e in shown],
                       [0 if e["n"] < 2 else e["high"] - e["mean"] for e in shown]]
                ax.errorbar(
                    xs,
                    ys,
                    yerr=err,
                    fmt="o-",
                    color=f"C{t_index}",
                    capsize=3,
                    label=f"{target:g} nats (cell estimate, CI)",
                )
                runs = [
                    r
                    for r in summary["records"]
                    if r["target"] == target and (r["family"] == family or r["lam"] == 0)
                ]
                ax.plot(
                    [positions[r["lam"]] + 0.06 * (t_index - 0.5) for r in runs],
                    [r["endpoints"][endpoint] for r in runs],
                    ".",
                    color=f"C{t_index}",
                    alpha=0.5,
                )
                if endpoint == "latent_sw":
                    floor = [c["sw_data"]["mean"] for c in cells if c["sw_data"]["n"]]
                    if floor:
                        ax.axhline(float(np.mean(floor)), color=f"C{t_index}", ls=":", lw=1)
            shown = [
                r["endpoints"][endpoint]
                for r in summary["records"]
                if r["family"] == family or r["lam"] == 0
            ]
            if shown:
                pad = 0.25 * (max(shown) - min(shown)) or 0.1 * abs(max(shown)) or 1.0
                ax.set_ylim(min(shown) - pad, max(shown) + pad)  # a wide interval's bar may run off
            ax.set_xticks(range(len(lams)), [f"{lam:g}" for lam in lams])
            ax.set(xlabel="λ", ylabel=endpoint, title=f"{summary['families'][family]}: {endpoint}")
            ax.legend(fontsize=7)
    fig.suptitle(
        "Generation quality against λ at matched rate (lower is better; dotted: data floor; axes span "
        "the runs, so a wide interval may be cut)",
        fontsize=10,
    )
    save(fig, directory / "diffusability_vs_lambda.png")

    fig, axes = plt.subplots(1, len(endpoints), figsize=(5.2 * len(endpoints), 4.3), squeeze=False)
    markers = "os^Dv"
    for ax, endpoint in zip(axes[0], endpoints, strict=True):
        for f_index, family in enumerate(["pixel", *families]):
            for t_index, target in enumerate(summary["targets"]):
                runs = [
                    r
                    for r in summary["records"]
                    if r["family"] == family and r["target"] == target
                ]
                if runs:
                    ax.plot(
                        [r["geometry"]["anisotropy"] for r in runs],
                        [r["endpoints"][endpoint] for r in runs],
                        markers[t_index % 5],
                        color="k" if family == "pixel" else f"C{f_index}",
                        mfc="none",
                        label=f"{summary['families'].get(family, 'pixel only')}, {target:g} nats",
                    )
        ax.set(xlabel="posterior anisotropy", ylabel=endpoint, title=f"{endpoint} against anisotropy")
        ax.legend(fontsize=7)
    save(fig, directory / "diffusability_vs_anisotropy.png")
    sample_grid(summary, results, directory / "diffusability_samples.png")


def sample_grid(summary: dict[str, Any], results: dict[str, dict[str, Any]], path: Path) -> None:
    """Decoded samples at the highest target: λ = 0 and the largest λ of each family, the lowest seed."""
    from rd_train.diffusability.score import decode_grid
    from rd_train.report.plotting import pyplot, save

    target = max(summary["targets"])
    panels: list[tuple[str, dict[str, Any]]] = []
    cells = [("pixel", 0.0, "pixel only, λ = 0")] + [
        (family, max(summary["lams"][family]), f"{label}, λ = {max(summary['lams'][family]):g}")
        for family, label in summary["families"].items()
    ]
    for family, lam, label in cells:
        runs = sorted(
            (
                r
                for r in summary["records"]
                if r["target"] == target and r["lam"] == lam and r["family"] == family
            ),
            key=lambda r: r["seed"],
        )
        if runs and results[runs[0]["run"]]["grid"]["shape"][0]:
            run = results[runs[0]["run"]]
            if not panels and "reference_grid" in run:
                panels.append(("held-out images", run["reference_grid"]))
            panels.append((f"{label} (seed {runs[0]['seed']})", run["grid"]))
    if not panels:
        return
    plt = pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels), 3.8), squeeze=False)
    for ax, (label, grid) in zip(axes[0], panels, strict=True):
        images = decode_grid(grid).transpose(0, 2, 3, 1)  # N, H, W, C
        n = images.shape[0]
        cols = math.ceil(math.sqrt(n))
        rows = math.ceil(n / cols)
        h, w = images.shape[1:3]
        canvas = np.full((rows * (h + 1) - 1, cols * (w + 1) - 1, 3), 255, dtype=np.uint8)
        for k, image in enumerate(images):
            r, c = divmod(k, cols)
            canvas[r * (h + 1) : r * (h + 1) + h, c * (w + 1) : c * (w + 1) + w] = image
        ax.imshow(canvas, interpolation="nearest")
        ax.set_title(label, fontsize=8)
        ax.axis("off")
    fig.suptitle(f"Decoded samples of the latent sampler at {target:g} nats", fontsize=10)
    save(fig, path)
