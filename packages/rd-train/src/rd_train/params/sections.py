"""The typed sections of ``params.yaml`` that are not a run's config: the AutoencoderKL grid (``spatial``)
and the diffusability study (``diffusability``), each with its parser. `rd_train.params` calls the parsers,
once per file; a parser's `ParamsError` names ``<section>.<key>``, and `rd_train.params` adds the file.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from rd_train.errors import ParamsError

SPACES = ("random", "vgg16_hed")  # the diffusability study's image feature spaces (diffusability/features.py)


@dataclass(frozen=True)
class FlowConfig:
    """The rectified-flow sampler every run's latents get (`rd_train.diffusability.flow`)."""

    width: int = 128
    depth: int = 3
    steps: int = 1500
    batch_size: int = 256
    lr: float = 1e-3
    ema_decay: float = 0.999
    solver_steps: int = 32
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("width", "depth", "steps", "batch_size", "solver_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"diffusability.flow.{name} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0 or not 0 <= self.ema_decay < 1:
            raise ValueError("diffusability.flow: lr > 0 and ema_decay in [0, 1)")


# The endpoints a verdict is drawn on, each "lower is better": the sampler's distance to the held-out
# latents, and the KID it adds over the VAE's own reconstructions in the primary feature space.
ENDPOINTS = {
    "latent_sw": "sliced W₂ of generated vs held-out latents (standardised space)",
    "excess_kid": "KID (random features) of decoded samples minus that of the VAE's reconstructions",
}


@dataclass(frozen=True)
class DiffusabilityConfig:
    samples: int = 1024  # generated latents per run (and per baseline)
    train_images: int = 0  # training images encoded (0: all); each image enters with and without a flip
    flow: FlowConfig = field(default_factory=FlowConfig)
    spaces: tuple[str, ...] = SPACES  # the first is the primary one (excess_kid is computed in it)
    random_width: int = 32
    k_nearest: int = 3
    sw_projections: int = 256
    mmd_bandwidths: tuple[float, ...] = (0.5, 1.0, 2.0)
    kid_subsets: int = 100
    kid_subset_size: int = 1024  # >= both sample sizes: one exact estimate on all of them
    bootstrap: int = 2000
    grid_images: int = 16
    seed: int = 0
    endpoints: tuple[str, ...] = tuple(ENDPOINTS)
    # The GECO rate targets scored (empty: every target of the sweep); protocol v3's budget rule may drop one.
    targets: tuple[float, ...] = ()

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> DiffusabilityConfig:
        section = params.get("diffusability")
        if section is None:
            return cls()
        if not isinstance(section, dict):
            raise ParamsError(
                "diffusability: must be a mapping of DiffusabilityConfig's keys (rd_train/params/sections.py)"
            )
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(section) - known)
        if unknown:
            raise ParamsError(
                f"diffusability: unknown key(s) {unknown}; valid: {sorted(known)}"
            )
        values = dict(section)
        try:
            if "flow" in values:
                flow = values["flow"]
                flow_known = {f.name for f in fields(FlowConfig)}
                if not isinstance(flow, dict) or set(flow) - flow_known:
                    raise ParamsError(
                        f"diffusability.flow: keys must be among {sorted(flow_known)}"
                    )
                values["flow"] = FlowConfig(**flow)
            for key in ("spaces", "mmd_bandwidths", "endpoints"):
                if key in values:
                    values[key] = tuple(values[key])
            if "targets" in values:
                values["targets"] = tuple(float(t) for t in values["targets"])
            config = cls(**values)
        except (TypeError, ValueError) as error:
            raise ParamsError(f"diffusability: {error}") from None
        config.validate()
        return config

    def validate(self) -> None:
        if unknown := [s for s in self.spaces if s not in SPACES]:
            raise ParamsError(f"diffusability.spaces: unknown {unknown}; known: {list(SPACES)}")
        if not self.spaces:
            raise ParamsError("diffusability.spaces: name at least one feature space")
        if unknown := [e for e in self.endpoints if e not in ENDPOINTS]:
            raise ParamsError(f"diffusability.endpoints: unknown {unknown}; known: {list(ENDPOINTS)}")
        for name in ("samples", "k_nearest", "sw_projections", "kid_subsets", "kid_subset_size", "bootstrap"):
            if getattr(self, name) < 1:
                raise ParamsError(f"diffusability.{name} must be >= 1, got {getattr(self, name)}")
        if self.samples <= self.k_nearest:
            raise ParamsError("diffusability.samples must exceed k_nearest")
        if self.train_images < 0 or self.grid_images < 0 or self.random_width < 1:
            raise ParamsError("diffusability: train_images, grid_images >= 0 and random_width >= 1")
        if not self.mmd_bandwidths or min(self.mmd_bandwidths) <= 0:
            raise ParamsError("diffusability.mmd_bandwidths: positive widths (in units of √d)")
        if any(t <= 0 for t in self.targets):
            raise ParamsError(f"diffusability.targets: rate targets > 0 (or none: every target), "
                              f"got {self.targets}")

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


