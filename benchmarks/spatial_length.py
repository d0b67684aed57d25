"""The AutoencoderKL's matched-rate claim at twice the steps: the second length issue 30 asks of each
architecture, trained outside the main job because it does not fit the protocol's 90 minutes on the
2-core machine (docs/protocol.md, the budget rule).

Design (fixed here, in the commit before the first run): the committed spatial grid's GECO cell
(params.yaml ``spatial``: VGG16 (HED) features, λ ∈ {0, 0.1, 0.5, 1, 2, 5}, 19 nats, seeds 0, 1 and 2) at
``sweep.length_replicate.steps_factor`` (2) times the steps. Everything else is as the ``spatial`` stage
trains it, dilated as the vector ``length`` stage is dilated: the warm-up, the validation cadence and the
offset correction's start stay the same fractions of training (`rd_train.pipeline.sweep.run_configs`,
sweep ``length``). That makes 18 runs, trained by the project's sweep (`rd_train.pipeline.sweep.run_sweep`,
two workers, one thread each). The runs are resumable: finished runs under ``--work`` are reused.

Analysis (fixed here too): the project's report (`rd_train.protocol.report.write_report`) over the
committed records (``paper/records``) with these 18 runs' records among them, so the AutoencoderKL's row
is tested exactly as every other matched-rate row at twice the steps:
- the stratified Page test;
- Holm over the rows of that claim at that length (three rows here, two in the committed claims.md);
- the summary's verdict rule (`rd_train.protocol.summary.verdict`): a claim holds only where it holds at
  both lengths;
- the effect at each length (claims.md, "The effect against training length");
- each run's GECO tracking error (convergence.md).
Every run counts and no run is filtered.

Writes ``--out`` (JSON: the AutoencoderKL's rows at both lengths, the cells, each run's tracking error,
the times, the machine) and the 18 runs' records under ``--records-out`` (`RECORDS`:
``paper/records/outside/spatial-length``), with a ``source.json`` there (`rd_train.protocol.records.Source`:
what they are, this command, the commit, why outside the main job, and the ``spatial`` stage's dvc.lock
entry they were trained under). The report reads that folder as part of ``paper/records`` (the
``aggregate`` stage, and ``rd-train report --records paper/records``), so claims.md and convergence.md
carry these runs, and
tests/test_spatial_length.py fails when the ``spatial`` stage's code or params move on without them: a
change to the training code then re-runs this script too (about 23-47 minutes on the 2-core machine; seconds
when the change retrains no run: the runs are reused, and the JSON keeps the commit and times they trained
in, with ``reused_runs``).
The script refuses to train while dvc.lock's ``spatial`` entry is not the working tree's (``dvc status``).

    python benchmarks/spatial_length.py --work /tmp/spatial-length \
        --out benchmarks/results/cpu-spatial-length.json
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_params import benchmark_params
from host_overhead import commit_of
from rd_train.protocol.records import OUTSIDE

ROOT = Path(__file__).resolve().parents[1]
LENGTH_PILOT = ROOT / "benchmarks" / "results" / "cpu-convergence-pilot.json"  # as dvc.yaml's aggregate
PLACE = Path(OUTSIDE) / "spatial-length"  # the replicate's place in a records folder
RECORDS = ROOT / "paper" / "records" / PLACE  # where its committed records are
STAGE = "spatial"  # the dvc.yaml stage whose code and params the replicate trains with, at twice the steps
WHY_OUTSIDE = ("its 23 minutes on the 2-core machine would take the main job past its 90-minute budget "
               "(docs/protocol.md)")


def length_params(params: Any, steps: int | None = None) -> Any:
    """The spatial grid's params with the vector sweep's length replicate at the spatial grid's targets;
    ``steps`` replaces the default length (a smoke test's, never a result's)."""
    from rd_train.params import from_mapping

    derived = params.spatial_params()
    raw = copy.deepcopy(dict(derived.raw))
    if steps is not None:
        raw["optim"]["max_steps"] = steps
        raw["rate"]["warmup_steps"] = steps // 10
        raw["trainer"]["val_every_n_steps"] = max(1, steps // 4)
    factor = params.raw["sweep"]["length_replicate"]["steps_factor"]
    raw["sweep"]["length_replicate"] = {"targets": list(raw["sweep"]["rate_targets"]), "steps_factor": factor}
    return from_mapping(raw, f"{params.source} (spatial, length replicate)")


def families(params: Any) -> list[str]:
    """pixel SSE (the shared λ = 0) first, then the spatial grid's neural families."""
    return ["pixel", *params.spatial.families]


