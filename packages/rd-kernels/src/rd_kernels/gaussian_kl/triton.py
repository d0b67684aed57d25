r"""Triton kernels: one launch forward, one launch backward, every reduction finished in-kernel.

Rows are samples b, columns the N latent coordinates. Each program reduces a tile of ``ROWS`` rows
by a chunk of columns into four fp32 sums per row,

    S_kl = Σ μ² + e^ℓ - 1 - ℓ,    S_var = Σ e^ℓ - 1 - ℓ,    S_1 = Σ (ℓ - c),    S_2 = Σ (ℓ - c)²

(c = ℓ_{b,0}: shifting before squaring keeps the variance free of cancellation at |ℓ| ~ 30), and
writes ``z = μ + e^{ℓ/2} ε`` for its tile. Then

    KL_b = ½ S_kl,    varKL_b = ½ S_var,    A_b = S_2 / N - (S_1 / N)².

Grid: short rows (N < 1024) are packed ``ROWS`` to a program; long rows are split into chunks when
there are too few rows to fill the GPU (`plan`). A split row's chunks write partial sums, and the
last program to arrive at the row (`rd_kernels._workspace`) adds them in chunk order and writes the
row's results: deterministic, and still one launch.

Backward, same tiles over all columns:   ∂μ = g μ + ∂z,   ∂ℓ = ½ g (e^ℓ - 1) + ½ ∂z e^{ℓ/2} ε,
with g = ∂L/∂KL_b read through its stride (a broadcast scalar has stride 0).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from rd_kernels._workspace import counters

TILE = 1024  # elements a program touches per loop iteration
N_PARTIALS = 4


@dataclass(frozen=True)
class Plan:
    rows_per_program: int
    block_n: int
    chunk: int  # columns per program (a multiple of block_n)
    n_chunks: int

    @property
    def split(self) -> bool:
        return self.n_chunks > 1


@functools.cache
def target_programs(device: torch.device) -> int:
    """Programs that keep the device busy: 4 per multiprocessor on CUDA; 8 in the interpreter, so
    that the tests' small shapes exercise split rows too. Cached: it is asked on every launch, and a
    device's properties do not change."""
    if device.type == "cuda":
        return 4 * torch.cuda.get_device_properties(device).multi_processor_count
    return 8


