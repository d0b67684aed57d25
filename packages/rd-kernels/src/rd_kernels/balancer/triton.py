"""Fused multi-tensor Triton kernels for the balancer: one pass reads the K gradients for all K
per-item squared norms, one pass reads them again to write Σ_k s_k g_k.

Triton takes a fixed number of pointers, so gradients go in groups of up to four (``GROUP``);
with K <= 4 (pixel + up to three neural terms, the paper's setting) each step is a single launch.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import triton
import triton.language as tl

BLOCK = 1024
CHUNK_BLOCKS = 8
GROUP = 4


@triton.jit
def _sq_norm_kernel(
    g0, g1, g2, g3, partial_ptr, N, n_chunks,
    K: tl.constexpr, BLOCK: tl.constexpr, CHUNK_BLOCKS: tl.constexpr,
):
    row = tl.program_id(0)
    chunk = tl.program_id(1)
    base = row.to(tl.int64) * N
    a0 = tl.zeros([BLOCK], dtype=tl.float32)
    a1 = tl.zeros([BLOCK], dtype=tl.float32)
    a2 = tl.zeros([BLOCK], dtype=tl.float32)
    a3 = tl.zeros([BLOCK], dtype=tl.float32)
    start = chunk * (BLOCK * CHUNK_BLOCKS)
    for i in range(CHUNK_BLOCKS):
        idx = start + i * BLOCK + tl.arange(0, BLOCK)
        mask = idx < N
        x = tl.load(g0 + base + idx, mask=mask, other=0.0).to(tl.float32)
        a0 += x * x
        if K > 1:
            x = tl.load(g1 + base + idx, mask=mask, other=0.0).to(tl.float32)
            a1 += x * x
        if K > 2:
            x = tl.load(g2 + base + idx, mask=mask, other=0.0).to(tl.float32)
            a2 += x * x
        if K > 3:
            x = tl.load(g3 + base + idx, mask=mask, other=0.0).to(tl.float32)
            a3 += x * x
    out = partial_ptr + (row.to(tl.int64) * n_chunks + chunk) * 4
    tl.store(out + 0, tl.sum(a0, axis=0))
    tl.store(out + 1, tl.sum(a1, axis=0))
    tl.store(out + 2, tl.sum(a2, axis=0))
    tl.store(out + 3, tl.sum(a3, axis=0))


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


def grad_norms(grads: Sequence[torch.Tensor], per_batch_item: bool) -> torch.Tensor:
    flat = [g.contiguous().reshape(g.shape[0] if per_batch_item else 1, -1) for g in grads]
    rows, n = flat[0].shape
    n_chunks = triton.cdiv(n, BLOCK * CHUNK_BLOCKS)
    squared = []
    for group in _groups(flat):
        partial = torch.empty((rows, n_chunks, GROUP), device=flat[0].device, dtype=torch.float32)
        _sq_norm_kernel[(rows, n_chunks)](
            *_padded(group), partial, n, n_chunks, K=len(group), BLOCK=BLOCK, CHUNK_BLOCKS=CHUNK_BLOCKS
        )
        squared.append(partial.sum(dim=1)[:, : len(group)])
    per_row = torch.cat(squared, dim=1).sqrt()  # rows x K
    return per_row.mean(dim=0)


def weighted_sum(grads: Sequence[torch.Tensor], scales: Sequence[float]) -> torch.Tensor:
    flat = [g.contiguous().reshape(-1) for g in grads]
    numel = flat[0].numel()
    out = torch.empty_like(flat[0])
    # fp32 accumulator across groups of four; with K <= 4 it is never touched.
    many = len(flat) > GROUP
    acc = torch.empty_like(flat[0], dtype=torch.float32) if many else out
    scale_tensor = torch.tensor(list(scales), dtype=torch.float32, device=flat[0].device)
    groups = _groups(flat)
    for i, group in enumerate(groups):
        _weighted_sum_kernel[(triton.cdiv(numel, BLOCK),)](
            *_padded(group), scale_tensor[i * GROUP:], out, acc, numel,
            K=len(group), ACCUMULATE=i > 0, STORE_ACC=i < len(groups) - 1, BLOCK=BLOCK,
        )
    return out.view_as(grads[0])
