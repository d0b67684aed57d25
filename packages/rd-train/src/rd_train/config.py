"""Typed run configuration, validated where it is built.

A run is one `TrainConfig`, loaded from YAML (or a dict, e.g. a `params.yaml` section). Unknown keys,
wrong types and out-of-range values stop the run with an error naming the dotted key, before any
data is touched. Defaults describe a small CPU run on the embedded dataset.

A key added to a section defaults to the behaviour before it existed: a finished run written before the
key is then the same run as today's config with the default (`rd_train.training.run.same_config`), and
is reused rather than retrained.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml

from rd_train.errors import ConfigError, MissingDataError

__all__ = ["ConfigError", "TrainConfig", "from_dict", "load_config", "read_yaml"]


@dataclass
class DataConfig:
    name: Literal["embedded", "celeba", "imagefolder"] = "embedded"
    root: str | None = None  # celeba / imagefolder: local root; embedded: a built dataset dir (optional)
    image_size: int = 32
    batch_size: int = 64
    num_workers: int = 0
    hflip: bool = True
    n_train: int = 4096  # embedded only: patches drawn from the training photographs
    n_val: int = 512
    seed: int = 0

    def validate(self, prefix: str) -> None:
        _positive(prefix, "image_size", self.image_size)
        _positive(prefix, "batch_size", self.batch_size)
        _positive(prefix, "n_train", self.n_train)
        _positive(prefix, "n_val", self.n_val)
        if self.name in ("celeba", "imagefolder") and not self.root:
            raise ConfigError(f"{prefix}.root: the {self.name} dataset needs its local root directory")


@dataclass
class ModelConfig:
    kind: Literal["vector", "spatial"] = "vector"
    # vector (pythae CelebA-style conv VAE)
    latent_dim: int = 32
    channels: list[int] = field(default_factory=lambda: [32, 64, 128])
    # vector decoder: "mirror" (the encoder mirrored: 4x4 stride-2 transposed convs) or "pythae"
    # (pythae's Decoder_Conv_AE_CELEBA: 5x5 transposed convs from an 8x-downsampled map, 4 stages only)
    decoder: Literal["mirror", "pythae"] = "mirror"
    # spatial (diffusers AutoencoderKL)
    latent_channels: int = 4
    block_out_channels: list[int] = field(default_factory=lambda: [32, 64])
    layers_per_block: int = 1
    norm_num_groups: int = 8
    mid_block_add_attention: bool = True

    def validate(self, prefix: str) -> None:
        _positive(prefix, "latent_dim", self.latent_dim)
        _positive(prefix, "latent_channels", self.latent_channels)
        if not self.channels or any(c <= 0 for c in self.channels):
            raise ConfigError(f"{prefix}.channels must be a non-empty list of positive widths")
        if self.kind == "vector" and self.decoder == "pythae" and len(self.channels) != 4:
            raise ConfigError(f"{prefix}.decoder=pythae is pythae's four-stage CelebA decoder: "
                              f"{prefix}.channels needs 4 widths, got {self.channels}")
        if any(c % self.norm_num_groups for c in self.block_out_channels):
            raise ConfigError(f"{prefix}.block_out_channels must be multiples of norm_num_groups "
                              f"({self.norm_num_groups}), got {self.block_out_channels}")


@dataclass
class LossConfig:
    neural: Literal["none", "vgg16_hed", "lpips", "dinov2", "patchgan"] = "none"
    lam: float = 0.0  # balancer weight of the neural term (pixel SSE has weight 1)
    # vgg16_hed: how many VGG16 blocks; None = those whose receptive field fits the image
    # (rd_theory.vgg16.default_blocks: 2 at 16-39 px, 3 at 40-91 px, ...)
    vgg_stages: int | None = None
    lpips_net: Literal["vgg", "alex"] = "vgg"
    weights_path: str | None = None  # local weights (VGG16 HED, LPIPS / DINOv2 backbone)
    dinov2_model: str = "vit_small_patch14_dinov2"
    dinov2_layers: list[int] = field(default_factory=lambda: [2, 5, 8, 11])
    disc_channels: int = 64
    disc_layers: int = 3
    disc_spectral_norm: bool = False
    disc_start_step: int = 0
    # "cosine": the discriminator's learning rate decays with the generator's (same multiplier each step),
    # so the two players settle together; "constant": the discriminator keeps its initial rate.
    disc_lr_schedule: Literal["constant", "cosine"] = "constant"
    # Rescale the balanced reconstruction gradient G so its mean per-sample norm equals the balancer's
    # total norm (what pixel SSE alone gets): a control for the combined gradient being shorter when the
    # terms disagree (module.py).
    norm_match: bool = False
    feature_matching_weight: float = 1.0
    balancer_ema_decay: float = 0.999

    def validate(self, prefix: str) -> None:
        _non_negative(prefix, "lam", self.lam)
        if self.neural == "none" and self.lam > 0:
            raise ConfigError(f"{prefix}.lam={self.lam} but {prefix}.neural is 'none'")
        if not 0 < self.balancer_ema_decay <= 1:
            raise ConfigError(f"{prefix}.balancer_ema_decay must be in (0, 1]")
        _non_negative(prefix, "disc_start_step", self.disc_start_step)
        if self.vgg_stages is not None and not 1 <= self.vgg_stages <= 5:
            raise ConfigError(f"{prefix}.vgg_stages must be 1..5 (VGG16's blocks), got {self.vgg_stages}")


# Whose KL GECO steers (RateConfig.geco_tracks; training/rate_tracking.py).
Tracks = Literal["trained", "averaged", "heldout", "trained_heldout"]


@dataclass
class RateConfig:
    mode: Literal["fixed", "geco"] = "fixed"
    beta: float = 1.0  # fixed mode: the KL weight; geco: the initial multiplier
    warmup_steps: int = 0  # sine warm-up of β (fixed) / hold of β (GECO)
    target: float | None = None  # GECO rate target, nats per sample
    geco_step_size: float = 0.01
    geco_ema_decay: float = 0.99
    # PI form (rate.py): log β gets κ_p × the relative violation on top of its integral; 0 = integral only.
    geco_proportional: float = 0.0
    # The bound on |relative violation| the proportional part acts on (rate.py): log β moves by at most
    # κ_p × this at once. None = unbounded (the behaviour before this key).
    geco_proportional_limit: float | None = None
    # Whose KL GECO steers (rate.py, training/rate_tracking.py): the trained weights' on each training batch
    # ("trained", the behaviour before this key); the weight average's, the model every evaluation reads,
    # on the training batch ("averaged") or on a batch of the held-out images the tables are measured on
    # ("heldout"); or the trained weights' on a held-out batch ("trained_heldout"). The last three cost one
    # more encoder pass per step, under no_grad; "averaged" and "heldout" need optim.ema_decay > 0.
    geco_tracks: Tracks = "trained"
    # Offset correction (rate.py): from geco_outer_start (a fraction of training) on, each validation
    # measures the ratio of the training KL's EMA to the evaluated model's KL (EMA weights, held-out
    # images: what the tables report), smooths it with weight geco_outer_gain, and GECO steers the
    # training KL to target x that ratio; 0 = off (GECO tracks the training KL only).
    geco_outer_gain: float = 0.0
    geco_outer_start: float = 0.5
    # From the corrections' start on, validate (and so correct) every N steps, before it every
    # val_every_n_steps (training/cadence.py); 0 = val_every_n_steps throughout (as before this key).
    geco_correct_every_n_steps: int = 0
    # The ratio's numerator (rate.py): GECO's KL EMA, or the read KL averaged as the weights are (ema_decay).
    geco_offset_average: Literal["geco_ema", "weights"] = "geco_ema"
    # Aim each correction at the evaluated KL at the run's end, net of what the average holds (rate.py).
    geco_outer_terminal: bool = False
    # Ramp term (rate.py): a second integrator on log β, from geco_ramp_start (a fraction of training) on,
    # so that a steadily drifting KL is followed without a lag error; 0 = off (PI GECO).
    geco_ramp_gain: float = 0.0
    geco_ramp_start: float = 0.3
    beta_min: float = 1e-4
    beta_max: float = 1e4

    @property
    def tracked(self) -> Tracks:
        """Whose KL the rate controller reads: ``geco_tracks`` under GECO; a fixed β reads none, which
        is the trained weights' case (no extra pass, no weight average or held-out batch needed)."""
        return self.geco_tracks if self.mode == "geco" else "trained"

    @property
    def reads_average(self) -> bool:
        """Whether the rate controller reads the weight average's KL (so needs optim.ema_decay > 0)."""
        return self.tracked in ("averaged", "heldout")

    @property
    def reads_heldout(self) -> bool:
        """Whether the rate controller reads a batch of the held-out images at each step."""
        return self.tracked in ("heldout", "trained_heldout")

    def validate(self, prefix: str) -> None:
        if self.beta <= 0:
            raise ConfigError(f"{prefix}.beta must be > 0, got {self.beta}")
        _non_negative(prefix, "warmup_steps", self.warmup_steps)
        if self.mode == "geco":
            if self.target is None or self.target <= 0:
                raise ConfigError(f"{prefix}.target: GECO needs a rate target > 0 (nats per sample)")
            if not 0 < self.beta_min <= self.beta <= self.beta_max:
                raise ConfigError(f"{prefix}: need 0 < beta_min <= beta <= beta_max")
            if not 0 < self.geco_ema_decay < 1:
                raise ConfigError(f"{prefix}.geco_ema_decay must be in (0, 1)")
            _non_negative(prefix, "geco_proportional", self.geco_proportional)
            limit = self.geco_proportional_limit
            if limit is not None and not limit > 0:
                raise ConfigError(f"{prefix}.geco_proportional_limit must be > 0 (or null: unbounded), "
                                  f"got {limit}")
            if not 0 <= self.geco_outer_gain <= 1:
                raise ConfigError(f"{prefix}.geco_outer_gain must be in [0, 1], got {self.geco_outer_gain}")
            if not 0 <= self.geco_outer_start <= 1:
                raise ConfigError(f"{prefix}.geco_outer_start must be in [0, 1], got {self.geco_outer_start}")
            _non_negative(prefix, "geco_correct_every_n_steps", self.geco_correct_every_n_steps,
                          " (0: val_every_n_steps throughout)")
            _non_negative(prefix, "geco_ramp_gain", self.geco_ramp_gain, " (0: off)")
            if not 0 <= self.geco_ramp_start <= 1:
                raise ConfigError(f"{prefix}.geco_ramp_start must be in [0, 1], got {self.geco_ramp_start}")