def cdiv(a: int, b: int) -> int:
    """⌈a / b⌉ in plain Python: ``triton.cdiv`` is a Triton function (about 4 µs a host call in 3.8)."""
    return -(-a // b)


def next_power_of_2(n: int) -> int:
    """The least power of 2 >= n (0 for 0), as ``triton.next_power_of_2``."""
    return 1 << (n - 1).bit_length() if n > 0 else 0


@functools.lru_cache(maxsize=4096)
def plan(rows: int, n: int, programs: int) -> Plan:
    """The tiling of a rows x n reduction (module doc); cached, since a training run asks for the
    same few shapes on every step."""
    block_n = min(TILE, next_power_of_2(n))
    rows_per_program = max(1, TILE // block_n)
    if rows_per_program > 1 or rows >= programs:
        return Plan(rows_per_program, block_n, cdiv(n, block_n) * block_n, 1)
    wanted = min(cdiv(programs, rows), cdiv(n, block_n))
    chunk = cdiv(cdiv(n, wanted), block_n) * block_n
    return Plan(1, block_n, chunk, cdiv(n, chunk))


@triton.jit
def _forward_kernel(
    mu_ptr, lv_ptr, eps_ptr, z_ptr, kl_ptr, var_ptr, aniso_ptr, partial_ptr, counter_ptr,
    B, N, chunk, n_chunks,
    ROWS: tl.constexpr, BLOCK_N: tl.constexpr, SAMPLE: tl.constexpr, SPLIT: tl.constexpr,
):
    rows = tl.program_id(0) * ROWS + tl.arange(0, ROWS)
    row_mask = rows < B
    base = rows.to(tl.int64) * N
    shift = tl.load(lv_ptr + base, mask=row_mask, other=0.0).to(tl.float32)
    acc_kl = tl.zeros([ROWS, BLOCK_N], dtype=tl.float32)
    acc_var = tl.zeros([ROWS, BLOCK_N], dtype=tl.float32)
    acc_s1 = tl.zeros([ROWS, BLOCK_N], dtype=tl.float32)
    acc_s2 = tl.zeros([ROWS, BLOCK_N], dtype=tl.float32)
    start = tl.program_id(1) * chunk
    end = tl.minimum(start + chunk, N)
    for col0 in range(start, end, BLOCK_N):
        cols = col0 + tl.arange(0, BLOCK_N)
        mask = row_mask[:, None] & (cols < end)[None, :]
        offsets = base[:, None] + cols[None, :]
        mu = tl.load(mu_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
        lv = tl.load(lv_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
        var_term = tl.exp(lv) - 1.0 - lv  # exactly 0 where masked (lv = 0)
        acc_kl += mu * mu + var_term
        acc_var += var_term
        centred = tl.where(mask, lv - shift[:, None], 0.0)
        acc_s1 += centred
        acc_s2 += centred * centred
        if SAMPLE:
            eps = tl.load(eps_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
            z = mu + tl.exp(0.5 * lv) * eps
            tl.store(z_ptr + offsets, z.to(z_ptr.dtype.element_ty), mask=mask)
    s_kl = tl.sum(acc_kl, axis=1)
    s_var = tl.sum(acc_var, axis=1)
    s_1 = tl.sum(acc_s1, axis=1)
    s_2 = tl.sum(acc_s2, axis=1)
    if SPLIT:  # ROWS == 1: one row, one chunk of it per program
        row = tl.program_id(0)
        out = partial_ptr + (row.to(tl.int64) * n_chunks + tl.program_id(1)) * 4
        tl.store(out + 0 + tl.arange(0, 1), s_kl)
        tl.store(out + 1 + tl.arange(0, 1), s_var)
        tl.store(out + 2 + tl.arange(0, 1), s_1)
        tl.store(out + 3 + tl.arange(0, 1), s_2)
        tl.debug_barrier()  # every thread's partial stores precede the release below
        arrived = tl.atomic_add(counter_ptr + row, 1, sem="acq_rel")
        if arrived == n_chunks - 1:  # the last chunk of this row to finish adds them, in order
            c = tl.arange(0, 64)
            t_kl = tl.zeros([64], dtype=tl.float32)
            t_var = tl.zeros([64], dtype=tl.float32)
            t_1 = tl.zeros([64], dtype=tl.float32)
            t_2 = tl.zeros([64], dtype=tl.float32)
            first = partial_ptr + row.to(tl.int64) * n_chunks * 4
            for c0 in range(0, n_chunks, 64):
                m = (c0 + c) < n_chunks
                p = first + (c0 + c) * 4
                t_kl += tl.load(p + 0, mask=m, other=0.0)
                t_var += tl.load(p + 1, mask=m, other=0.0)
                t_1 += tl.load(p + 2, mask=m, other=0.0)
                t_2 += tl.load(p + 3, mask=m, other=0.0)
            mean = tl.sum(t_1, axis=0) / N
            tl.store(kl_ptr + row, 0.5 * tl.sum(t_kl, axis=0))
            tl.store(var_ptr + row, 0.5 * tl.sum(t_var, axis=0))
            tl.store(aniso_ptr + row, tl.maximum(tl.sum(t_2, axis=0) / N - mean * mean, 0.0))
            tl.atomic_xchg(counter_ptr + row, 0)  # ready for the next launch
    else:
        mean = s_1 / N
        tl.store(kl_ptr + rows, 0.5 * s_kl, mask=row_mask)
        tl.store(var_ptr + rows, 0.5 * s_var, mask=row_mask)
        tl.store(aniso_ptr + rows, tl.maximum(s_2 / N - mean * mean, 0.0), mask=row_mask)


@triton.jit
def _backward_kernel(
    mu_ptr, lv_ptr, eps_ptr, gkl_ptr, gkl_stride, gz_ptr, gmu_ptr, glv_ptr,
    B, N,
    ROWS: tl.constexpr, BLOCK_N: tl.constexpr, HAS_GRAD_KL: tl.constexpr, HAS_GRAD_Z: tl.constexpr,
):
    rows = tl.program_id(0) * ROWS + tl.arange(0, ROWS)
    cols = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    row_mask = rows < B
    mask = row_mask[:, None] & (cols < N)[None, :]
    offsets = rows.to(tl.int64)[:, None] * N + cols[None, :]
    lv = tl.load(lv_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
    grad_mu = tl.zeros([ROWS, BLOCK_N], dtype=tl.float32)
    grad_lv = tl.zeros([ROWS, BLOCK_N], dtype=tl.float32)
    if HAS_GRAD_KL:
        g = tl.load(gkl_ptr + rows.to(tl.int64) * gkl_stride, mask=row_mask, other=0.0).to(tl.float32)
        mu = tl.load(mu_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
        grad_mu += g[:, None] * mu
        grad_lv += 0.5 * g[:, None] * (tl.exp(lv) - 1.0)
    if HAS_GRAD_Z:
        gz = tl.load(gz_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
        eps = tl.load(eps_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
        grad_mu += gz
        grad_lv += 0.5 * gz * tl.exp(0.5 * lv) * eps
    tl.store(gmu_ptr + offsets, grad_mu.to(gmu_ptr.dtype.element_ty), mask=mask)
    tl.store(glv_ptr + offsets, grad_lv.to(glv_ptr.dtype.element_ty), mask=mask)


def _row_shape(t: torch.Tensor) -> tuple[int, int]:
    """(B, N) of a batch of latents read as B rows of N coordinates."""
    return t.shape[0], math.prod(t.shape[1:])


def forward(
    mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(KL, varKL, anisotropy, z or None) in one launch; statistics fp32. Inputs fp16, bf16 or fp32."""
    # The kernels index element b * N + j of each tensor: contiguous() is a no-op for the tensors a
    # model returns, and a copy for any other layout.
    mu2, lv2 = mu.contiguous(), logvar.contiguous()
    batch, n = _row_shape(mu)
    p = plan(batch, n, target_programs(mu.device))
    kl, var_kl, aniso = (torch.empty(batch, device=mu.device, dtype=torch.float32) for _ in range(3))
    z = torch.empty(mu.shape, device=mu.device, dtype=mu.dtype) if eps is not None else None
    if p.split:
        partial = torch.empty((batch, p.n_chunks, N_PARTIALS), device=mu.device, dtype=torch.float32)
        counter = counters("gaussian_kl", mu.device, batch)
    else:
        partial = counter = kl  # unused pointers
    _forward_kernel[(cdiv(batch, p.rows_per_program), p.n_chunks)](
        mu2, lv2, eps.contiguous() if eps is not None else mu2, z if z is not None else mu2,
        kl, var_kl, aniso, partial, counter, batch, n, p.chunk, p.n_chunks,
        ROWS=p.rows_per_program, BLOCK_N=p.block_n, SAMPLE=eps is not None, SPLIT=p.split,
    )
    return kl, var_kl, aniso, z


def backward(
    mu: torch.Tensor,
    logvar: torch.Tensor,
    eps: torch.Tensor | None,
    grad_kl: torch.Tensor | None,
    grad_z: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    mu2, lv2 = mu.contiguous(), logvar.contiguous()
    batch, n = _row_shape(mu)
    grad_mu = torch.empty(mu.shape, device=mu.device, dtype=mu.dtype)
    grad_lv = torch.empty(logvar.shape, device=mu.device, dtype=logvar.dtype)
    has_grad_z = grad_z is not None and eps is not None
    p = plan(batch, n, target_programs(mu.device))
    _backward_kernel[(cdiv(batch, p.rows_per_program), cdiv(n, p.block_n))](
        mu2, lv2, eps.contiguous() if has_grad_z else mu2,  # type: ignore[union-attr]
        grad_kl if grad_kl is not None else mu2, grad_kl.stride(0) if grad_kl is not None else 0,
        grad_z.contiguous() if has_grad_z else mu2, grad_mu, grad_lv,  # type: ignore[union-attr]
        batch, n,
        ROWS=p.rows_per_program, BLOCK_N=p.block_n, HAS_GRAD_KL=grad_kl is not None, HAS_GRAD_Z=has_grad_z,
    )
    return grad_mu, grad_lv
