"""A default-profile VGG16 (HED) run with and without the target-feature table, side by side.

The same run (λ = 5, β = 0.016, seed 0, the profile's steps unless ``--steps``), trained in this one
process with one thread, alternately without and with `rd_train.feature_table` (``--repeats`` times
each, in that order), nothing else running. Reports each fit's wall time (the table's build included),
the ratio of the medians, and whether the two runs' metrics are equal bit for bit (every key but the
timing).

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

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    from rd_train.config import from_dict
    from rd_train.feature_table import target_tabled_loss
    from rd_train.run import fit
    from rd_train.sweep import load_params, run_configs
    from rd_train.workers import output_to, set_threads

    set_threads(1)
    params = load_params(ROOT / "params.yaml")
    params["data"]["root"] = str(ROOT / params["data"]["root"])
    seconds: dict[str, list[float]] = {"without": [], "with table": []}
    metrics: dict[str, dict[str, Any]] = {}
    build_seconds = []
    with tempfile.TemporaryDirectory(prefix="rd-target-table-") as scratch:
        config = next(c for c in run_configs(params, "fixed", "perceptual", scratch)
                      if c.loss.lam == 5.0 and abs(c.rate.beta - 0.016) < 1e-12 and c.seed == 0)
        base = config.to_dict()
        if args.steps:
            base["optim"]["max_steps"] = args.steps
        for repeat in range(args.repeats):
            for name in seconds:
                run = from_dict({**base, "out_dir": str(Path(scratch) / f"{name}-{repeat}")})
                start = time.perf_counter()
                with output_to(Path(scratch) / "logs" / f"{name}-{repeat}.log"):
                    loss = target_tabled_loss(run) if name == "with table" else None
                    if loss is not None:
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
        "speedup_of_medians": median["without"] / median["with table"],
        "metrics_bit_identical": json.dumps(metrics["without"], sort_keys=True)
                                 == json.dumps(metrics["with table"], sort_keys=True),
        "final": {k: {"kl": m["kl"], "anisotropy": m["anisotropy"]} for k, m in metrics.items()},
    }
    print(json.dumps({k: out[k] for k in ("seconds", "speedup_of_medians", "metrics_bit_identical")}))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