GRID_KEYS = ("lams", "betas", "rate_targets", "seeds", "geco_initial_beta")


@dataclass(frozen=True)
class SpatialGrid:
    model: dict[str, Any]
    families: list[str]
    lams: list[float]
    betas: list[float]
    rate_targets: list[float]
    seeds: list[int]
    geco_initial_beta: float

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> SpatialGrid:
        section = params.get("spatial")
        if not isinstance(section, dict):
            raise ParamsError(f"no `spatial` section (the AutoencoderKL sweep: model, families, "
                              f"{', '.join(GRID_KEYS)}); see params.yaml")
        missing = [key for key in ("model", "families", *GRID_KEYS) if key not in section]
        if missing:
            raise ParamsError(f"spatial: missing key(s) {missing}")
        unknown_keys = sorted(set(section) - {"model", "families", "preregistered_in", *GRID_KEYS})
        if unknown_keys:
            raise ParamsError(f"spatial: unknown key(s) {unknown_keys}; valid: model, families, "
                              f"{', '.join(GRID_KEYS)}, preregistered_in")
        model = section["model"]
        if not isinstance(model, dict) or model.get("kind") != "spatial":
            raise ParamsError("spatial.model must be a mapping with kind: spatial (AutoencoderKL)")
        families = [str(f) for f in section["families"]]
        unknown = [f for f in families if f not in params.get("losses", {})]
        if not families or unknown:
            raise ParamsError(f"spatial.families: {unknown or 'empty'}; each must be a key of the "
                              f"losses section {list(params.get('losses', {}))}")
        lists = {key: section[key] for key in ("lams", "betas", "rate_targets", "seeds")}
        for key, values in lists.items():
            # An empty β list runs no fixed-β sweep (the matched-rate claim only, as protocol v3's budget
            # rule can choose).
            if not isinstance(values, list) or (not values and key != "betas"):
                raise ParamsError(f"spatial.{key} must be a non-empty list"
                                  + (" (betas may be empty: no fixed-β sweep)" if key == "betas" else ""))
        if any(float(lam) <= 0 for lam in lists["lams"]):
            raise ParamsError("spatial.lams: λ > 0 only (λ = 0 is the family `pixel`, run anyway)")
        for key in ("betas", "rate_targets"):
            if any(float(v) <= 0 for v in lists[key]):
                raise ParamsError(f"spatial.{key} must be positive")
        if float(section["geco_initial_beta"]) <= 0:
            raise ParamsError("spatial.geco_initial_beta must be positive")
        return cls(
            model=dict(model),
            families=families,
            lams=sorted(float(v) for v in lists["lams"]),
            betas=sorted(float(v) for v in lists["betas"]),
            rate_targets=sorted(float(v) for v in lists["rate_targets"]),
            seeds=[int(s) for s in lists["seeds"]],
            geco_initial_beta=float(section["geco_initial_beta"]),
        )


def spatial_sweeps(derived: Mapping[str, Any]) -> list[str]:
    """The sweeps the spatial grid runs, in order: the fixed-β sweep only when it has a β."""
    return [sweep for sweep in ("fixed", "geco") if sweep != "fixed" or derived["sweep"]["betas"]]


def spatial_params(params: Mapping[str, Any], grid: SpatialGrid) -> dict[str, Any]:
    """The params of the spatial sweep: ``params`` with its model and grid replaced by ``grid``'s (a new
    mapping; ``params`` is not changed)."""
    derived = copy.deepcopy(dict(params))
    derived.pop("spatial")
    derived["profile"] = f"{params.get('profile', 'default')}, spatial (AutoencoderKL)"
    # The commit that fixed this grid before its first run (claims.md names it), not the vector sweep's.
    derived["preregistered_in"] = params["spatial"].get("preregistered_in")
    derived["model"] = copy.deepcopy(grid.model)
    derived["losses"] = {family: copy.deepcopy(params["losses"][family]) for family in grid.families}
    # The spatial grid has no balancer control and no length replicate of its own.
    sweep = {key: value for key, value in params["sweep"].items()
             if key not in ("norm_matched", "length_replicate")}
    sweep.update(lams=grid.lams, betas=grid.betas, rate_targets=grid.rate_targets, seeds=grid.seeds,
                 geco_initial_beta=grid.geco_initial_beta)
    derived["sweep"] = sweep
    return derived


