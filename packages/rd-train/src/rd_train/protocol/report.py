"""`rd-train report --records DIR --out DIR`: every table and figure derived from the run records (the DVC
stage ``aggregate``), with no run directory or checkpoint: a change here re-runs in seconds on a fresh clone.
``--records`` takes one folder or several joined by ``os.pathsep`` (`rd_train.protocol.records`); a folder of
runs trained outside ``dvc repro`` (``paper/records/outside/<name>/``) enters only when its ``source.json``
says it was trained under this params file's values, and claims.md names every folder, read or set aside.

Writes, under ``out``:

* ``tables/claims.md``: protocol v3's claims (`rd_train.protocol.claims`), the summary first, the effect
  against training length (`rd_train.protocol.length`, with the length pilot's file when given) and the
  balancer control (`rd_train.protocol.control`);
* ``tables/convergence.md``: each run's drift and GECO tracking error (`rd_train.protocol.diagnostics`);
* ``tables/sweeps.md``: every cell's mean and spread over seeds, per λ;
* ``tables/runs.csv``: one row per run;
* ``figures/``: the claims' figures (`rd_train.protocol.figures`);
* ``metrics/``: one JSON per headline row (DVC metrics: ``dvc metrics show`` lists the verdicts);
* ``plots/matched_rate.csv``: anisotropy against λ of every matched-rate run (a DVC plot).

The analyses that need weights (effective weights, diffusability) have stages and tables of their own.
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rd_theory.atomic import atomic_write_text

from rd_train.errors import MissingDataError
from rd_train.protocol import claims as claims_module
from rd_train.protocol import control, diagnostics, figures, length
from rd_train.protocol.records import merged, sources
from rd_train.protocol.summary import verdict

if TYPE_CHECKING:
    from rd_train.params import Params

RUN_COLUMNS = ("path", "architecture", "sweep", "family", "lam", "beta", "target", "seed", "steps", "kl",
               "anisotropy", "psnr", "pixel_sse", "final_beta", "tracking_error")


def labels_of(params: Params, records: list[dict[str, Any]]) -> dict[str, str]:
    """Each family key of the records -> what a table calls it (its loss, never the params key)."""
    families = {r["identity"]["family"] for r in records}
    return {f: params.label(f) for f in sorted(families) if f == "pixel" or f in params.families}


def run_row(record: dict[str, Any]) -> dict[str, Any]:
    identity, metrics = record["identity"], record["metrics"]
    distortion = metrics.get("distortion") or {}
    return {"path": record["path"], **{k: identity[k] for k in RUN_COLUMNS[1:9]},
            "kl": metrics.get("kl"), "anisotropy": metrics.get("anisotropy"), "psnr": metrics.get("psnr"),
            "pixel_sse": distortion.get("pixel_sse"), "final_beta": metrics.get("beta"),
            "tracking_error": diagnostics.tracking_error(record)}


def runs_csv(records: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=RUN_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for record in records:
        row = run_row(record)
        writer.writerow({k: "" if v is None else (f"{v:.6g}" if isinstance(v, float) else v)
                         for k, v in row.items()})
    return buffer.getvalue()


def _spread(values: list[float]) -> str:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return "–"
    if len(finite) == 1:
        return f"{finite[0]:.3g}"
    return f"{statistics.fmean(finite):.3g} ± {statistics.stdev(finite):.2g}"


def sweeps(records: list[dict[str, Any]], labels: dict[str, str]) -> str:
    """sweeps.md: per (architecture, sweep, family, β or target, λ) the mean ± SD over seeds."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        i = record["identity"]
        key = i["beta"] if i["sweep"] in ("fixed", "control") else i["target"]
        groups[(i["architecture"], i["sweep"], i["family"], float(key), i["steps"], float(i["lam"]))].append(
            run_row(record))
    lines = ["# Every cell of the sweeps", "",
             "Mean ± SD over seeds of the evaluated model (EMA weights, held-out images); every run counts. "
             "β for the fixed-β and control sweeps, the rate target for GECO's.", "",
             "| architecture | sweep | family | β or target | steps | λ | seeds | KL (nats) | anisotropy | "
             "PSNR (dB) | final β | GECO tracking error |",
             "|---|---|---|---:|---:|---:|---:|---|---|---|---|---|"]
    for (architecture, sweep, family, key, steps, lam), rows in sorted(groups.items()):
        def values(name: str, rows: list[dict[str, Any]] = rows) -> list[float]:
            return [float(r[name]) for r in rows if isinstance(r[name], int | float)]
        errors = values("tracking_error")
        tracking = _spread([100 * e for e in errors]) + " %" if errors else "–"
        lines.append(f"| {architecture} | {sweep} | {labels.get(family, family)} | {key:g} | {steps} | "
                     f"{lam:g} | {len(rows)} | {_spread(values('kl'))} | {_spread(values('anisotropy'))} | "
                     f"{_spread(values('psnr'))} | {_spread(values('final_beta'))} | {tracking} |")
    return "\n".join(lines) + "\n"


