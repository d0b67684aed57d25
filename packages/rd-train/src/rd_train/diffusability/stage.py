"""The DVC stage ``diffusability``: `score.score_run` on every matched-rate (GECO) run, in parallel,
resumable, with one progress line per run; then the verdicts, tables and figures (`report.py`).

Every GECO run is scored, converged or not, so the verdicts can be shown with and without the
convergence filter; the filtered ones are the pre-registered verdicts. A run's result is kept in
``<out>/runs/<run>.json`` under a fingerprint of what determines it (the stage's params, the run's
metrics.json and the source of the modules that compute the scores, `SCORING_SOURCES`): an interrupted
stage resumes, a changed input is recomputed, and a change to the tables or figures alone re-scores nothing.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rd_theory.atomic import atomic_write_text

from rd_train.params.sections import DiffusabilityConfig
from rd_train.pipeline.progress import duration

if TYPE_CHECKING:
    from rd_train.params import Params

PACKAGE = Path(__file__).parent
SCORING_SOURCES = ("features.py", "flow.py", "metrics.py", "score.py")


def fingerprint(config: DiffusabilityConfig, run_dir: Path) -> str:
    digest = hashlib.sha256(json.dumps(config.to_dict(), sort_keys=True).encode())
    digest.update((run_dir / "metrics.json").read_bytes())
    for name in SCORING_SOURCES:
        digest.update((PACKAGE / name).read_bytes())
    return digest.hexdigest()


def _score(args: tuple[str, DiffusabilityConfig]) -> dict[str, Any]:
    from rd_train.diffusability.score import score_run

    run_dir, config = args
    return score_run(run_dir, config)


def score_all(
    run_dirs: list[Path], config: DiffusabilityConfig, out: Path, jobs: int, stream: Any = None
) -> dict[str, dict[str, Any]]:
    """``run name -> score_run result`` for every run, reusing results whose fingerprint still holds."""
    from rd_train.pipeline.workers import map_in_workers, plan_workers

    stream = stream or sys.stderr
    cache = out / "runs"
    cache.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, Any]] = {}
    todo = []
    for run_dir in run_dirs:
        path, key = cache / f"{run_dir.name}.json", fingerprint(config, run_dir)
        if path.is_file():
            kept = json.loads(path.read_text())
            if kept.get("fingerprint") == key:
                results[run_dir.name] = kept
                continue
        todo.append((run_dir, path, key))
    plan = plan_workers(jobs)
    print(
        f"[diffusability] {len(run_dirs)} runs ({len(results)} reused), {plan.describe()}",
        file=stream,
        flush=True,
    )
    start, done = time.perf_counter(), 0
    args = [(str(d), config) for d, _, _ in todo]

    def finished(item: tuple[Path, Path, str], result: dict[str, Any]) -> None:
        nonlocal done
        run_dir, path, key = item
        result["fingerprint"] = key
        atomic_write_text(path, json.dumps(result) + "\n")
        results[run_dir.name] = result
        done += 1
        elapsed = time.perf_counter() - start
        left = len(todo) - done
        eta = f"ETA {duration(elapsed / done * left)}" if left else "stage done"
        e = result["endpoints"]
        print(
            f"[diffusability] {done}/{len(todo)} {run_dir.name}  latent SW {e['latent_sw']:.4f}  excess KID "
            f"{e['excess_kid']:.3f}  anisotropy {result['geometry']['anisotropy']:.3f}  "
            f"({duration(result['seconds'])})  {eta}",
            file=stream,
            flush=True,
        )

    for item, result in zip(todo, map_in_workers(_score, args, jobs), strict=True):
        finished(item, result)
    return results


def scored_targets(study: Any, config: DiffusabilityConfig) -> list[float]:
    """The rate targets whose GECO runs are scored: ``diffusability.targets``, or every target."""
    return [float(t) for t in config.targets] if config.targets else study.targets


def run_stage(
    params: Params, runs: str | Path, paper: str | Path, out: str | Path, jobs: int = 1
) -> dict[str, Any]:
    """Score every GECO run, then write ``<out>/summary.json`` (every record, verdicts, relations),
    ``paper/tables/diffusability.md`` and the three figures."""
    from rd_train.diffusability import report
    from rd_train.diffusability.summary import summarise
    from rd_train.mechanism import load_study

    study = load_study(params, runs)
    config = params.diffusability
    geco = sorted((r for r in study.runs if r.sweep == "geco" and r.target in scored_targets(study, config)),
                  key=lambda r: str(r.dir))
    out, paper = Path(out), Path(paper)
    results = score_all([r.dir for r in geco], config, out, jobs)
    summary = summarise(study, geco, results, config)
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1) + "\n")
    atomic_write_text(paper / "tables" / "diffusability.md", report.table(summary))
    report.figures(summary, results, paper / "figures")
    return summary