@dataclass
class OptimConfig:
    lr: float = 1e-3
    max_steps: int = 200
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    # Evaluations (validations, final metrics, analyses) read an EMA of the autoencoder's weights with
    # this decay (ema.py); 0 evaluates the trained weights themselves.
    ema_decay: float = 0.0
    # The cosine schedule decays each learning rate to this fraction of its start (the discriminator's too,
    # when it follows the schedule), not to 0: late in training the model can still answer GECO's β.
    lr_floor: float = 0.0

    def validate(self, prefix: str) -> None:
        _positive(prefix, "lr", self.lr)
        if not 0 <= self.lr_floor < 1:
            raise ConfigError(f"{prefix}.lr_floor must be in [0, 1), got {self.lr_floor}")
        if not 0 <= self.ema_decay < 1:
            raise ConfigError(f"{prefix}.ema_decay must be in [0, 1) (0: no average), got {self.ema_decay}")
        _positive(prefix, "max_steps", self.max_steps)


@dataclass
class TrainConfig:
    out_dir: str = "runs/default"
    seed: int = 0
    accelerator: str = "cpu"
    devices: int = 1
    # "auto": bf16-mixed where the device runs bf16 natively, else 32-true (precision.py); evaluations
    # always run in fp32.
    precision: Literal["auto", "32-true", "bf16-mixed", "16-mixed"] = "32-true"
    # Training metrics are logged, and the non-finite check read, every N steps: on a GPU these are
    # a step's only host synchronisations (module.py).
    log_every_n_steps: int = 10
    # Validation (the convergence history) every N steps, counted across epochs; 0 = at every epoch end.
    val_every_n_steps: int = 0
    # Before every evaluation, BatchNorm statistics are recomputed over this many training images at the
    # current parameters (module.py); 0 keeps the running averages of the last batches.
    bn_calibration_images: int = 2048
    # torch.compile the encoder -> sample -> decoder path (fullgraph): true for the default mode,
    # "reduce-overhead" to also replay it (forward and backward) as CUDA graphs on a GPU, where a step's
    # host time, not its kernels, sets the speed; on a CPU that mode compiles without graphs.
    compile: bool | Literal["reduce-overhead"] = False
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    rate: RateConfig = field(default_factory=RateConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    # Who this run is in its sweep (sweep, family, architecture, λ, β or target, seed, steps), written by
    # rd_train.pipeline.sweep and copied into metrics.json: readers never parse it from folder names.
    # Training never reads it.
    identity: dict[str, Any] = field(default_factory=dict)

    def validate(self, prefix: str = "") -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if dataclasses.is_dataclass(value):
                typing.cast(Any, value).validate(f"{prefix}{f.name}")
        top, rate = prefix.rstrip(".") or "config", self.rate
        _positive(top, "devices", self.devices)
        _positive(top, "log_every_n_steps", self.log_every_n_steps)
        _non_negative(top, "bn_calibration_images", self.bn_calibration_images)
        _non_negative(top, "val_every_n_steps", self.val_every_n_steps, " (0: every epoch)")
        if rate.mode == "geco" and rate.geco_correct_every_n_steps and not self.val_every_n_steps:
            raise ConfigError(f"{prefix}rate.geco_correct_every_n_steps is a step cadence: set "
                              "val_every_n_steps > 0, or rate.geco_correct_every_n_steps: 0")
        if rate.reads_average and self.optim.ema_decay <= 0:
            raise ConfigError(f"{prefix}rate.geco_tracks={rate.tracked} steers the weight average's KL: "
                              "set optim.ema_decay > 0, or rate.geco_tracks: trained or trained_heldout")
        if rate.mode == "geco" and rate.geco_offset_average == "weights" and self.optim.ema_decay <= 0:
            raise ConfigError(f"{prefix}rate.geco_offset_average=weights averages the KL as the evaluated "
                              "weights are: set optim.ema_decay > 0, or rate.geco_offset_average: geco_ema")
        if rate.mode == "geco" and rate.geco_outer_terminal and self.optim.ema_decay <= 0:
            raise ConfigError(f"{prefix}rate.geco_outer_terminal discounts what the weight average holds: "
                              "set optim.ema_decay > 0, or rate.geco_outer_terminal: false")
        halvings = (len(self.model.channels) if self.model.kind == "vector"
                    else len(self.model.block_out_channels) - 1)
        if self.data.image_size % 2**halvings:
            widths = "channels" if self.model.kind == "vector" else "block_out_channels"
            raise ConfigError(
                f"data.image_size={self.data.image_size} must be divisible by 2^{halvings}: the "
                f"{self.model.kind} model halves the image once per stage of model.{widths}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def training_spec(self) -> dict[str, Any]:
        """What the run computes from: `to_dict`, with a fixed β's GECO keys (`GECO_KEYS`) at their defaults,
        since a fixed β reads none of them (rate.py's FixedBeta). Two configs with the same spec train
        the same run, so a change to GECO's settings never retrains a fixed-β run."""
        spec = self.to_dict()
        if self.rate.mode == "fixed":
            defaults = RateConfig()
            spec["rate"].update({key: getattr(defaults, key) for key in GECO_KEYS})
        return spec


# The rate keys only GECO reads; named by their prefix, so a GECO key added later joins them.
GECO_KEYS = tuple(f.name for f in dataclasses.fields(RateConfig) if f.name.startswith("geco_"))


def from_dict(data: dict[str, Any]) -> TrainConfig:
    """Build and validate a `TrainConfig`; every error names its dotted key."""
    config = _build(TrainConfig, data, "")
    config.validate()
    return config


def read_yaml(path: str | Path, what: str = "config file") -> dict[str, Any]:
    """A YAML mapping from ``path``; a missing file or bad YAML is a `UserError` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise MissingDataError(f"{what} {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        where = getattr(error, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        problem = getattr(error, "problem", error)
        raise ConfigError(f"{what} {path} is not valid YAML{line}: {problem}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {path}: the top level must be a mapping of sections")
    return data


def load_config(path: str | Path) -> TrainConfig:
    return from_dict(read_yaml(path))


def _build(cls: type, data: Any, prefix: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'} must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ConfigError(f"unknown config key(s) {[where + k for k in unknown]}; valid: {sorted(names)}")
    kwargs = {}
    for name, value in data.items():
        key = f"{prefix}.{name}" if prefix else name
        hint = hints[name]
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, value, key)
        else:
            kwargs[name] = _coerce(hint, value, key)
    return cls(**kwargs)


def _coerce(hint: Any, value: Any, key: str) -> Any:
    origin, args = get_origin(hint), get_args(hint)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key} must be one of {list(args)}, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        errors = []
        for option in inner:  # the first type that takes the value
            try:
                return _coerce(option, value, key)
            except ConfigError as error:
                errors.append(str(error).removeprefix(f"{key} ").removesuffix(f", got {value!r}"))
        raise ConfigError(f"{key} " + ", or ".join(errors) + f", got {value!r}")
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a mapping, got {value!r}")
        return dict(value)
    if origin is list:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key} must be a list, got {value!r}")
        return [_coerce(args[0], v, f"{key}[{i}]") for i, v in enumerate(value)]
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key} must be a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string, got {value!r}")
        return value
    return value


def _positive(prefix: str, name: str, value: int | float) -> None:
    if value <= 0:
        raise ConfigError(f"{prefix}.{name} must be > 0, got {value}")


def _non_negative(prefix: str, name: str, value: int | float, zero: str = "") -> None:
    """``zero``: what 0 means, where it means something of its own."""
    if value < 0:
        raise ConfigError(f"{prefix}.{name} must be >= 0{zero}, got {value}")
