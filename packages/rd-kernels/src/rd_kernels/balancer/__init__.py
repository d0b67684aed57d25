r"""The EnCodec gradient balancer (Défossez et al. 2022), with audiocraft's exact semantics.

For losses ℓ_i(y) of one model output y, with g_i = ∂ℓ_i/∂y:

    n_i  = mean_b ||g_i[b]||₂           (per batch item, averaged; ``per_batch_item=False``: ||g_i||₂)
    n̄_i  = EMA_t(n_i) = Σ_s β^{t-s} n_i(s) / Σ_s β^{t-s}       (bias-corrected, β = ema_decay)
    G    = Σ_i  (w_i / Σ_j w_j) · total_norm / (ε + n̄_i) · g_i                   (balance_grads)
    G    = Σ_i  w_i g_i                                                          (otherwise)

G is back-propagated once, ``y.backward(G)``; the returned effective loss is Σ_i scale_i ℓ_i
(detached), for logging. So each w_i / Σ w is the fraction of the gradient ℓ_i supplies on average,
independently of ℓ_i's scale: the spec's appendix B uses it to make λ the neural share of the
reconstruction gradient. Under DDP the EMA'd norms are averaged across workers (weighted by batch
size), as audiocraft does. The EMA lives in the instance and round-trips through ``state_dict``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.distributed as dist

from rd_kernels import _backend
from rd_kernels.balancer import reference


class Balancer:
    def __init__(
        self,
        weights: Mapping[str, float],
        total_norm: float = 1.0,
        ema_decay: float = 0.999,
        per_batch_item: bool = True,
        epsilon: float = 1e-12,
        *,
        balance_grads: bool = True,
        backend: str | None = None,
    ) -> None:
        if not weights:
            raise ValueError("weights is empty: give one weight per loss name")
        for name, w in weights.items():
            if not math.isfinite(w) or w < 0:
                raise ValueError(f"weight of loss {name!r} must be finite and >= 0, got {w!r}")
        if not math.isfinite(total_norm) or total_norm <= 0:
            raise ValueError(f"total_norm must be > 0, got {total_norm!r}")
        if not 0.0 < ema_decay <= 1.0:
            raise ValueError(f"ema_decay must be in (0, 1], got {ema_decay!r}")
        if epsilon < 0:
            raise ValueError(f"epsilon must be >= 0, got {epsilon!r}")
        self.weights = dict(weights)
        self.total_norm = float(total_norm)
        self.ema_decay = float(ema_decay)
        self.per_batch_item = per_batch_item
        self.epsilon = float(epsilon)
        self.balance_grads = balance_grads
        self.backend = backend
        self._ema_sum: dict[str, float] = {}
        self._ema_weight: dict[str, float] = {}
        self.metrics: dict[str, float] = {}

    def backward(self, losses: Mapping[str, torch.Tensor], output: torch.Tensor) -> torch.Tensor:
        """Back-propagate the balanced gradient of ``losses`` through ``output``; return the
        effective loss (detached)."""
        gradient, effective = self.gradient(losses, output)
        output.backward(gradient)
        return effective

    def gradient(
        self, losses: Mapping[str, torch.Tensor], output: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The balanced gradient G w.r.t. ``output`` (not back-propagated) and the effective loss.

        Training code that must run a single backward (DDP, precision plugins) applies G through
        ``(output * G).sum()`` added to its other terms.
        """
        unknown = sorted(set(losses) - set(self.weights))
        if unknown:
            raise ValueError(f"loss names {unknown} have no weight; known: {sorted(self.weights)}")
        if not losses:
            raise ValueError("losses is empty")
        if not output.requires_grad:
            raise ValueError("output does not require grad: pass the model output the losses use")
        names = list(losses)
        grads = []
        for name in names:
            if losses[name].numel() != 1:
                raise ValueError(f"loss {name!r} must be a scalar, got shape {tuple(losses[name].shape)}")
            (grad,) = torch.autograd.grad(losses[name], [output], retain_graph=True, allow_unused=True)
            grads.append(torch.zeros_like(output) if grad is None else grad)

        ops = self._ops(output)
        norms = ops.grad_norms(grads, self.per_batch_item).tolist()  # one host sync for all K
        for name, norm in zip(names, norms, strict=True):
            if not math.isfinite(norm):
                raise FloatingPointError(
                    f"gradient of loss {name!r} has a non-finite norm ({norm}); check that loss "
                    "for NaN/inf before it reaches the balancer"
                )
        averaged = self._update_ema(dict(zip(names, norms, strict=True)))
        averaged = _average_across_workers(averaged, output.shape[0] if self.per_batch_item else 1)

        total_weight = sum(self.weights[name] for name in names)
        if total_weight <= 0:
            raise ValueError(f"the weights of the given losses {names} sum to 0")
        scales = [
            self.weights[name] / total_weight * self.total_norm / (self.epsilon + averaged[name])
            if self.balance_grads else self.weights[name]
            for name in names
        ]
        gradient = ops.weighted_sum(grads, scales)

        norm_sum = sum(averaged.values())
        self.metrics = {f"ratio_{k}": (v / norm_sum if norm_sum > 0 else 0.0) for k, v in averaged.items()}
        self.metrics.update({f"scale_{k}": s for k, s in zip(names, scales, strict=True)})
        effective = sum(
            (s * losses[name].detach().float() for name, s in zip(names, scales, strict=True)),
            start=torch.zeros((), device=output.device),
        )
        return gradient, effective

    def _ops(self, output: torch.Tensor) -> Any:
        if _backend.resolve(self.backend, output) == "triton" and output.dtype != torch.float64:
            from rd_kernels.balancer import triton as kernels

            return kernels
        return reference

    def _update_ema(self, norms: Mapping[str, float]) -> dict[str, float]:
        for name, value in norms.items():
            self._ema_sum[name] = self._ema_sum.get(name, 0.0) * self.ema_decay + value
            self._ema_weight[name] = self._ema_weight.get(name, 0.0) * self.ema_decay + 1.0
        return {name: self._ema_sum[name] / self._ema_weight[name] for name in norms}

    def state_dict(self) -> dict[str, dict[str, float]]:
        return {"ema_sum": dict(self._ema_sum), "ema_weight": dict(self._ema_weight)}

    def load_state_dict(self, state: Mapping[str, Mapping[str, float]]) -> None:
        missing = {"ema_sum", "ema_weight"} - set(state)
        if missing:
            raise KeyError(f"balancer state is missing {sorted(missing)}")
        if set(state["ema_sum"]) != set(state["ema_weight"]):
            raise ValueError("balancer state: ema_sum and ema_weight name different losses")
        unknown = sorted(set(state["ema_sum"]) - set(self.weights))
        if unknown:
            raise ValueError(f"balancer state has EMA for losses {unknown} that have no weight")
        self._ema_sum = {k: float(v) for k, v in state["ema_sum"].items()}
        self._ema_weight = {k: float(v) for k, v in state["ema_weight"].items()}


def _average_across_workers(values: dict[str, float], count: int) -> dict[str, float]:
    """Count-weighted mean over DDP workers (identity in a single process)."""
    if not (dist.is_available() and dist.is_initialized()):
        return values
    names = list(values)
    device = "cuda" if torch.cuda.is_available() and dist.get_backend() == "nccl" else "cpu"
    packed = torch.tensor([*(values[n] for n in names), 1.0], dtype=torch.float64, device=device) * count
    dist.all_reduce(packed)
    return {n: float(packed[i] / packed[-1]) for i, n in enumerate(names)}
