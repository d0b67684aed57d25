"""`rd-train inspect`'s outputs: per autoencoder a JSON, a Markdown report and its std maps; for the
call a comparison table and figures with every autoencoder overlaid (the same images for all)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
from rd_theory.atomic import atomic_write_text

COLUMNS = [
    ("KL (nats / image)", "kl_nats", "{:.2f}"),
    ("KL (bits / pixel)", "kl_bits_per_pixel", "{:.4f}"),
    ("anisotropy", "anisotropy", "{:.3f}"),
    ("anisotropy across channels", "anisotropy_across_channels", "{:.3f}"),
    ("active units", "active_units", "{}"),
    ("PSNR (dB)", "psnr_db", "{:.2f}"),
    ("VGG16 (HED) distance", "vgg16_hed_distance", "{:.4f}"),
]


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "autoencoder"


def _cell(result: dict[str, Any], key: str, fmt: str) -> str:
    value = result.get(key)
    return "—" if value is None else fmt.format(value)


def _floats(values: list[float], fmt: str = "{:.4g}") -> str:
    return ", ".join(fmt.format(v) for v in values)


def markdown(name: str, result: dict[str, Any], source: dict[str, Any]) -> str:
    agg = result["aggregate"]
    c, h, w = result["latent_shape"]
    lines = [
        f"# {name}", "",
        f"{source['kind']} autoencoder at `{source['path']}`; {result['images']} images of "
        f"{source['size']} px ({source['images']}); latent {c} x {h} x {w}; {result['device']}, "
        f"{source['precision']}.", "",
        "| quantity | value |", "|---|---|",
        *(f"| {label} | {_cell(result, key, fmt)} |" for label, key, fmt in COLUMNS),
        f"| latent coordinates | {result['latent_coordinates']} |",
        f"| scaling_factor (1 / std of z, LDM's scale_by_std) | {agg['scaling_factor']:.5f} |",
        f"| participation ratio of the channel covariance | {agg['participation_ratio']:.3f} |",
        f"| Gaussian-fit KL of the aggregate posterior to N(0, I) (nats) | "
        f"{agg['gaussian_kl_to_standard_normal']:.2f} |", "",
        "## Per channel", "",
        "| channel | KL (nats) | posterior std | latents_mean | latents_std | weight, pixel SSE |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    pixel = result.get("effective_weights", {}).get("pixel_sse")
    rows = zip(result["kl_per_channel"], result["std_per_channel"], agg["latents_mean"], agg["latents_std"],
               strict=True)
    for i, (kl, std, mean, sd) in enumerate(rows):
        weight = f"{pixel[i]:.4g}" if pixel else "—"
        if i < 64:
            lines.append(f"| {i} | {kl:.3f} | {std:.4f} | {mean:.4f} | {sd:.4f} | {weight} |")
    if len(result["kl_per_channel"]) > 64:
        lines.append(f"| … | {len(result['kl_per_channel']) - 64} more channels in the JSON | | | | |")
    eigenvalues = _floats(agg["channel_covariance_eigenvalues"][:16])
    lines += ["", f"Channel covariance eigenvalues (descending): {eigenvalues}", ""]
    weights = result.get("effective_weights", {})
    if weights:
        count = result["effective_weights_images"]
        lines.append(f"Effective distortion weights (Gauss–Newton, on the first {count} "
                     f"images): " + "; ".join(f"{k}: {_floats(v[:16])}" for k, v in weights.items()))
    elif result.get("effective_weights_error"):
        lines.append(f"Effective distortion weights not computed: {result['effective_weights_error']}")
    lines += ["", "Figures: `std_maps.png` (posterior std per channel and position); the call's "
              "`std_profiles.png` and `spectra.png` overlay every autoencoder.", ""]
    return "\n".join(lines)


def comparison(results: dict[str, dict[str, Any]], source: dict[str, Any]) -> str:
    lines = [f"# Autoencoders compared on the same {source['images']} ({source['count']} images, "
             f"{source['size']} px)", "",
             "| autoencoder | " + " | ".join(label for label, _, _ in COLUMNS)
             + " | latent | scaling_factor |",
             "|---|" + "---:|" * (len(COLUMNS) + 2)]
    for name, r in results.items():
        c, h, w = r["latent_shape"]
        cells = [_cell(r, key, fmt) for _, key, fmt in COLUMNS]
        scale = r["aggregate"]["scaling_factor"]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {c}x{h}x{w} | {scale:.5f} |")
    return "\n".join(lines) + "\n"


def std_maps_figure(result: dict[str, Any], path: Path) -> None:
    """Posterior std per channel, as maps over positions (spatial) or one bar chart (vector)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c, h, w = result["latent_shape"]
    std_map = np.asarray(result["std_per_channel_map"]).reshape(c, h, w)
    if h * w == 1:
        fig, ax = plt.subplots(figsize=(max(4, c * 0.25), 3))
        ax.bar(range(c), std_map.reshape(c))
        ax.set_xlabel("latent coordinate")
        ax.set_ylabel("mean posterior std")
    else:
        shown = min(c, 16)
        cols = min(shown, 4)
        rows = -(-shown // cols)
        fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 3 * rows), squeeze=False)
        for k, ax in enumerate(axes.flat):
            ax.axis("off")
            if k < shown:
                image = ax.imshow(std_map[k], cmap="viridis")
                ax.set_title(f"channel {k}")
                fig.colorbar(image, ax=ax, fraction=0.046)
        fig.suptitle("mean posterior std per position")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def overlay_figures(results: dict[str, dict[str, Any]], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, r in results.items():
        profile = np.asarray(r["std_profile_sorted"])
        ax.plot(np.linspace(0, 1, len(profile)), profile, label=name)
    ax.set_xlabel("latent coordinate (sorted, fraction of all)")
    ax.set_ylabel("mean posterior std")
    ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "std_profiles.png", dpi=110)
    plt.close(fig)
    written.append("std_profiles.png")
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, r in results.items():
        eig = np.asarray(r["aggregate"]["channel_covariance_eigenvalues"])
        ax.plot(np.arange(1, len(eig) + 1), np.maximum(eig, 1e-12), marker="o", label=name)
    ax.set_xlabel("eigenvalue rank")
    ax.set_ylabel("aggregate posterior channel covariance eigenvalue")
    ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "spectra.png", dpi=110)
    plt.close(fig)
    written.append("spectra.png")
    return written


def write_all(results: dict[str, dict[str, Any]], sources: dict[str, dict[str, Any]],
              call: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, result in results.items():
        folder = out / slug(name)
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(folder / "inspect.json", json.dumps({**sources[name], **result}, indent=1) + "\n")
        atomic_write_text(folder / "report.md", markdown(name, result, sources[name]))
        std_maps_figure(result, folder / "std_maps.png")
    atomic_write_text(out / "comparison.md", comparison(results, call))
    overlay_figures(results, out)
    summary = {"call": call, "autoencoders": {n: {**sources[n], **{k: v for k, v in r.items()
               if not isinstance(v, list) or len(v) <= 64}} for n, r in results.items()}}
    atomic_write_text(out / "inspect.json", json.dumps(summary, indent=1) + "\n")
