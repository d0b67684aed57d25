"""Diagnostic: inside one GECO run, per validation, the KLs the offset correction compares and the target it
sets, under the default offset and the lag-matched one (``rate.geco_offset_average``).

The exploration (benchmarks/geco_gain_exploration.py ``--variants lagmatched``) ended every PatchGAN λ = 5
run of seeds 90-93 above its target, a surprise for a correction built to remove a lag. This re-trains the
exploration's worst run under both offsets (PatchGAN λ = 5, 20 nats, seed 92: +6.6 % under the default) and
records, at each validation: the read KL's mean over the last 50 steps, K̄ (GECO's EMA), K̃ (the read KL
averaged with the weights' decay, computed beside the run whatever the offset reads), the evaluated KL, the
training target before and after the correction, and β. The trace reads each step's KL on the host (a
synchronisation, no change to any number: the default's final KL must equal the exploration's, and the
script checks that it does).

No rule and no choice: a measurement. Writes JSON (``--out``) and prints one table per offset.

    python benchmarks/geco_offset_trace.py
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
RUN = ("adversarial", 5.0, 20.0, 92)  # family, λ, target, seed: the exploration's worst default run
EXPLORED = RESULTS / "cpu-geco-offset-exploration-higher.json"  # the default's runs on these seeds (gain 0.8)
WEIGHTS_DECAY = 0.99  # K̃'s decay: params.yaml's optim.ema_decay (checked below)


# Each trace's label in the results, and the exploration's variant it trains: the default of the trace's time
# was the exploration's offset08 (gain 0.8), which names its GECO keys whatever params.yaml says later.
TRACED = {"default": "offset08", "lagmatched": "lagmatched"}


def traced(label: str) -> dict[str, Any]:
    """Train `RUN` under the exploration's variant `TRACED` ``[label]`` with GECO's update and correction
    traced."""
    import geco_gain_exploration as exploration
    import torch
    from rd_train.training import rate

    torch.set_num_threads(1)
    rows: list[dict[str, float]] = []
    kls: list[float] = []
    slow = [0.0, 0.0]
    update, correct = rate.GECO.update, rate.GECO.correct

    def traced_update(self: Any, step: int, kl: torch.Tensor, finite: torch.Tensor) -> None:
        update(self, step, kl, finite)
        if bool(finite):
            kls.append(float(kl))
            slow[0], slow[1] = WEIGHTS_DECAY * slow[0] + kls[-1], WEIGHTS_DECAY * slow[1] + 1.0

    def traced_correct(self: Any, step: int, evaluated_kl: float, max_steps: int) -> None:
        before = self.training_target
        correct(self, step, evaluated_kl, max_steps)
        rows.append({"step": step, "read_kl_last_50": sum(kls[-50:]) / len(kls[-50:]),
                     "k_bar": float(self.kl_ema), "k_tilde": slow[0] / slow[1], "evaluated_kl": evaluated_kl,
                     "target_before": before, "target_after": self.training_target, "beta": float(self.beta)})

    rate.GECO.update, rate.GECO.correct = traced_update, traced_correct  # this worker process only
    *_, error = exploration.one((*RUN, TRACED[label]))
    return {"variant": label, "error": error, "validations": rows}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=RESULTS / "cpu-geco-offset-trace.json")
    args = parser.parse_args()
    from bench_params import benchmark_params
    from host_overhead import commit_of
    from rd_train.training.metrics import write_json

    assert benchmark_params("geco_offset_trace")["optim"]["ema_decay"] == WEIGHTS_DECAY
    start = time.perf_counter()
    context = multiprocessing.get_context("spawn")  # a fresh process per run, as the exploration's
    with ProcessPoolExecutor(2, mp_context=context, max_tasks_per_child=1) as pool:
        traces = list(pool.map(traced, list(TRACED)))
    _, lam, target, seed = RUN
    (explored,) = [r["error"] for r in json.loads(EXPLORED.read_text())["runs"] if r["variant"] == "offset08"
                   and (r["family"], r["lam"], r["target"], r["seed"]) == RUN]
    same = traces[0]["error"] == explored
    for t in traces:
        print(f"\n{t['variant']}: PatchGAN λ = {lam:g}, {target:g} nats, seed {seed}: "
              f"{100 * t['error']:+.2f} %")
        print("| step | read KL, last 50 | K̄ | K̃ | evaluated KL | target before → after | β |")
        print("|---:|---:|---:|---:|---:|---|---:|")
        for r in t["validations"]:
            print(f"| {r['step']} | {r['read_kl_last_50']:.2f} | {r['k_bar']:.2f} | {r['k_tilde']:.2f} | "
                  f"{r['evaluated_kl']:.2f} | {r['target_before']:.2f} → {r['target_after']:.2f} | "
                  f"{r['beta']:.4f} |")
    print(f"\nthe default's error equals the exploration's bit for bit: {same}")
    run = dict(zip(("family", "lam", "target", "seed"), RUN, strict=True))
    write_json(args.out, {"what": __doc__.split("\n\n")[0], "run": run,
                          "command": "python benchmarks/geco_offset_trace.py", "commit": commit_of(ROOT),
                          "default_equals_exploration": same, "traces": traces,
                          "seconds": time.perf_counter() - start})
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
