"""params.yaml ``diffusability``: everything the stage fixes in advance, validated in one place.

Every run gets the same generative model, budget, seeds, metrics and feature spaces; the endpoints,
their direction and the tests are named here before any result exists (see params.yaml).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from rd_train.diffusability.features import SPACES
from rd_train.diffusability.flow import FlowConfig
from rd_train.errors import ParamsError

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
                "params.yaml `diffusability` must be a mapping of the keys in "
                "rd_train/diffusability/config.py"
            )
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(section) - known)
        if unknown:
            raise ParamsError(
                f"unknown key(s) {unknown} in params.yaml `diffusability`; valid: {sorted(known)}"
            )
        values = dict(section)
        try:
            if "flow" in values:
                flow = values["flow"]
                flow_known = {f.name for f in fields(FlowConfig)}
                if not isinstance(flow, dict) or set(flow) - flow_known:
                    raise ParamsError(
                        f"params.yaml diffusability.flow: keys must be among {sorted(flow_known)}"
                    )
                values["flow"] = FlowConfig(**flow)
            for key in ("spaces", "mmd_bandwidths", "endpoints"):
                if key in values:
                    values[key] = tuple(values[key])
            if "targets" in values:
                values["targets"] = tuple(float(t) for t in values["targets"])
            config = cls(**values)
        except (TypeError, ValueError) as error:
            raise ParamsError(f"params.yaml `diffusability`: {error}") from None
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
