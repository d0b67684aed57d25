"""``params.yaml`` as one typed object, read and validated once, at the boundary.

`load_params` reads the file and checks all of it before any stage does work: the sections every sweep
needs, the convergence and test rules (`Rules`), the window rule (`WindowRule`), the diffusability
study (`DiffusabilityConfig`), the AutoencoderKL grid (`SpatialGrid`) and, through the one typed run
config (`rd_train.config.TrainConfig`), every run that any training stage of the file would train. Every
mistake is one `ParamsError` in one style, ``<file>: <section>.<key> ...``, whatever section it is in.
The sections that are not statistics rules or a run's config have their schemas in `sections`.

The CLI builds the `Params` and passes it to each stage (sweep, plan, report, analysis, diffusability);
no stage reads ``params.yaml`` itself. The training sections (``data``, ``model``, ``optim``, ``rate``,
``losses``, ``trainer``) stay as the file gives them in `Params.raw`: each run's `TrainConfig` is built
from them by `run_configs` (`rd_train.pipeline.sweep`), which is how they are validated.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rd_train.analysis.convergence import Rules
from rd_train.analysis.stationarity import WindowRule
from rd_train.config import TrainConfig, read_yaml
from rd_train.errors import ConfigError, ParamsError
from rd_train.params.sections import DiffusabilityConfig, SpatialGrid, spatial_params, spatial_sweeps
from rd_train.pipeline.sweep import run_configs

SECTIONS = ("data", "model", "optim", "rate", "losses", "sweep")
# The vector sweeps, in dvc.yaml's stage order; `control` and `length` only where their section exists.
VECTOR_SWEEPS = (("fixed", None), ("geco", None), ("length", "length_replicate"), ("control", "norm_matched"))
FAMILY_LABELS = {
    "pixel": "pixel SSE only (λ = 0)",
    "vgg16_hed": "VGG16 (HED) features",
    "lpips": "LPIPS (VGG)",
    "dinov2": "DINOv2 ViT-S/14 features",
    "patchgan": "PatchGAN (hinge + feature matching)",
}


@dataclass(frozen=True)
class Params:
    """One params file, validated (`load_params`)."""

    source: str  # the file, as messages name it
    raw: Mapping[str, Any]  # the file's sections, as read: run configs are built from them
    rules: Rules
    window: WindowRule
    diffusability: DiffusabilityConfig
    analysis_images: int  # images per run for the effective-weights analysis
    spatial: SpatialGrid | None  # the AutoencoderKL grid, if the file has one

    @property
    def families(self) -> list[str]:
        """The neural loss families, in the file's order (``pixel`` is the shared λ = 0 arm, not one)."""
        return list(self.raw["losses"])

    def label(self, family: str) -> str:
        """What a table calls a family: its loss kind's name (params keys are not descriptions)."""
        kind = "pixel" if family == "pixel" else self.raw["losses"][family]["neural"]
        return FAMILY_LABELS.get(kind, kind)

    @property
    def rate_targets(self) -> list[float]:
        return [float(t) for t in self.raw["sweep"]["rate_targets"]]

    @property
    def preregistered_in(self) -> str | None:
        return self.raw.get("preregistered_in")

    @property
    def amended_in(self) -> str | None:
        """The commit that amended the pre-registered design (before any run it adds), if any."""
        return self.raw.get("amended_in")

    @property
    def jobs(self) -> int:
        """``sweep.jobs``: runs trained at once by default."""
        return int(self.raw["sweep"].get("jobs", 1))

    @property
    def sweeps(self) -> list[str]:
        """The sweeps this file trains with the vector model (or with its own model, when derived)."""
        if self.raw["model"].get("kind") == "spatial":
            return spatial_sweeps(self.raw)
        return [name for name, section in VECTOR_SWEEPS
                if section is None or isinstance(self.raw["sweep"].get(section), dict)]

    @property
    def blocks(self) -> list[tuple[str, str]]:
        """Every (sweep, family) this file trains, in dvc.yaml's order: each sweep's pixel SSE arm first
        (the balancer control has none: it rescales the neural term), then the neural families."""
        return [(sweep, family) for sweep in self.sweeps
                for family in (["pixel"] if sweep != "control" else []) + self.families]

    def run_configs(self, sweep: str, family: str, out: str | Path) -> list[TrainConfig]:
        """Every run of (sweep, family), its outputs under ``out`` (`rd_train.pipeline.sweep.run_configs`)."""
        try:
            return run_configs(self.raw, sweep, family, out)
        except (ConfigError, ParamsError) as error:
            raise ParamsError(f"{self.source}: {error}") from None

    def spatial_params(self) -> Params:
        """The AutoencoderKL sweep's params: this file with ``spatial``'s model and grid in place of the
        vector model's and grid (`rd_train.params.sections.spatial_params`), validated the same way."""
        if self.spatial is None:
            raise ParamsError(f"{self.source} has no `spatial` section (the AutoencoderKL sweep); see "
                              "params.yaml")
        return from_mapping(spatial_params(self.raw, self.spatial), f"{self.source} (spatial)")


def load_params(path: str | Path) -> Params:
    """The params file at ``path``, validated (module doc)."""
    return from_mapping(read_yaml(path, "params file"), str(path))


def from_mapping(raw: dict[str, Any], source: str) -> Params:
    """`Params` of a params mapping that ``source`` names in messages; every section checked."""
    missing = [key for key in SECTIONS if not isinstance(raw.get(key), dict)]
    if missing:
        raise ParamsError(f"{source}: missing or non-mapping section(s) {missing}; each of {list(SECTIONS)} "
                          "is required (see params.yaml)")
    try:
        analysis = raw.get("analysis") or {}
        images = analysis.get("images", 64) if isinstance(analysis, dict) else None
        if type(images) is not int or images < 1 or set(analysis) - {"images"}:
            raise ParamsError("analysis: a mapping with `images`, a positive number of images per run")
        params = Params(
            source=source,
            raw=raw,
            rules=Rules.from_params(raw),
            window=WindowRule.from_params(raw),
            diffusability=DiffusabilityConfig.from_params(raw),
            analysis_images=images,
            spatial=SpatialGrid.from_params(raw) if "spatial" in raw else None,
        )
    except (ConfigError, ParamsError) as error:
        raise ParamsError(f"{source}: {error}") from None
    for sweep, family in params.blocks:  # every run any training stage of this file trains, checked now
        params.run_configs(sweep, family, "runs")
    if params.spatial is not None:
        params.spatial_params()
    return params
