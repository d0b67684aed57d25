"""The Triton kernels compiled for real GPUs (sm_80, sm_90) on this CPU-only machine: every
specialisation the launchers can request builds a cubin, spills nothing to local memory, and moves
its bulk data in 128-bit accesses, which memory-bound kernels need to approach copy bandwidth.

The interpreter (how the numerical tests run the kernels) never reaches Triton's compiler; this does.
"""

import json
import os
import subprocess
import sys

import pytest

ARCHS = (80, 90)


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    out = tmp_path_factory.mktemp("cuda") / "report.json"
    env = {**os.environ, "TRITON_INTERPRET": "0"}
    done = subprocess.run(
        [sys.executable, "-m", "rd_kernels.cuda_report", *(f"--arch={a}" for a in ARCHS), "--json", str(out)],
        env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(out.read_text())


def test_every_specialisation_compiles_for_each_architecture(compiled):
    from rd_kernels.cuda_report import specialisations

    expected = {(s.kernel, s.label, arch) for s in specialisations() for arch in ARCHS}
    assert {(r["kernel"], r["label"], r["arch"]) for r in compiled} == expected
    kernels = {r["kernel"] for r in compiled}
    assert kernels == {"gaussian_kl:_forward_kernel", "gaussian_kl:_backward_kernel",
                       "balancer:_norms_kernel", "balancer:_weighted_sum_kernel"}
    assert all(r["registers"] > 0 for r in compiled)


def test_no_register_spills(compiled):
    spilled = [(r["kernel"], r["label"], r["arch"]) for r in compiled if r["local_bytes"]]
    assert not spilled


def test_bulk_loads_and_stores_are_128_bit(compiled):
    """Every whole tensor is read with 128-bit loads; narrow accesses are only the design's per-row and
    per-launch values (a bulk tensor read narrowly would add many more narrow loads than allowed)."""
    for r in compiled:
        where = (r["kernel"], r["label"], r["arch"])
        assert r["vector_loads"] >= r["bulk_loads"], (where, r["loads"])
        assert r["narrow_loads"] <= r["narrow_loads_allowed"], (where, r["loads"])
        assert r["narrow_stores"] <= r["narrow_stores_allowed"], (where, r["stores"])
