"""How long a process of the training stack takes to exit, with and without
`rd_train.pipeline.workers.skip_exit_collection` (which every pool worker and the CLI call), side by side in
one invocation.

Each sample is a fresh Python process (one thread) that does the case's work, then prints the time and
the number of objects the garbage collector tracks, and returns; its exit time is from that print to the
moment this process sees it end. The two modes alternate within each repeat; medians and minima are
reported. Cases:

* ``imported``: ``import rd_train.training.run`` (torch, Lightning and what Lightning imports): what every
  sweep worker and every training command holds;
* ``fitted``: the same, then the default params' pixel-SSE run trained for ``--steps`` steps with `fit`
  (its checkpoint, metrics and logs written): a sweep worker after a run.

    python benchmarks/process_exit.py --out benchmarks/results/cpu-process-exit.json
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("rd-theory", "rd-kernels", "rd-train")
SKIP = "from rd_train.pipeline.workers import skip_exit_collection\nskip_exit_collection()\n"
REPORT = "import gc, sys, time\nprint(time.time(), len(gc.get_objects()), flush=True)\n"
FIT = """from rd_train.config import from_dict
from rd_train.params import load_params
from rd_train.training.run import fit
spec = load_params({params!r}).run_configs("fixed", "pixel", {out!r})[0].to_dict()
spec["optim"]["max_steps"] = {steps}
spec["data"]["root"] = {data!r}
fit(from_dict(spec))
"""


def child_code(case: str, skip: bool, steps: int, out: str, data: str) -> str:
    work = "import rd_train.training.run\n"
    if case == "fitted":
        work += FIT.format(params=str(ROOT / "params.yaml"), out=out, steps=steps, data=data)
    return (SKIP if skip else "") + work + REPORT


def exit_seconds(code: str, cwd: Path, env: dict[str, str]) -> tuple[float, int]:
    """(seconds from the child's last print to its end as seen here, objects the collector tracked)."""
    child = subprocess.Popen([sys.executable, "-c", code], cwd=cwd, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True)
    assert child.stdout is not None
    line = child.stdout.readline()
    child.wait()
    ended = time.time()
    if child.returncode != 0 or not line:
        raise SystemExit(f"the child process failed (exit code {child.returncode}):\n{code}")
    printed, objects = line.split()
    return ended - float(printed), int(objects)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "cpu-process-exit.json"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=100, help="steps of the `fitted` case's run")
    args = parser.parse_args()
    sources = [str(ROOT / "packages" / p / "src") for p in PACKAGES]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sources), "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    results: dict[str, dict[str, dict[str, object]]] = {}
    with tempfile.TemporaryDirectory(prefix="process-exit-") as scratch:
        sys.path[:0] = sources
        import yaml
        from rd_train.config import DataConfig
        from rd_train.training.data import save_embedded

        data = Path(scratch) / "embedded"  # the embedded dataset, built as `rd-train prepare` does
        save_embedded(data, DataConfig(**yaml.safe_load((ROOT / "params.yaml").read_text())["embedded"]))
        for case in ("imported", "fitted"):
            samples: dict[str, list[tuple[float, int]]] = {"default": [], "skip_exit_collection": []}
            for repeat in range(args.repeats):
                for mode in samples:
                    out = str(Path(scratch) / f"{case}-{mode}-{repeat}")
                    code = child_code(case, mode != "default", args.steps, out, str(data))
                    samples[mode].append(exit_seconds(code, Path(scratch), env))
            results[case] = {mode: {"exit_s": [s for s, _ in rows], "median_exit_s": statistics.median(
                s for s, _ in rows), "min_exit_s": min(s for s, _ in rows), "gc_objects": rows[0][1]}
                for mode, rows in samples.items()}
            row = results[case]
            print(f"{case:>9}: exit {row['default']['median_exit_s']:.2f} s by default, "
                  f"{row['skip_exit_collection']['median_exit_s']:.2f} s with skip_exit_collection "
                  f"({row['default']['gc_objects']:,} objects tracked)", flush=True)
    report = {"what": __doc__.split("\n\n")[0].replace("\n", " "), "command": " ".join(["python", *sys.argv]),
              "repeats": args.repeats, "fitted_steps": args.steps, "python": platform.python_version(),
              "cpu": platform.processor() or platform.machine(), "results": results}
    from rd_train.training.metrics import write_json

    write_json(args.out, report)  # atomic, and makes the folder
    return 0


if __name__ == "__main__":
    sys.exit(main())
