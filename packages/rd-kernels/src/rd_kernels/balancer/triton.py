r"""Fused multi-tensor Triton kernels for the balancer: two launches per step for K <= 4 losses.

1. `_norms_kernel` reads each of the K gradients once (tiles as in `rd_kernels.gaussian_kl.triton.plan`)
   into per-row squared norms; the last program to finish (`rd_kernels._workspace`) reduces them in a
   fixed order, n_k = mean_b sqrt(Σ_j g_k[b, j]²), and, with ``UPDATE``, folds n_k into the EMA state
   (in place, skipping a non-finite n_k and counting it) and writes the scales
   s_k = f_k / (ε + EMA_k) (f_k = w_k / Σw · total_norm; or s_k = w_k without balancing).
2. `_weighted_sum_kernel` reads the gradients again and writes G = Σ_k s_k g_k, the scales read from
   device memory: the host never sees a number.

Triton takes a fixed number of pointers, so gradients go in groups of four; more than four losses
take one more launch of each kernel per group (the norm partials of all groups are reduced by the
last group's launch, the weighted sum accumulates in fp32 across groups).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import triton
import triton.language as tl

from rd_kernels._workspace import counters
from rd_kernels.gaussian_kl.triton import cdiv, plan, target_programs

BLOCK = 1024
GROUP = 4
FINISH_ROWS = tl.constexpr(128)  # rows per step of the finishing reduction


@triton.jit
def _norms_kernel(
    g0, g1, g2, g3, partial_ptr, counter_ptr,
    norm_ptr, scale_ptr, ema_sum_ptr, ema_weight_ptr, nonfinite_ptr, slot_ptr, factor_ptr,
    B, N, chunk, n_chunks, k_offset, n_programs, decay, epsilon,
    K: tl.constexpr, K_TOTAL: tl.constexpr, ROWS: tl.constexpr, BLOCK_N: tl.constexpr,
    FINISH: tl.constexpr, UPDATE: tl.constexpr, BALANCE: tl.constexpr,
):
    rows = tl.program_id(0) * ROWS + tl.arange(0, ROWS)
    row_mask = rows < B
    base = rows.to(tl.int64) * N
    a0 = tl.zeros([ROWS, BLOCK_N], dtype=tl.float32)
    a1 = tl.zeros([ROWS, BLOCK_N], dtype=tl.float32)
    a2 = tl.zeros([ROWS, BLOCK_N], dtype=tl.float32)
    a3 = tl.zeros([ROWS, BLOCK_N], dtype=tl.float32)
    start = tl.program_id(1) * chunk
    end = tl.minimum(start + chunk, N)
    for col0 in range(start, end, BLOCK_N):
        cols = col0 + tl.arange(0, BLOCK_N)
        mask = row_mask[:, None] & (cols < end)[None, :]
        offsets = base[:, None] + cols[None, :]
        x = tl.load(g0 + offsets, mask=mask, other=0.0).to(tl.float32)
        a0 += x * x
        if K > 1:
            x = tl.load(g1 + offsets, mask=mask, other=0.0).to(tl.float32)
            a1 += x * x
        if K > 2:
            x = tl.load(g2 + offsets, mask=mask, other=0.0).to(tl.float32)
            a2 += x * x
        if K > 3:
            x = tl.load(g3 + offsets, mask=mask, other=0.0).to(tl.float32)
            a3 += x * x
    out = partial_ptr + (rows.to(tl.int64) * n_chunks + tl.program_id(1)) * K_TOTAL + k_offset
    tl.store(out + 0, tl.sum(a0, axis=1), mask=row_mask)
    if K > 1:
        tl.store(out + 1, tl.sum(a1, axis=1), mask=row_mask)
    if K > 2:
        tl.store(out + 2, tl.sum(a2, axis=1), mask=row_mask)
    if K > 3:
        tl.store(out + 3, tl.sum(a3, axis=1), mask=row_mask)
    if FINISH:
        tl.debug_barrier()  # every thread's partial stores precede the release below
        arrived = tl.atomic_add(counter_ptr, 1, sem="acq_rel")
        if arrived == n_programs - 1:  # the last program reduces all K, in a fixed order
            r = tl.arange(0, FINISH_ROWS)
            for k in tl.static_range(K_TOTAL):
                total = tl.zeros([FINISH_ROWS], dtype=tl.float32)
                for r0 in range(0, B, FINISH_ROWS):
                    rm = (r0 + r) < B
                    row_sq = tl.zeros([FINISH_ROWS], dtype=tl.float32)
                    for c in range(0, n_chunks):
                        p = partial_ptr + ((r0 + r).to(tl.int64) * n_chunks + c) * K_TOTAL + k
                        row_sq += tl.load(p, mask=rm, other=0.0)
                    total += tl.sqrt(row_sq)
                norm = tl.sum(total, axis=0) / B
                tl.store(norm_ptr + k, norm)
                if UPDATE:
                    slot = tl.load(slot_ptr + k)
                    old_sum = tl.load(ema_sum_ptr + slot)
                    old_weight = tl.load(ema_weight_ptr + slot)
                    finite = tl.abs(norm) < float("inf")  # False for inf and NaN
                    new_sum = tl.where(finite, decay * old_sum + tl.where(finite, norm, 0.0), old_sum)
                    new_weight = tl.where(finite, decay * old_weight + 1.0, old_weight)
                    tl.store(ema_sum_ptr + slot, new_sum)
                    tl.store(ema_weight_ptr + slot, new_weight)
                    tl.store(nonfinite_ptr + slot, tl.load(nonfinite_ptr + slot) + tl.where(finite, 0, 1))
                    factor = tl.load(factor_ptr + k)
                    if BALANCE:
                        tl.store(scale_ptr + k, factor / (epsilon + new_sum / new_weight))
                    else:
                        tl.store(scale_ptr + k, factor)
            tl.atomic_xchg(counter_ptr, 0)  # ready for the next launch


@triton.jit
def _weighted_sum_kernel(
    g0, g1, g2, g3, scale_ptr, out_ptr, acc_ptr, numel,
    K: tl.constexpr, ACCUMULATE: tl.constexpr, STORE_ACC: tl.constexpr, BLOCK: tl.constexpr,
):
    idx = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = idx < numel
    if ACCUMULATE:
        total = tl.load(acc_ptr + idx, mask=mask, other=0.0)
    else:
        total = tl.zeros([BLOCK], dtype=tl.float32)
    total += tl.load(scale_ptr + 0) * tl.load(g0 + idx, mask=mask, other=0.0).to(tl.float32)
    if K > 1:
        total += tl.load(scale_ptr + 1) * tl.load(g1 + idx, mask=mask, other=0.0).to(tl.float32)
    if K > 2:
        total += tl.load(scale_ptr + 2) * tl.load(g2 + idx, mask=mask, other=0.0).to(tl.float32)
    if K > 3:
        total += tl.load(scale_ptr + 3) * tl.load(g3 + idx, mask=mask, other=0.0).to(tl.float32)
    if STORE_ACC:  # only when another group of gradients follows
        tl.store(acc_ptr + idx, total, mask=mask)
    tl.store(out_ptr + idx, total.to(out_ptr.dtype.element_ty), mask=mask)


def _groups(grads: Sequence[torch.Tensor]) -> list[list[torch.Tensor]]:
    return [list(grads[i:i + GROUP]) for i in range(0, len(grads), GROUP)]


def _padded(group: list[torch.Tensor]) -> list[torch.Tensor]:
    return group + [group[0]] * (GROUP - len(group))  # unused slots: any valid pointer


def norms_and_scales(
    grads: Sequence[torch.Tensor],
    per_batch_item: bool,
    state: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None,
    slots: torch.Tensor | None,
    factors: torch.Tensor | None,
    decay: float,
    epsilon: float,
    balance: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(norms, scales), each (K,) fp32 on the gradients' device. With ``state`` = (ema_sum,
    ema_weight, nonfinite) the EMA is updated in place and the scales written; without it (DDP: the
    norms are averaged across workers first) only the norms are, and the scales are left empty."""
    device = grads[0].device
    flat = [g.contiguous().view(g.shape[0] if per_batch_item else 1, -1) for g in grads]
    rows, n = flat[0].shape
    p = plan(rows, n, target_programs(device))
    grid = (cdiv(rows, p.rows_per_program), p.n_chunks)
    k_total = len(flat)
    partial = torch.empty((rows, p.n_chunks, k_total), device=device, dtype=torch.float32)
    results = torch.empty((2, k_total), device=device, dtype=torch.float32)  # norms, scales
    counter = counters("balancer", device, 1)
    ema_sum, ema_weight, nonfinite = state if state is not None else (results, results, results)
    groups = _groups(flat)
    for i, group in enumerate(groups):
        last = i == len(groups) - 1
        _norms_kernel[grid](
            *_padded(group), partial, counter, results[0], results[1], ema_sum, ema_weight, nonfinite,
            slots if slots is not None else counter, factors if factors is not None else results,
            rows, n, p.chunk, p.n_chunks, i * GROUP, grid[0] * grid[1], decay, epsilon,
            K=len(group), K_TOTAL=k_total, ROWS=p.rows_per_program, BLOCK_N=p.block_n,
            FINISH=last, UPDATE=state is not None, BALANCE=balance,
        )
    return results[0], results[1]


def weighted_sum(grads: Sequence[torch.Tensor], scales: torch.Tensor) -> torch.Tensor:
    flat = [g.contiguous().view(-1) for g in grads]
    numel = flat[0].numel()
    out = torch.empty(grads[0].shape, device=grads[0].device, dtype=grads[0].dtype)
    # fp32 accumulator across groups of four; with K <= 4 it is never touched.
    many = len(flat) > GROUP
    acc = torch.empty(numel, device=out.device, dtype=torch.float32) if many else out
    groups = _groups(flat)
    for i, group in enumerate(groups):
        _weighted_sum_kernel[(cdiv(numel, BLOCK),)](
            *_padded(group), scales[i * GROUP:], out, acc, numel,
            K=len(group), ACCUMULATE=i > 0, STORE_ACC=i < len(groups) - 1, BLOCK=BLOCK,
        )
    return out
