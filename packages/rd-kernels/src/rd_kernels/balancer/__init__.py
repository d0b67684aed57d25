r"""The EnCodec gradient balancer (Défossez et al. 2022), with audiocraft's exact semantics.

For losses ℓ_i(y) of one model output y, with g_i = ∂ℓ_i/∂y:

    n_i  = mean_b ||g_i[b]||₂           (per batch item, averaged; ``per_batch_item=False``: ||g_i||₂)
    n̄_i  = EMA_t(n_i) = Σ_s β^{t-s} n_i(s) / Σ_s β^{t-s}       (bias-corrected, β = ema_decay)
    G    = Σ_i  (w_i / Σ_j w_j) · total_norm / (ε + n̄_i) · g_i                   (balance_grads)
    G    = Σ_i  w_i g_i                                                          (otherwise)

G is back-propagated once, ``y.backward(G)``. So each w_i / Σ w is the fraction of the gradient ℓ_i
supplies on average, independently of ℓ_i's scale: the spec's appendix B uses it to make λ the
neural share of the reconstruction gradient. Under DDP the norms are averaged across workers
(weighted by batch size) before they enter the EMA, as audiocraft does.

No host synchronisation: the EMA (Σ β^{t-s} n_i and Σ β^{t-s}) lives in device tensors, and on
CUDA a step is two kernel launches (norms + EMA + scales; weighted sum) for up to four losses. A
non-finite n_i is not folded into the EMA and is counted instead; `check_finite` reads the counts
(one sync) and raises naming the loss. Training code calls it where it synchronises anyway (when it
logs, or before a checkpoint); the NaN in G itself reaches the caller's own gradient check at once.
``state_dict`` holds plain floats and round-trips exactly.
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
        self.names = list(weights)
        self.total_norm = float(total_norm)
        self.ema_decay = float(ema_decay)
        self.per_batch_item = per_batch_item
        self.epsilon = float(epsilon)
        self.balance_grads = balance_grads
        self.backend = backend
        # Device state, created on the first step's device: Σ β^{t-s} n_i, Σ β^{t-s}, skipped steps.
        self._ema_sum = torch.zeros(len(self.names), dtype=torch.float32)
        self._ema_weight = torch.zeros(len(self.names), dtype=torch.float32)
        self._nonfinite = torch.zeros(len(self.names), dtype=torch.int32)
        self._constants: dict[tuple[tuple[str, ...], torch.device], tuple[torch.Tensor, torch.Tensor]] = {}
        self._last: tuple[tuple[str, ...], torch.Tensor, torch.Tensor] | None = None  # names, norms, scales

    # -- one step -----------------------------------------------------------------------------
    def backward(self, losses: Mapping[str, torch.Tensor], output: torch.Tensor) -> None:
        """Back-propagate the balanced gradient of ``losses`` through ``output``."""
        output.backward(self.gradient(losses, output))

    def gradient(self, losses: Mapping[str, torch.Tensor], output: torch.Tensor) -> torch.Tensor:
        """The balanced gradient G w.r.t. ``output`` (not back-propagated).

        Training code that must run a single backward (DDP, precision plugins) applies G through
        ``(output * G).sum()`` added to its other terms.
        """
        names = self._validate(losses, output)
        grads = {}
        for name in names:
            (grad,) = torch.autograd.grad(losses[name], [output], retain_graph=True, allow_unused=True)
            grads[name] = torch.zeros_like(output) if grad is None else grad
        return self.balance(grads)

    def balance(self, grads: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """G from the per-loss gradients g_i = ∂ℓ_i/∂y already computed (one EMA step, like `gradient`)."""
        names = tuple(grads)
        unknown = sorted(set(names) - set(self.weights))
        if unknown:
            raise ValueError(f"loss names {unknown} have no weight; known: {sorted(self.weights)}")
        if not names or sum(self.weights[name] for name in names) <= 0:
            raise ValueError(f"the weights of the given losses {list(names)} sum to 0 (or none was given)")
        tensors = [grads[name] for name in names]
        output = tensors[0]
        self._to_device(output.device)
        slots, factors = self._step_constants(names, output.device)
        ops = self._ops(output)
        state = (self._ema_sum, self._ema_weight, self._nonfinite)
        distributed = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        if ops is reference or distributed:
            if ops is reference:
                norms = reference.grad_norms(tensors, self.per_batch_item)
            else:
                norms, _ = ops.norms_and_scales(tensors, self.per_batch_item, None, None, None,
                                                self.ema_decay, self.epsilon, self.balance_grads)
            if distributed:
                norms = _average_across_workers(norms, output.shape[0] if self.per_batch_item else 1)
            scales = reference.update_and_scale(norms, *state, slots, factors, self.ema_decay, self.epsilon,
                                                self.balance_grads)
        else:
            norms, scales = ops.norms_and_scales(tensors, self.per_batch_item, state, slots, factors,
                                                 self.ema_decay, self.epsilon, self.balance_grads)
        self._last = (names, norms, scales)
        return ops.weighted_sum(tensors, scales)

    def _validate(self, losses: Mapping[str, torch.Tensor], output: torch.Tensor) -> tuple[str, ...]:
        unknown = sorted(set(losses) - set(self.weights))
        if unknown:
            raise ValueError(f"loss names {unknown} have no weight; known: {sorted(self.weights)}")
        if not losses:
            raise ValueError("losses is empty")
        if not output.requires_grad:
            raise ValueError("output does not require grad: pass the model output the losses use")
        for name, loss in losses.items():
            if loss.numel() != 1:
                raise ValueError(f"loss {name!r} must be a scalar, got shape {tuple(loss.shape)}")
        if sum(self.weights[name] for name in losses) <= 0:
            raise ValueError(f"the weights of the given losses {list(losses)} sum to 0")
        return tuple(losses)

    def _step_constants(
        self, names: tuple[str, ...], device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """State slots of ``names`` and their factors f_i (w_i/Σw · total_norm, or w_i): copied to the
        device once per set of names, not every step."""
        key = (names, device)
        if key not in self._constants:
            total = sum(self.weights[n] for n in names)
            factors = [self.weights[n] / total * self.total_norm if self.balance_grads else self.weights[n]
                       for n in names]
            self._constants[key] = (
                torch.tensor([self.names.index(n) for n in names], dtype=torch.int64, device=device),
                torch.tensor(factors, dtype=torch.float32, device=device),
            )
        return self._constants[key]

    def _to_device(self, device: torch.device) -> None:
        if self._ema_sum.device != device:
            self._ema_sum = self._ema_sum.to(device)
            self._ema_weight = self._ema_weight.to(device)
            self._nonfinite = self._nonfinite.to(device)

    def _ops(self, output: torch.Tensor) -> Any:
        if _backend.resolve(self.backend, output) == "triton" and output.dtype != torch.float64:
            from rd_kernels.balancer import triton as kernels

            return kernels
        return reference

    def device_state(self) -> tuple[torch.Tensor, ...]:
        """The tensors a step updates in place (EMA sums and weights, non-finite counts): for callers
        that must save and restore them, e.g. around a CUDA graph's warm-up runs."""
        return self._ema_sum, self._ema_weight, self._nonfinite

    # -- reading the state (each call below synchronises with the device, except metrics) --------
    def metrics(self) -> dict[str, torch.Tensor]:
        """Device scalars of the last step: ``scale_<name>`` and ``ratio_<name>`` (n̄_i / Σ_j n̄_j)."""
        if self._last is None:
            return {}
        names, _, scales = self._last
        slots = self._step_constants(names, scales.device)[0]
        averaged = self._ema_sum[slots] / self._ema_weight[slots]
        ratios = averaged / averaged.sum()
        out = {f"scale_{n}": scales[k] for k, n in enumerate(names)}
        out.update({f"ratio_{n}": ratios[k] for k, n in enumerate(names)})
        return out

    def effective_loss(self, losses: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Σ_i s_i ℓ_i (detached) with the last step's scales: the loss G is the gradient of."""
        if self._last is None:
            raise RuntimeError("effective_loss needs a balanced step first")
        names, _, scales = self._last
        return (scales * torch.stack([losses[n].detach().float() for n in names])).sum()

    def check_finite(self) -> None:
        """Raise naming each loss whose gradient norm was non-finite since the last check (one sync)."""
        counts = self._nonfinite.tolist()
        bad = {name: c for name, c in zip(self.names, counts, strict=True) if c}
        if bad:
            self._nonfinite.zero_()
            listed = ", ".join(f"{name!r} ({c} step{'s' if c > 1 else ''})" for name, c in bad.items())
            raise FloatingPointError(f"gradient of loss {listed} had a non-finite norm; those steps were "
                                     "kept out of the balancer's average: check that loss for NaN/inf")

    def state_dict(self) -> dict[str, dict[str, float]]:
        ema_sum, ema_weight = self._ema_sum.tolist(), self._ema_weight.tolist()
        seen = [k for k, w in enumerate(ema_weight) if w > 0]
        return {"ema_sum": {self.names[k]: ema_sum[k] for k in seen},
                "ema_weight": {self.names[k]: ema_weight[k] for k in seen}}

    def load_state_dict(self, state: Mapping[str, Mapping[str, float]]) -> None:
        missing = {"ema_sum", "ema_weight"} - set(state)
        if missing:
            raise KeyError(f"balancer state is missing {sorted(missing)}")
        if set(state["ema_sum"]) != set(state["ema_weight"]):
            raise ValueError("balancer state: ema_sum and ema_weight name different losses")
        unknown = sorted(set(state["ema_sum"]) - set(self.weights))
        if unknown:
            raise ValueError(f"balancer state has EMA for losses {unknown} that have no weight")
        device = self._ema_sum.device
        self._ema_sum = torch.tensor([float(state["ema_sum"].get(n, 0.0)) for n in self.names],
                                     dtype=torch.float32, device=device)
        self._ema_weight = torch.tensor([float(state["ema_weight"].get(n, 0.0)) for n in self.names],
                                        dtype=torch.float32, device=device)


def _average_across_workers(norms: torch.Tensor, count: int) -> torch.Tensor:
    """Count-weighted mean over DDP workers, on device (an all-reduce, no host copy)."""
    packed = torch.cat([norms.float() * count, norms.new_full((1,), float(count), dtype=torch.float32)])
    dist.all_reduce(packed)
    return packed[:-1] / packed[-1]
