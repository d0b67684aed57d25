"""Compile every kernel specialisation for a CUDA architecture, without a GPU, and report what decides
its speed: registers, spills (local memory), and the width of its global loads and stores.

The kernels are memory-bound, so they reach the copy bandwidth only if each thread moves 128 bits per
access (``ld.global.v4.b32``: 4 fp32 or 8 half values) and nothing spills to local memory. Triton
compiles the same code on a GPU machine; here it stops at the cubin (ptxas ships in the triton wheel).
Like Triton's launcher on aligned contiguous tensors, the pointers and the length are specialised as
divisible by 16.

    python -m rd_kernels.cuda_report --arch 90 [--json report.json]

Needs ``TRITON_INTERPRET`` unset or 0 (the interpreter replaces the compiler); the command sets it
for itself.
"""

from __future__ import annotations

import argparse
import inspect
import itertools
import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

DTYPES = {"fp32": "*fp32", "bf16": "*bf16", "fp16": "*fp16"}


@dataclass(frozen=True)
class Specialisation:
    kernel: str  # module:function
    label: str
    signature: dict[str, str]
    constexprs: dict[str, Any]
    bulk_loads: int  # whole tensors read (each must use 128-bit loads)
    scalar_loads: int  # per-row or per-launch values by design: row shifts, ∂KL_b, partial sums, EMA state
    scalar_stores: int


@dataclass
class CompiledKernel:
    kernel: str
    label: str
    arch: int
    registers: int
    local_bytes: int  # spills: 0 for a kernel that keeps its state in registers
    shared_bytes: int
    loads: dict[str, int]  # PTX global load forms, e.g. {"ld.global.v4.b32": 8}
    stores: dict[str, int]
    bulk_loads: int
    narrow_loads_allowed: int  # the design's scalar accesses (x2 for packed tiles: a vector per tile)
    narrow_stores_allowed: int

    @property
    def vector_loads(self) -> int:
        return sum(n for form, n in self.loads.items() if ".v4." in form)

    @property
    def narrow_loads(self) -> int:
        return sum(n for form, n in self.loads.items() if ".v4." not in form)

    @property
    def narrow_stores(self) -> int:
        return sum(n for form, n in self.stores.items() if ".v4." not in form)


def _jit_function(path: str) -> Any:
    module, name = path.split(":")
    modules = {"gaussian_kl": "rd_kernels.gaussian_kl.triton", "balancer": "rd_kernels.balancer.triton"}
    import importlib

    return getattr(importlib.import_module(modules[module]), name)


def _spec(kernel: str, label: str, pointers: dict[str, str], constexprs: dict[str, Any],
          bulk_loads: int, scalar_loads: int, scalar_stores: int) -> Specialisation:
    """The kernel's own parameter list typed for Triton: constexprs, the given pointers, the rest i32."""
    function = _jit_function(kernel)
    names = inspect.signature(getattr(function, "fn", function)).parameters  # jit or interpreted
    signature = {name: "constexpr" if name in constexprs else pointers.get(name, "i32") for name in names}
    return Specialisation(kernel, label, signature, constexprs, bulk_loads, scalar_loads, scalar_stores)


# Tiles the launchers use (`rd_kernels.gaussian_kl.triton.plan`): 64 short rows of 16 coordinates per
# program (a vector latent), and one long row in 1024-wide steps (a spatial latent, an image), the
# latter whole or as one chunk of a row split across programs.
TILES = ((64, 16, False), (1, 1024, False), (1, 1024, True))


def specialisations() -> list[Specialisation]:
    """Every (kernel, dtype, tile, flag) combination the launchers in this package can produce."""
    from rd_kernels.balancer import triton as bal

    specs = []
    for dtype in DTYPES:
        pointers = {**dict.fromkeys(["mu_ptr", "lv_ptr", "eps_ptr", "z_ptr", "gz_ptr", "gmu_ptr", "glv_ptr"],
                                    DTYPES[dtype]),
                    **dict.fromkeys(["kl_ptr", "var_ptr", "aniso_ptr", "partial_ptr", "gkl_ptr"], "*fp32"),
                    "counter_ptr": "*i32"}
        for (rows, block_n, split), sample in itertools.product(TILES, (False, True)):
            c = {"ROWS": rows, "BLOCK_N": block_n, "SAMPLE": sample, "SPLIT": split}
            # μ, ℓ (+ε); the row's shift (+ the finisher's 4 partials); KL, varKL, A (+4 partials)
            specs.append(_spec("gaussian_kl:_forward_kernel",
                               f"{dtype} tile={rows}x{block_n} split={split} sample={sample}", pointers, c,
                               2 + sample, 1 + 4 * split, 3 + 4 * split))
        for (rows, block_n, _), (has_kl, has_z) in itertools.product(TILES[:2], ((True, False), (False, True),
                                                                                 (True, True))):
            c = {"ROWS": rows, "BLOCK_N": block_n, "HAS_GRAD_KL": has_kl, "HAS_GRAD_Z": has_z}
            # ℓ (+μ) (+∂z, ε); ∂KL_b per row
            specs.append(_spec("gaussian_kl:_backward_kernel",
                               f"{dtype} tile={rows}x{block_n} grad_kl={has_kl} grad_z={has_z}", pointers, c,
                               1 + has_kl + 2 * has_z, int(has_kl), 0))
        pointers = {**dict.fromkeys(["g0", "g1", "g2", "g3", "out_ptr"], DTYPES[dtype]),
                    **dict.fromkeys(["partial_ptr", "norm_ptr", "scale_ptr", "ema_sum_ptr", "ema_weight_ptr",
                                     "factor_ptr", "acc_ptr"], "*fp32"),
                    "counter_ptr": "*i32", "nonfinite_ptr": "*i32", "slot_ptr": "*i64",
                    "decay": "fp32", "epsilon": "fp32"}
        # One group that finishes and updates the EMA (one process), finishes without updating (DDP),
        # or is an earlier group of more than four losses (partials only).
        modes = [(k, k, True, True) for k in range(1, bal.GROUP + 1)]
        modes += [(2, 2, True, False), (4, 8, False, False)]
        for (rows, block_n, _), (k, k_total, finish, update) in itertools.product(TILES[:2], modes):
            c = {"K": k, "K_TOTAL": k_total, "ROWS": rows, "BLOCK_N": block_n, "FINISH": finish,
                 "UPDATE": update, "BALANCE": True}
            label = f"{dtype} tile={rows}x{block_n} K={k}/{k_total} finish={finish} update={update}"
            # K gradients; per loss: its partials (+ slot, EMA sum/weight, skip count, factor) and
            # stores of the partials, the norm (+ EMA sum/weight, skip count, scale)
            finished = k_total * finish
            specs.append(_spec("balancer:_norms_kernel", label, pointers, c, k,
                               finished * (1 + 5 * update), k + finished * (1 + 4 * update)))
        for k in range(1, bal.GROUP + 1):
            # More than GROUP gradients chain launches: the first stores the fp32 accumulator,
            # the last reads it.
            for accumulate, store_acc in ((False, False), (False, True), (True, True), (True, False)):
                c = {"K": k, "ACCUMULATE": accumulate, "STORE_ACC": store_acc, "BLOCK": bal.BLOCK}
                label = f"{dtype} K={k} accumulate={accumulate} store_acc={store_acc}"
                specs.append(_spec("balancer:_weighted_sum_kernel", label, pointers, c, k + accumulate, k, 0))
    return specs


