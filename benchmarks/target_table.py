"""A default-profile VGG16 (HED) run without the target-feature table, with its own, and with the sweep's
shared one, side by side.

The same run (λ = 5, β = 0.016, seed 0, the profile's steps unless ``--steps``), trained in this one
process with one thread, in turn without a table, with a table built for the run (its build included in
its time), and with the shared, memory-mapped table of
`rd_train.training.feature_table.shared_table` (built once
before the first timed fit, as a sweep's first VGG16 (HED) run would: its build is reported apart, since
a sweep pays it once for all its runs), ``--repeats`` times each, nothing else running. Reports each fit's
wall time, the ratios of the medians to the run without a table, and whether every run's metrics are
equal bit for bit (every key but the timing).

    python benchmarks/target_table.py --out benchmarks/results/cpu-target-table.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_params import benchmark_params

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    from rd_train.config import from_dict
    from rd_train.pipeline.sweep import run_configs
    from rd_train.pipeline.workers import output_to, set_threads
    from rd_train.training.feature_table import target_tabled_loss
    from rd_train.training.run import fit

    set_threads(1)
    params = benchmark_params("target_table")
    seconds: dict[str, list[float]] = {"without": [], "with table": [], "shared table": []}
    metrics: dict[str, dict[str, Any]] = {}
    build_seconds = []
    with tempfile.TemporaryDirectory(prefix="rd-target-table-") as scratch:
        tables = Path(scratch) / "tables"
        config = next(c for c in run_configs(params, "fixed", "perceptual", scratch)
                      if c.loss.lam == 5.0 and abs(c.rate.beta - 0.016) < 1e-12 and c.seed == 0)
        base = config.to_dict()
        if args.steps:
            base["optim"]["max_steps"] = args.steps
        start = time.perf_counter()
        target_tabled_loss(from_dict(base), directory=tables)  # the sweep's one-off build
        shared_build_seconds = time.perf_counter() - start
        for repeat in range(args.repeats):
            for name in seconds:
                run = from_dict({**base, "out_dir": str(Path(scratch) / f"{name}-{repeat}")})
                start = time.perf_counter()
                with output_to(Path(scratch) / "logs" / f"{name}-{repeat}.log"):
                    loss = (target_tabled_loss(run) if name == "with table" else
                            target_tabled_loss(run, directory=tables) if name == "shared table" else None)
                    if name == "with table":
                        build_seconds.append(time.perf_counter() - start)
                    result = fit(run, neural_loss=loss)
                seconds[name].append(time.perf_counter() - start)
                for key in ("train_seconds_this_process", "config"):
                    result.pop(key)
                metrics[name] = result
                print(f"{name}: {seconds[name][-1]:.1f} s", flush=True)
    median = {k: statistics.median(v) for k, v in seconds.items()}
    out = {
        "what": __doc__.split("\n\n")[0],
        "command": "python benchmarks/target_table.py" + (f" --steps {args.steps}" if args.steps else "")
                   + f" --repeats {args.repeats}",
        "steps": base["optim"]["max_steps"], "threads": 1, "precision": base["precision"],
        "seconds": seconds, "table_build_seconds": build_seconds,
        "shared_table_build_seconds": shared_build_seconds,
        "speedup_of_medians": median["without"] / median["with table"],
        "speedup_of_medians_shared": median["without"] / median["shared table"],
        "metrics_bit_identical": len({json.dumps(m, sort_keys=True) for m in metrics.values()}) == 1,
        "final": {k: {"kl": m["kl"], "anisotropy": m["anisotropy"]} for k, m in metrics.items()},
    }
    print(json.dumps({k: out[k] for k in ("seconds", "speedup_of_medians", "speedup_of_medians_shared",
                                          "metrics_bit_identical")}))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
