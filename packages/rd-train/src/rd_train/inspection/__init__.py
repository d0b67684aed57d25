"""`rd-train inspect`: the rate and posterior geometry of any diffusers AutoencoderKL (or a run of this
project) on a user's images, several side by side.

Public face: `inspect_autoencoders` (what the command runs), `load_autoencoder`, `load_images`,
`posterior_statistics` and `Options`. Each module has one job: loading.py reads autoencoders and images
(every user mistake a one-line `UserError`), measure.py runs the networks (device, precision, batches,
progress), report.py writes JSON, Markdown and figures. The statistics are the project's one
posterior-statistics module, `rd_train.training.metrics`, which training's evaluations use too.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rd_train.inspection.loading import Autoencoder, load_autoencoder, load_images
from rd_train.inspection.measure import Options, measure
from rd_train.training.metrics import posterior_statistics

__all__ = ["Autoencoder", "Options", "inspect_autoencoders", "load_autoencoder", "load_images",
           "posterior_statistics"]


def inspect_autoencoders(paths: list[str | Path], images: str, out: str | Path, size: int = 256,
                         limit: int | None = None, options: Options | None = None
                         ) -> dict[str, dict[str, Any]]:
    """Measure every autoencoder on the same images; write ``out``/<name>/{inspect.json, report.md,
    std_maps.png} and ``out``/{comparison.md, inspect.json, std_profiles.png, spectra.png}."""
    from rd_train.inspection.report import write_all

    options = options or Options()
    autoencoders = [load_autoencoder(p) for p in paths]  # every path checked before any work
    x, names = load_images(images, size, limit)
    results: dict[str, dict[str, Any]] = {}
    sources: dict[str, dict[str, Any]] = {}
    for index, ae in enumerate(autoencoders):
        name = ae.name if ae.name not in results else f"{ae.name}-{index}"
        start = time.perf_counter()
        result = measure(ae, x, options)
        result["seconds"] = time.perf_counter() - start
        results[name] = result
        sources[name] = {"kind": ae.kind, "path": str(ae.path), "config": ae.config, "size": size,
                         "images": images, "precision": result["precision"]}
    call = {"images": images, "count": len(names), "size": size, "image_names": names[:1000]}
    write_all(results, sources, call, Path(out))
    return results