def combined_report(params: Any, committed: Path, added: Path, out: Path) -> list[dict[str, Any]]:
    """The project's report (`rd_train.protocol.report.write_report`, as the ``aggregate`` stage writes
    it) over the ``committed`` records folder with ``added`` in the replicate's place in it (`PLACE`),
    under ``out``; every record it read. ``added`` is read where it lies when it is that place (the
    committed replicate); otherwise (a smoke test's) the report reads a copy of ``committed`` whose
    replicate is ``added``, so no run is read twice."""
    import shutil

    from rd_train.protocol.records import read
    from rd_train.protocol.report import write_report

    folder = committed
    if added.resolve() != (committed / PLACE).resolve():
        folder = out / "records"
        shutil.copytree(committed, folder, ignore=shutil.ignore_patterns(".*"))
        shutil.rmtree(folder / PLACE, ignore_errors=True)
        shutil.copytree(added, folder / PLACE)
    write_report(params, folder, out, LENGTH_PILOT)
    return read(folder)


def lock_entry(root: Path = ROOT) -> dict[str, Any]:
    """dvc.lock's entry for `STAGE`: its dependencies' hashes (path -> md5) and its params."""
    import yaml

    stage = yaml.safe_load((root / "dvc.lock").read_text())["stages"][STAGE]
    return {"stage": STAGE, "deps": {d["path"]: d["md5"] for d in stage["deps"]}, "params": stage["params"]}


def require_current_lock(root: Path = ROOT) -> None:
    """Stop, naming the fix, unless dvc.lock's `STAGE` entry is the working tree's code, data and params:
    the replicate must train with what the stage's runs trained with (a missing run folder is no change)."""
    status = subprocess.run([sys.executable, "-m", "dvc", "status", "--json", STAGE], cwd=root,
                            capture_output=True, text=True, check=True)
    changes = [change for entry in json.loads(status.stdout or "{}").get(STAGE, [])
               if isinstance(entry, dict) for change in entry.get("changed deps", {}).items()]
    if changes:
        raise SystemExit(f"spatial_length: dvc.lock's {STAGE} stage is not the working tree's ({changes[:3]}"
                         "...): re-run the pipeline (dvc repro) first, then this script")


def source(commit: str, command: str, root: Path = ROOT) -> dict[str, Any]:
    """The records folder's ``source.json`` (`rd_train.protocol.records.Source`)."""
    return {"what": "the AutoencoderKL's GECO cell at twice the steps, every λ and seed",
            "command": command, "commit": commit, "why_outside": WHY_OUTSIDE, "lock": lock_entry(root)}