def headline_metrics(result: claims_module.Claims, alpha: float) -> dict[str, dict[str, Any]]:
    """One DVC metrics file per headline row, named claim_family_architecture."""
    out = {}
    for row in result.headlines:
        claim = next(k for k, v in claims_module.CLAIMS.items() if v[3] == row.claim)
        name = "_".join(part.split(" (")[0].replace(" ", "-").lower() for part in (claim, row.family,
                                                                                 row.architecture))
        e = row.effect
        out[name] = {"verdict": verdict(row.p_holm, alpha, row.long_p_holm), "effect": _finite(e.effect),
                     "effect_low": _finite(e.low), "effect_high": _finite(e.high),
                     "p_holm": _finite(row.p_holm), "runs": row.runs}
        if row.long_p_holm is not None:  # the matched-rate claim's second length, where it was run
            out[name]["p_holm_twice_the_steps"] = _finite(row.long_p_holm)
    return out


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def matched_rate_plot(records: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["architecture", "family", "target", "steps", "seed", "lam", "anisotropy"])
    for r in records:
        i = r["identity"]
        if i["sweep"] in diagnostics.TRACKED:
            writer.writerow([i["architecture"], i["family"], f"{i['target']:g}", i["steps"], i["seed"],
                             f"{i['lam']:g}", f"{float(r['metrics']['anisotropy']):.6g}"])
    return buffer.getvalue()


def read_pilot(path: str | Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise MissingDataError(f"--length-pilot {path}: cannot read it as JSON ({error}); give the length "
                               f"pilot's results ({length.PILOT}) or leave the option out") from error


def write_report(params: Params, records_dir: str | Path | Sequence[str | Path], out: str | Path,
                 length_pilot: str | Path | None = None) -> str:
    """Everything the module doc lists, from ``params`` (the rules), the records (one folder or several:
    `rd_train.protocol.records.folders`) and, when given, the length pilot's results (shown beside the
    sweep's lengths); one line back."""
    pilot = read_pilot(length_pilot)
    # A folder trained outside dvc repro enters only under the params it was trained with: another
    # profile's report sets it aside and says so.
    folders = sources(records_dir)
    used = [s for s in folders if s.trained_under(dict(params.raw))]
    records = merged(used)
    provenance = [s.describe() for s in used] + [
        s.describe_set_aside(params.source) for s in folders if s not in used]
    labels = labels_of(params, records)
    alpha = params.rules.alpha
    out = Path(out)
    result = claims_module.compute(records, labels)
    extra = length.section(records, labels, pilot) + control.section(records, alpha, labels)
    atomic_write_text(out / "tables" / "claims.md",
                      claims_module.document(result, alpha, params.preregistered_in, labels, extra,
                                             amended_in=params.amended_in, sources=provenance))
    atomic_write_text(out / "tables" / "convergence.md",
                      diagnostics.document(records, params.window))
    atomic_write_text(out / "tables" / "sweeps.md", sweeps(records, labels))
    atomic_write_text(out / "tables" / "runs.csv", runs_csv(records))
    for name, values in headline_metrics(result, alpha).items():
        atomic_write_text(out / "metrics" / f"{name}.json",
                          json.dumps(values, indent=1, sort_keys=True) + "\n")
    atomic_write_text(out / "plots" / "matched_rate.csv", matched_rate_plot(records))
    drawn = figures.draw_all(records, labels, out / "figures")
    return (f"report: {len(records)} runs, {len(result.headlines)} headline verdicts -> "
            f"{out / 'tables' / 'claims.md'} and {len(drawn)} figures")