def _resource_usage(cubin: bytes) -> dict[str, int]:
    """REG / SHARED / LOCAL from cuobjdump (shipped with triton's NVIDIA backend)."""
    import triton

    tool = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        text = subprocess.run([str(tool), "-res-usage", f.name], capture_output=True, text=True,
                              check=True).stdout
    found = dict(re.findall(r"(REG|SHARED|LOCAL):(\d+)", text))
    return {key: int(found.get(key, 0)) for key in ("REG", "SHARED", "LOCAL")}


def _count(pattern: str, ptx: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for form in re.findall(pattern, ptx):
        counts[form] = counts.get(form, 0) + 1
    return counts


def compile_for(spec: Specialisation, arch: int) -> CompiledKernel:
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    names = list(spec.signature)
    aligned = {(i,): [["tt.divisibility", 16]]
               for i, n in enumerate(names) if spec.signature[n] != "constexpr"}
    source = ASTSource(fn=_jit_function(spec.kernel), signature=spec.signature, constexprs=spec.constexprs,
                       attrs=aligned)
    compiled = triton.compile(source, target=GPUTarget("cuda", arch, 32))
    ptx = compiled.asm["ptx"]
    usage = _resource_usage(compiled.asm["cubin"])
    return CompiledKernel(
        kernel=spec.kernel, label=spec.label, arch=arch, registers=usage["REG"], local_bytes=usage["LOCAL"],
        shared_bytes=usage["SHARED"], loads=_count(r"\bld\.global[\w.:]*", ptx),
        stores=_count(r"\bst\.global[\w.:]*", ptx), bulk_loads=spec.bulk_loads,
        narrow_loads_allowed=spec.scalar_loads * _per_scalar(spec),
        narrow_stores_allowed=spec.scalar_stores * _per_scalar(spec),
    )


def _per_scalar(spec: Specialisation) -> int:
    """A per-row value of a packed tile is a short vector: up to two narrow instructions."""
    return 2 if spec.constexprs.get("ROWS", 1) > 1 else 1


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def report(archs: list[int]) -> list[CompiledKernel]:
    if _interpreting():
        raise RuntimeError("TRITON_INTERPRET is set: the interpreter replaces the compiler; run with "
                           "TRITON_INTERPRET=0 (python -m rd_kernels.cuda_report does)")
    return [compile_for(spec, arch) for arch in archs for spec in specialisations()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rd_kernels.cuda_report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", type=int, action="append",
                        help="compute capability x 10 (80, 90); repeatable")
    parser.add_argument("--json", help="write the full report here")
    args = parser.parse_args(argv)
    if _interpreting():  # re-run without the interpreter
        env = {**os.environ, "TRITON_INTERPRET": "0"}
        return subprocess.run([sys.executable, "-m", "rd_kernels.cuda_report", *(argv or sys.argv[1:])],
                              env=env, check=False).returncode
    rows = report(args.arch or [90])
    print(f"{'kernel':<30} {'specialisation':<44} {'sm':>3} {'regs':>4} {'spill':>5} {'v4 ld':>5} "
          f"{'narrow ld':>9} {'narrow st':>9}")
    for r in rows:
        print(f"{r.kernel:<30} {r.label:<44} {r.arch:>3} {r.registers:>4} {r.local_bytes:>5} "
              f"{r.vector_loads:>5} {r.narrow_loads:>9} {r.narrow_stores:>9}")
    if args.json:
        derived = ("vector_loads", "narrow_loads", "narrow_stores")
        payload = [{**asdict(r), **{key: getattr(r, key) for key in derived}} for r in rows]
        Path(args.json).write_text(json.dumps(payload, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