def row_of(rows: list[Any], claim: str, architecture: str) -> dict[str, Any]:
    """The summary row of (claim, architecture), as JSON."""
    (row,) = [r for r in rows if r.claim == claim and r.architecture == architecture]
    return {"effect": row.effect.effect, "interval": [row.effect.low, row.effect.high], "p_holm": row.p_holm,
            "long_p_holm": row.long_p_holm, "runs": row.runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True, help="run directories (resumable)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--records-out", type=Path, default=RECORDS,
                        help="the runs' records, with their source.json (default: %(default)s)")
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    parser.add_argument("--records", type=Path, default=ROOT / "paper" / "records",
                        help="the committed records the report adds these runs to")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--steps", type=int, default=None,
                        help="the default length to double, for a smoke test (default: params.yaml's)")
    args = parser.parse_args()
    if args.steps is not None and args.records_out.resolve() == RECORDS.resolve():
        raise SystemExit(f"spatial_length: a smoke test's records (--steps) never replace the committed ones "
                         f"({RECORDS.relative_to(ROOT)}): pass --records-out DIR")
    from rd_theory.atomic import atomic_write_text
    from rd_train.params import from_mapping, load_params
    from rd_train.pipeline.sweep import run_sweep
    from rd_train.protocol import claims as claims_module
    from rd_train.protocol import diagnostics, records
    from rd_train.protocol.report import labels_of
    from rd_train.protocol.summary import verdict
    from rd_train.training.metrics import write_json
    from rd_train.training.precision import cpu_bf16_flags

    # The data root made absolute, so the runs train from any folder (bench_params).
    params = from_mapping(benchmark_params("spatial_length", args.params), str(args.params))
    if args.steps is None:  # a result's runs; a smoke test's may train with any tree
        require_current_lock()
    replicate = length_params(params, args.steps)
    runs = args.work / "runs"
    # Runs finished before this invocation are reused (same config; counted so the JSON can say so).
    reused = len(list((runs / "spatial" / "length").glob("*/*/metrics.json")))
    seconds = {}
    for family in families(params):
        start = time.perf_counter()
        run_sweep(replicate, "length", family, runs / "spatial" / "length" / family, args.jobs)
        seconds[family] = time.perf_counter() - start
    new = records.collect(runs)
    records.write(new, args.records_out)
    commit = commit_of(ROOT)
    previous = json.loads(args.out.read_text()) if args.out.exists() else {}
    if reused == len(new) == previous.get("runs"):
        # Nothing trained here (a change to the training code that changes no run re-locks the replicate):
        # the runs, so their commit and training times, are the earlier invocation's; source.json gets
        # today's lock entry.
        commit, seconds = previous["commit"], previous["train_seconds_per_family"]
    command = f"python benchmarks/spatial_length.py --work WORK --out {args.out.as_posix()}"
    if args.steps is not None:
        command += f" --steps {args.steps}"
    origin = json.dumps(source(commit, command), indent=1, sort_keys=True, ensure_ascii=False)
    atomic_write_text(args.records_out / records.SOURCE, origin + "\n")

    with tempfile.TemporaryDirectory(prefix="rd-spatial-length-") as scratch:
        # The file's params as the aggregate stage reads them (data root as written): the replicate's
        # folder enters the report only under the params it was trained with.
        every = combined_report(load_params(args.params), args.records, args.records_out, Path(scratch))
    result = claims_module.compute(every, labels_of(params, every))
    alpha = params.rules.alpha
    spatial = row_of(result.headlines, "anisotropy falls with λ at matched rate", "spatial")
    spatial["verdict"] = verdict(spatial["p_holm"], alpha, spatial["long_p_holm"])
    (long_cell,) = [c for c in result.cells if c.architecture == "spatial" and c.claim == "anisotropy_long"]
    spatial["effect_at_twice_the_steps"] = long_cell.effect.effect
    spatial["interval_at_twice_the_steps"] = [long_cell.effect.low, long_cell.effect.high]
    cells = [{"claim": c.claim, "architecture": c.architecture, "family": c.family, "key": c.key,
              "steps_sweep": "length" if c.claim == "anisotropy_long" else "geco", "seeds": c.seeds,
              "lams": c.lams, "table": c.table.tolist(), "p": c.p, "p_holm": c.p_holm,
              "effect": c.effect.effect, "interval": [c.effect.low, c.effect.high],
              "adjacent_falls": list(c.falls), "left_out": c.left_out}
             for c in result.cells if c.architecture == "spatial" and c.claim.startswith("anisotropy")]
    tracking = {r["path"]: diagnostics.tracking_error(r) for r in new}
    out = {"what": __doc__.split("\n\n")[0], "command": command, "commit": commit,
           "design": __doc__.split("\n\n")[1],
           "machine": {"cpu": platform.processor() or platform.machine(), "bf16_flags": cpu_bf16_flags()},
           "runs": len(new), "reused_runs": reused, "train_seconds_per_family": seconds,
           "autoencoderkl_matched_rate": spatial, "cells": cells,
           "tracking_error": tracking,
           "within_3_percent": sum(abs(e) <= 0.03 for e in tracking.values() if e is not None)}
    write_json(args.out, out)
    long_p = "not testable" if spatial["long_p_holm"] is None else f"{spatial['long_p_holm']:.2g}"
    print(f"AutoencoderKL, anisotropy at matched rate: {spatial['verdict']}; "
          f"p (Holm) {spatial['p_holm']:.2g} at the default length, {long_p} at twice the steps; "
          f"{out['within_3_percent']} of {len(new)} runs within 3 % of the target")


if __name__ == "__main__":
    main()
