r"""The one generative model every run's latents get: rectified flow (Liu et al. 2023; Lipman et al. 2023).

Data z₁ (standardised latents), noise z₀ ~ N(0, I), t ~ U(0, 1), z_t = (1 − t) z₀ + t z₁; a network
v(z_t, t) regresses the straight-line velocity z₁ − z₀ (mean squared error per coordinate). Samples solve
dz/dt = v(z, t) from t = 0 to 1 with Heun's method (second order, 2 network calls a step) on a uniform
grid, with the exponential moving average of the weights, as diffusion models are sampled.

Networks, fixed in params.yaml for every run alike: vector latents, an MLP (width × depth, SiLU) on
[z, sinusoidal features of t]; spatial latents (C, H, W), a small residual conv net (3×3, GroupNorm,
SiLU) whose blocks add a projection of the same time features. Training is seeded (weights, noise,
times and batches), so two runs with the same latents give the same sampler.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import nn

from rd_train.params.sections import FlowConfig


def time_features(t: torch.Tensor, count: int = 32) -> torch.Tensor:
    """(n,) times in [0, 1] -> (n, count) sines and cosines at geometric frequencies 1 .. 1000."""
    freqs = torch.exp(torch.linspace(0, math.log(1000.0), count // 2, device=t.device, dtype=t.dtype))
    angles = t[:, None] * freqs[None, :] * 2 * math.pi
    return torch.cat([angles.sin(), angles.cos()], dim=1)


class VelocityMLP(nn.Module):
    def __init__(self, dim: int, width: int, depth: int, time_dim: int = 32) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        size = dim + time_dim
        for _ in range(depth):
            layers += [nn.Linear(size, width), nn.SiLU()]
            size = width
        layers.append(nn.Linear(size, dim))
        self.net = nn.Sequential(*layers)
        self.time_dim = time_dim

    def forward(self, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([z, time_features(t, self.time_dim)], dim=1))


class _ConvBlock(nn.Module):
    def __init__(self, width: int, time_dim: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(min(8, width), width)
        self.conv = nn.Conv2d(width, width, 3, padding=1)
        self.time = nn.Linear(time_dim, width)

    def forward(self, h: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        return h + self.conv(nn.functional.silu(self.norm(h) + self.time(temb)[:, :, None, None]))


class VelocityConvNet(nn.Module):
    def __init__(self, channels: int, width: int, depth: int, time_dim: int = 32) -> None:
        super().__init__()
        self.inp = nn.Conv2d(channels, width, 3, padding=1)
        self.blocks = nn.ModuleList([_ConvBlock(width, time_dim) for _ in range(depth)])
        self.out = nn.Conv2d(width, channels, 3, padding=1)
        self.time_dim = time_dim

    def forward(self, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        temb = time_features(t, self.time_dim)
        h = self.inp(z)
        for block in self.blocks:
            h = block(h, temb)
        return self.out(nn.functional.silu(h))


def build_velocity(shape: tuple[int, ...], config: FlowConfig) -> nn.Module:
    """An MLP for vector latents (shape (d,)), a conv net for spatial ones (shape (C, H, W))."""
    if len(shape) == 1:
        return VelocityMLP(shape[0], config.width, config.depth)
    if len(shape) == 3:
        return VelocityConvNet(shape[0], min(config.width, 128), config.depth)
    raise ValueError(f"latents of shape {shape}: expected (d,) or (C, H, W)")


def flow_loss(model: nn.Module, z1: torch.Tensor, z0: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Mean squared velocity error per coordinate (a scalar)."""
    tt = t.view(-1, *([1] * (z1.dim() - 1)))
    zt = (1 - tt) * z0 + tt * z1
    return (model(zt, t) - (z1 - z0)).pow(2).mean()


@dataclass
class TrainedFlow:
    model: nn.Module  # the EMA weights, in eval mode
    final_train_loss: float  # mean of the last 10 % of steps (raw weights)


def train_flow(latents: torch.Tensor, config: FlowConfig) -> TrainedFlow:
    """Fit the velocity network to ``latents`` (n, *shape) for ``config.steps`` steps (seeded)."""
    g = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)  # the network's initial weights
    model = build_velocity(tuple(latents.shape[1:]), config)
    ema = copy.deepcopy(model).requires_grad_(False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.0)
    # Cosine decay to 10 %: late steps refine rather than wander, the same for every run.
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(s, config.steps) / config.steps))
    )
    n, tail = latents.shape[0], []
    for step in range(config.steps):
        index = torch.randint(n, (min(config.batch_size, n),), generator=g)
        z1 = latents[index]
        z0 = torch.randn(z1.shape, generator=g)
        t = torch.rand(z1.shape[0], generator=g)
        loss = flow_loss(model, z1, z0, t)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        # EMA warm-up (as in many diffusion codebases): the average starts short and lengthens.
        decay = min(config.ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for e, p in zip(ema.parameters(), model.parameters(), strict=True):
                e.lerp_(p, 1 - decay)
        if step >= config.steps - max(1, config.steps // 10):
            tail.append(loss.item())
    return TrainedFlow(ema.eval(), sum(tail) / len(tail))


@torch.no_grad()
def held_out_loss(model: nn.Module, latents: torch.Tensor, seed: int = 1, draws: int = 4) -> float:
    """The flow-matching loss on ``latents`` the model never saw, with fixed noise and times: how
    learnable the latents are at the fixed budget."""
    g = torch.Generator().manual_seed(seed)
    total = 0.0
    for _ in range(draws):
        z0 = torch.randn(latents.shape, generator=g)
        t = torch.rand(latents.shape[0], generator=g)
        total += float(flow_loss(model, latents, z0, t))
    return total / draws


@torch.no_grad()
def sample_flow(
    model: nn.Module, count: int, shape: tuple[int, ...], steps: int, seed: int = 2
) -> torch.Tensor:
    """Heun's method from N(0, I) at t = 0 to t = 1 on ``steps`` uniform steps."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn((count, *shape), generator=g)
    dt = 1.0 / steps
    for k in range(steps):
        t = torch.full((count,), k * dt)
        v = model(z, t)
        predictor = z + dt * v
        v_next = model(predictor, t + dt)
        z = z + dt * 0.5 * (v + v_next)
    return z
