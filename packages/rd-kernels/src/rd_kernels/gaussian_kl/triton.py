r"""Triton kernels: one pass over μ and ℓ = log σ² gives the per-sample KL, its variance part, the
anisotropy statistics and (optionally) the reparameterised sample; one pass back gives both grads.

Forward, grid (B, chunks): each program reduces one chunk of one row into four fp32 partial sums

    Σ μ² + e^ℓ - 1 - ℓ,    Σ e^ℓ - 1 - ℓ,    Σ (ℓ - c),    Σ (ℓ - c)²       (c = ℓ_{b,0})

and writes ``z = μ + e^{ℓ/2} ε`` for its chunk. The partials are summed in PyTorch (B x chunks x 4
floats: negligible traffic, and a deterministic order, unlike atomics). Shifting ℓ by the row's first
element before squaring keeps the variance free of cancellation when |ℓ| is large (±30).

Backward, grid (B, blocks):   ∂KL/∂μ = g μ,   ∂KL/∂ℓ = ½ g (e^ℓ - 1),
plus, with a sample,          ∂z/∂μ = 1,      ∂z/∂ℓ = ½ e^{ℓ/2} ε.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

BLOCK = 1024
CHUNK_BLOCKS = 8  # blocks per forward program: 8192 elements, enough work per program on a GPU
N_PARTIALS = 4


@triton.jit
def _forward_kernel(
    mu_ptr, lv_ptr, eps_ptr, z_ptr, partial_ptr,
    N, n_chunks,
    BLOCK: tl.constexpr, CHUNK_BLOCKS: tl.constexpr, SAMPLE: tl.constexpr,
):
    row = tl.program_id(0)
    chunk = tl.program_id(1)
    base = row.to(tl.int64) * N
    shift = tl.load(lv_ptr + base).to(tl.float32)
    acc_kl = tl.zeros([BLOCK], dtype=tl.float32)
    acc_var = tl.zeros([BLOCK], dtype=tl.float32)
    acc_s1 = tl.zeros([BLOCK], dtype=tl.float32)
    acc_s2 = tl.zeros([BLOCK], dtype=tl.float32)
    start = chunk * (BLOCK * CHUNK_BLOCKS)
    for i in range(CHUNK_BLOCKS):
        idx = start + i * BLOCK + tl.arange(0, BLOCK)
        mask = idx < N
        mu = tl.load(mu_ptr + base + idx, mask=mask, other=0.0).to(tl.float32)
        lv = tl.load(lv_ptr + base + idx, mask=mask, other=0.0).to(tl.float32)
        var_term = tl.exp(lv) - 1.0 - lv  # exactly 0 where masked (lv = 0)
        acc_kl += mu * mu + var_term
        acc_var += var_term
        centred = tl.where(mask, lv - shift, 0.0)
        acc_s1 += centred
        acc_s2 += centred * centred
        if SAMPLE:
            eps = tl.load(eps_ptr + base + idx, mask=mask, other=0.0).to(tl.float32)
            z = mu + tl.exp(0.5 * lv) * eps
            tl.store(z_ptr + base + idx, z.to(z_ptr.dtype.element_ty), mask=mask)
    out = partial_ptr + (row.to(tl.int64) * n_chunks + chunk) * 4
    tl.store(out + 0, tl.sum(acc_kl, axis=0))
    tl.store(out + 1, tl.sum(acc_var, axis=0))
    tl.store(out + 2, tl.sum(acc_s1, axis=0))
    tl.store(out + 3, tl.sum(acc_s2, axis=0))


@triton.jit
def _backward_kernel(
    mu_ptr, lv_ptr, eps_ptr, grad_kl_ptr, grad_z_ptr, grad_mu_ptr, grad_lv_ptr,
    N,
    BLOCK: tl.constexpr, HAS_GRAD_Z: tl.constexpr,
):
    row = tl.program_id(0)
    block = tl.program_id(1)
    base = row.to(tl.int64) * N
    idx = block * BLOCK + tl.arange(0, BLOCK)
    mask = idx < N
    g = tl.load(grad_kl_ptr + row).to(tl.float32)
    mu = tl.load(mu_ptr + base + idx, mask=mask, other=0.0).to(tl.float32)
    lv = tl.load(lv_ptr + base + idx, mask=mask, other=0.0).to(tl.float32)
    grad_mu = g * mu
    grad_lv = 0.5 * g * (tl.exp(lv) - 1.0)
    if HAS_GRAD_Z:
        gz = tl.load(grad_z_ptr + base + idx, mask=mask, other=0.0).to(tl.float32)
        eps = tl.load(eps_ptr + base + idx, mask=mask, other=0.0).to(tl.float32)
        grad_mu += gz
        grad_lv += 0.5 * gz * tl.exp(0.5 * lv) * eps
    tl.store(grad_mu_ptr + base + idx, grad_mu.to(grad_mu_ptr.dtype.element_ty), mask=mask)
    tl.store(grad_lv_ptr + base + idx, grad_lv.to(grad_lv_ptr.dtype.element_ty), mask=mask)


def _rows(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(t.shape[0], -1).contiguous()


def forward(
    mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(KL, varKL, anisotropy, z or None); statistics in fp32. Inputs fp16, bf16 or fp32."""
    mu2, lv2 = _rows(mu), _rows(logvar)
    batch, n = mu2.shape
    n_chunks = triton.cdiv(n, BLOCK * CHUNK_BLOCKS)
    partial = torch.empty((batch, n_chunks, N_PARTIALS), device=mu.device, dtype=torch.float32)
    z = torch.empty_like(mu2) if eps is not None else None
    eps2 = _rows(eps) if eps is not None else mu2  # unused pointer when not sampling
    _forward_kernel[(batch, n_chunks)](
        mu2, lv2, eps2, z if z is not None else mu2, partial, n, n_chunks,
        BLOCK=BLOCK, CHUNK_BLOCKS=CHUNK_BLOCKS, SAMPLE=eps is not None,
    )
    sums = partial.sum(dim=1)
    kl, var_kl = 0.5 * sums[:, 0], 0.5 * sums[:, 1]
    mean = sums[:, 2] / n
    anisotropy = (sums[:, 3] / n - mean * mean).clamp_min(0.0)
    return kl, var_kl, anisotropy, (z.view_as(mu) if z is not None else None)


def backward(
    mu: torch.Tensor,
    logvar: torch.Tensor,
    eps: torch.Tensor | None,
    grad_kl: torch.Tensor,
    grad_z: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    mu2, lv2 = _rows(mu), _rows(logvar)
    batch, n = mu2.shape
    grad_mu, grad_lv = torch.empty_like(mu2), torch.empty_like(lv2)
    has_grad_z = grad_z is not None and eps is not None
    gz = _rows(grad_z) if grad_z is not None and eps is not None else mu2
    eps2 = _rows(eps) if grad_z is not None and eps is not None else mu2
    _backward_kernel[(batch, triton.cdiv(n, BLOCK))](
        mu2, lv2, eps2, grad_kl.to(torch.float32).contiguous(), gz, grad_mu, grad_lv, n,
        BLOCK=BLOCK, HAS_GRAD_Z=has_grad_z,
    )
    return grad_mu.view_as(mu), grad_lv.view_as(logvar)
