"""Host time of the fused paths with the Triton launches stubbed out: what the Python wrappers, autograd
and allocations cost per call besides the launches themselves. On a GPU that host time decides the
speed of small calls (the kernels take microseconds); this measures it on any CPU. For scale, the eager
formula and torch.compile of it run the same call with their real CPU kernels (small at 64 x 16); on a
GPU each of their launches costs more host time than on a CPU, so this is a proxy, not a GPU number.

Each case runs in a fresh subprocess (Triton's interpreter flag, then the stubs, are set before the
import), optionally against another source tree, alternating current and baseline so that drift of the
machine hits both. Numbers: best of ``--repeats`` rounds of ``--calls`` calls, in µs per call.

    python benchmarks/host_overhead.py --out benchmarks/results/cpu-host-overhead.json [--baseline-src DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("rd-theory", "rd-kernels", "rd-train")

# forward + backward of (z, kl, _) = fn(mu, logvar, eps) at a training batch's latent (64 x 16), as a
# step uses it; `setup` defines fn
FORWARD_BACKWARD = """
{setup}
mu = torch.randn(64, 16, requires_grad=True); lv = torch.randn(64, 16, requires_grad=True)
eps = torch.randn(64, 16); gz = torch.randn(64, 16); gk = torch.ones(64)
def call():
    mu.grad = lv.grad = None
    z, kl, _ = fn(mu, lv, eps)
    torch.autograd.backward([z, kl], [gz, gk])
"""
FORMULA = """
from rd_kernels.gaussian_kl import reference
def fn(mu, lv, eps):
    return reference.sample(mu, lv, eps), reference.gaussian_kl(mu, lv), reference.anisotropy(lv.detach())
"""

CASES = {
    "sample_and_kl fwd+bwd 64x16": FORWARD_BACKWARD.format(setup="""
from rd_kernels import sample_and_kl
from rd_kernels.gaussian_kl import triton as kernels
kernels._forward_kernel = kernels._backward_kernel = Stub()
def fn(mu, lv, eps):
    return sample_and_kl(mu, lv, eps, backend="triton")
"""),
    # for scale: the eager formula (rd_kernels' reference ops) and torch.compile of it, same call; these
    # run their real CPU kernels, which at 64 x 16 cost little next to the dispatch
    "eager formula fwd+bwd 64x16": FORWARD_BACKWARD.format(setup=FORMULA),
    # the two launchers alone (tiling, allocations, argument preparation), no autograd
    "sample_and_kl launchers 64x16": """
from rd_kernels.gaussian_kl import triton as kernels
kernels._forward_kernel = kernels._backward_kernel = Stub()
mu = torch.randn(64, 16); lv = torch.randn(64, 16); eps = torch.randn(64, 16); gz = torch.randn(64, 16)
gk = torch.ones(64)
def call():
    kernels.forward(mu, lv, eps)
    kernels.backward(mu, lv, eps, gk, gz)
""",
    "torch.compile(eager formula) fwd+bwd 64x16": FORWARD_BACKWARD.format(
        setup=FORMULA + "fn = torch.compile(fn)\n"),
    # the floor: what autograd alone costs for a call with two differentiable outputs (a multiply and a
    # view), the part of the fused path's host time that no wrapper change can remove
    "autograd floor fwd+bwd 64x16": FORWARD_BACKWARD.format(setup="""
def fn(mu, lv, eps):
    return mu * 1.0, lv[:, 0], None
"""),
    **{f"balancer.balance K={k}": f"""
from rd_kernels import Balancer
from rd_kernels.balancer import triton as kernels
kernels._norms_kernel = kernels._weighted_sum_kernel = Stub()
grads = {{f"l{{i}}": torch.randn(8, 3, 16, 16) for i in range({k})}}
balancer = Balancer({{name: 1.0 for name in grads}}, backend="triton")
def call():
    balancer.balance(grads)
""" for k in (1, 2, 4)},
}

HARNESS = """
import os, sys, time, json
os.environ["TRITON_INTERPRET"] = "1"
import torch
torch.set_num_threads(1)
class Stub:
    def __getitem__(self, grid):
        return lambda *args, **kwargs: None
{case}
calls, repeats = int(sys.argv[1]), int(sys.argv[2])
for _ in range(calls // 10):
    call()
best = float("inf")
for _ in range(repeats):
    start = time.perf_counter()
    for _ in range(calls):
        call()
    best = min(best, (time.perf_counter() - start) / calls * 1e6)
print("RESULT", json.dumps(best))
"""


def measure(source: Path, case: str, calls: int, repeats: int) -> float:
    path = os.pathsep.join(str(source / "packages" / p / "src") for p in PACKAGES)
    done = subprocess.run([sys.executable, "-c", HARNESS.format(case=CASES[case]), str(calls), str(repeats)],
                          capture_output=True, text=True, check=False,
                          env={**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"})
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{case} in {source} failed:\n{done.stderr[-2000:]}")
    return float(json.loads(lines[-1][7:]))


def cpu_model() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or platform.machine()
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return f"{names[0]} ({len(names)} logical CPUs)" if names else platform.machine()


def commit_of(source: Path) -> str | None:
    done = subprocess.run(["git", "-C", str(source), "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True, check=False)
    return done.stdout.strip() or None if done.returncode == 0 else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--baseline-src", type=Path, help="another source tree (repository root)")
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--rounds", type=int, default=3, help="alternating subprocess rounds per case")
    args = parser.parse_args()
    sources = {"current": ROOT, **({"baseline": args.baseline_src.resolve()} if args.baseline_src else {})}
    results: dict[str, dict[str, float]] = {}
    for case in CASES:
        best = {name: float("inf") for name in sources}
        for _ in range(args.rounds):
            for name, source in sources.items():
                best[name] = min(best[name], measure(source, case, args.calls, args.repeats))
        results[case] = {f"{name}_us_per_call": us for name, us in best.items()}
        if "baseline" in best:
            results[case]["baseline_over_current"] = best["baseline"] / best["current"]
        print(case, {k: round(v, 2) for k, v in results[case].items()}, flush=True)
    import torch

    report = {"what": "host µs per call, Triton launches stubbed out, best of rounds x repeats",
              "machine": cpu_model(), "python": platform.python_version(), "current_commit": commit_of(ROOT),
              "torch": torch.__version__, "calls": args.calls, "repeats": args.repeats, "rounds": args.rounds,
              "baseline_commit": commit_of(args.baseline_src) if args.baseline_src else None,
              "results": results}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
