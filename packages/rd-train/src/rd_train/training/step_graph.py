"""A training step's forward and backward replayed as one CUDA graph (opt-in: ``fit(step_graph=True)`` or
``RD_TRAIN_STEP_GRAPH=1``).

On a GPU the step is host-bound: its kernels take about a millisecond, while launching the few hundred
of them from Python takes several. Captured once and replayed, they cost one launch. Captured: flip,
encode, sample, decode, the reconstruction losses, the balancer (its per-loss gradients, norms, EMA
update and weighted sum), the backward of the surrogate, the non-finite checks, and the discriminator's
loss and backward. Left eager around each replay: copying the batch, the step's noise and β into the
graph's static inputs, the optimiser steps (Lightning counts them; the learning rate changes every
step), the rate controller's update, the non-finite records and the logging. The step computes what
the eager step does, in the same order (`VAEModule.forward_backward` is the body of both).

Steps before `EAGER_STEPS` run eagerly (first allocations, Triton compilation). Then a graph is captured
once per phase (before and after the discriminator starts), as CUDA graphs require: the body runs
`WARMUP_RUNS` times on a side stream (which also does the eager steps' work after a resume), then once
under capture on that stream (under bf16-mixed with autocast's weight cache off: `_uncached_autocast`).
The warm-up runs change state (the balancer's EMA, BatchNorm statistics, spectral-norm vectors), so
that state is saved before them and restored after: training continues as if they never ran.

The graph knows the step only through `StepFunctions`, the four callables the training module hands it
(its noise draws, β at a step, the step's body and the state a run of the body changes), never the
module's attributes: either side can change its insides without the other. Without
CUDA the body runs eagerly on the same static inputs at every step, warm-up and restore included: what
the CPU tests check (the capture itself is checked on a GPU, test_gpu_training.py).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from rd_train.training.module import StepResult

ENV_VAR = "RD_TRAIN_STEP_GRAPH"
EAGER_STEPS = 3  # steps run eagerly before the first capture
WARMUP_RUNS = 3  # runs of the body on a side stream before a capture


def requested(step_graph: bool | None) -> bool:
    """``step_graph`` if given, else whether ``RD_TRAIN_STEP_GRAPH=1``."""
    return step_graph if step_graph is not None else os.environ.get(ENV_VAR, "0") == "1"


@dataclass(frozen=True)
class StepFunctions:
    """What a step graph needs of the training step, as callables."""

    # (batch, step) -> (flip mask or None, ε): the eager step's random draws for that step, in its order
    draw_noise: Callable[[torch.Tensor, int], tuple[torch.Tensor | None, torch.Tensor]]
    beta: Callable[[int], torch.Tensor | float]  # step -> β
    # (batch, flip, ε, β, discriminator active) -> the step's forward and backward, gradients in .grad
    body: Callable[[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor, bool], StepResult]
    mutable_state: Callable[[], list[torch.Tensor]]  # what a run of the body changes besides gradients


@dataclass
class StaticInputs:
    """What changes between steps, in memory the graph reads at every replay."""

    batch: torch.Tensor
    flip: torch.Tensor | None
    eps: torch.Tensor
    beta: torch.Tensor  # 0-dim fp32


@dataclass
class Captured:
    inputs: StaticInputs
    body: Callable[[], StepResult]
    graph: torch.cuda.CUDAGraph | None  # None without CUDA: the body runs eagerly at every step
    result: StepResult | None  # the graph's outputs, rewritten by every replay


class StepGraph:
    def __init__(self, step: StepFunctions) -> None:
        self.step = step
        self.captured: dict[bool, Captured] = {}

    def run(self, batch: torch.Tensor, step: int, disc_active: bool, optimizers: Sequence[Any]) -> StepResult:
        """The step's forward and backward (gradients left in ``.grad``, optimisers not stepped)."""
        captured = self.captured.get(disc_active)
        if captured is None:
            captured = self.captured[disc_active] = self._capture(batch, step, disc_active, optimizers)
        self._fill(captured.inputs, batch, step)
        if captured.graph is None:
            _zero_grads(optimizers)
            return captured.body()
        captured.graph.replay()
        assert captured.result is not None
        return captured.result

    def _fill(self, inputs: StaticInputs, batch: torch.Tensor, step: int) -> None:
        flip, eps = self.step.draw_noise(batch, step)  # the eager step's draws, in its order
        inputs.batch.copy_(batch)
        if inputs.flip is not None and flip is not None:
            inputs.flip.copy_(flip)
        inputs.eps.copy_(eps)
        beta = self.step.beta(step)
        if isinstance(beta, torch.Tensor):
            inputs.beta.copy_(beta)
        else:
            inputs.beta.fill_(beta)

    def _capture(self, batch: torch.Tensor, step: int, disc_active: bool,
                 optimizers: Sequence[Any]) -> Captured:
        flip, eps = self.step.draw_noise(batch, step)
        inputs = StaticInputs(batch.clone(), None if flip is None else flip.clone(), eps.clone(),
                              torch.zeros((), dtype=torch.float32, device=batch.device))
        self._fill(inputs, batch, step)

        def body() -> StepResult:
            i = inputs
            return self.step.body(i.batch, i.flip, i.eps, i.beta, disc_active)

        cuda = batch.device.type == "cuda"
        side = torch.cuda.Stream(batch.device) if cuda else None
        with self._state_restored(), _uncached_autocast(batch.device.type):
            if side is not None:
                side.wait_stream(torch.cuda.current_stream(batch.device))
            with torch.cuda.stream(side) if side is not None else _nothing():
                for _ in range(WARMUP_RUNS):
                    _zero_grads(optimizers)
                    body()
            if side is not None:
                torch.cuda.current_stream(batch.device).wait_stream(side)
        if not cuda:
            return Captured(inputs, body, None, None)
        # Gradients are allocated by the captured backward, in the graph's memory: replays rewrite them.
        _zero_grads(optimizers)
        graph = torch.cuda.CUDAGraph()
        # The warm-up's stream: per-stream handles and workspaces (cuBLAS) exist before the capture.
        with _uncached_autocast("cuda"), torch.cuda.graph(graph, stream=side):
            result = body()
        return Captured(inputs, body, graph, result)

    @contextmanager
    def _state_restored(self) -> Iterator[None]:
        """Save what a run of the body changes besides gradients, and put it back afterwards."""
        tensors = self.step.mutable_state()
        saved = [t.detach().clone() for t in tensors]
        try:
            yield
        finally:
            with torch.no_grad():
                for tensor, value in zip(tensors, saved, strict=True):
                    tensor.copy_(value)


@contextmanager
def _uncached_autocast(device_type: str) -> Iterator[None]:
    """Autocast as the caller has it (bf16-mixed), but without its cache of low-precision weights: a
    weight cast during the warm-up runs and read from the cache under capture would be replayed stale
    after every optimiser step. Uncached, the capture records the casts themselves."""
    if not torch.is_autocast_enabled(device_type):
        yield
        return
    with torch.autocast(device_type, dtype=torch.get_autocast_dtype(device_type), cache_enabled=False):
        yield


def _zero_grads(optimizers: Sequence[Any]) -> None:
    for optimizer in optimizers:
        optimizer.zero_grad(set_to_none=True)


@contextmanager
def _nothing() -> Iterator[None]:
    yield
