"""Diagnostic: how far does a change of rounding alone move a GECO run's tracking error?

Protocol v3 asks every GECO run to end within 3 % of its target in the evaluated KL. The sweep's one miss
(paper/tables/convergence.md) is PatchGAN λ = 5 at 20 nats, seed 2, at +3.16 %, in the arm whose rate
wanders at a fixed β (benchmarks/fixed_beta_wander.py). Whether 3.16 % is a property of the controller or of
one trajectory of a chaotic run is a question of scale: how much do the same runs' errors move when only the
order of floating-point sums changes?

Design (fixed in this file in a commit before its first run; a measurement, not a pilot: no rule, nothing is
chosen or adopted, and no verdict reads it):

* Runs: the default sweep's GECO cells of the vector VAE for PatchGAN at its largest λ (5) and for pixel
  SSE (λ = 0, the arm with no neural loss), at every target (5, 10, 20 nats) and seed (0-2): 18 runs,
  params.yaml's configs exactly (`bench_params.benchmark_params`, the sweep's lists narrowed only).
* Reference: the committed records of those runs (`paper/records/vector/geco/`), trained by `dvc repro`
  with oneDNN's convolutions. One of them, the miss, is trained again here as the sweep trains it, and its
  final KL must equal the record's bit for bit, else the script stops (the reference would not be these
  configs' runs).
* Control: each run trained with oneDNN switched off (``torch.backends.mkldnn.enabled = False``):
  PyTorch's own convolution kernels, the same arithmetic in other summation orders. This is the
  rounding-only change of `benchmarks/precision_pilot.py`, where two threads and oneDNN's ISA cap left
  every number bit-identical. One thread per process, two processes at once (`rd-train sweep --jobs 1`,
  one family each).
* Reported: per run, the tracking error (evaluated KL / target − 1) of the record and of the control,
  their difference, and the anisotropy's relative shift; per family, the runs within 3 % in each, the mean
  and largest |difference| of the error.

Extension (fixed in this file in a commit after the first result and before its own first run): the same
measurement for VGG16 (HED) at λ = 5, the other neural family, with its own reference check (its run at
20 nats, seed 2), written to its own JSON (``--families perceptual``).

Second extension (fixed in this file in a commit after both results and before its own first run): the
design's PatchGAN λ = 5 arm at twice the steps, i.e. the `length` stage's runs (10 nats, seeds 0-2, 2000
steps; `paper/records/vector/length/`), with its own reference check (seed 2), to see whether the spread
rounding produces shrinks with training length (``--sweep length --families adversarial``).

Writes JSON (``--out``) and prints a table. Resumable: finished runs under ``--work`` are reused.

    python benchmarks/geco_rounding_control.py --work /tmp/geco-rounding
    python benchmarks/geco_rounding_control.py --work /tmp/geco-rounding --families perceptual \
        --out benchmarks/results/cpu-geco-rounding-control-vgg.json
    python benchmarks/geco_rounding_control.py --work /tmp/geco-rounding --sweep length \
        --families adversarial --out benchmarks/results/cpu-geco-rounding-control-length.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from geco_tracking_runs import TOLERANCE  # protocol v3's 3 %

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
RECORDS = ROOT / "paper" / "records"
LAMS = {"adversarial": 5.0, "pixel": 0.0, "perceptual": 5.0}  # family -> its λ in this measurement
FAMILIES = ("adversarial", "pixel")  # the design's arms; the extension's: ("perceptual",)
MISS = ("adversarial", 20.0, 2)  # family, target, seed: the sweep's one run beyond 3 %
Key = tuple[str, float, int]  # family, target, seed


def narrowed(base: dict[str, Any], family: str, targets: list[float], seeds: list[int],
             sweep: str = "geco") -> dict[str, Any]:
    """``base`` (params.yaml) with the GECO sweep (or its `length` replicate) narrowed to ``family``'s λ,
    ``targets`` and ``seeds``."""
    params = json.loads(json.dumps(base))
    if LAMS[family] > 0:
        params["sweep"]["lams"] = [LAMS[family]]
    params["sweep"]["seeds"] = seeds
    if sweep == "length":
        params["sweep"]["length_replicate"]["targets"] = targets
    else:
        params["sweep"]["rate_targets"] = targets
    return params


def launch(folder: Path, params: dict[str, Any], family: str, onednn: bool,
           sweep: str = "geco") -> subprocess.Popen:
    """`rd-train sweep --sweep SWEEP` of ``params`` in ``folder``, one worker of one thread, oneDNN on or
    off for every run it trains."""
    from precision_pilot import prelude

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return subprocess.Popen(
        [sys.executable, "-c", prelude(onednn), "sweep", "--sweep", sweep, "--family", family,
         "--out", str(folder / "runs"), "--jobs", "1"], cwd=folder,
        env={**os.environ, "MPLBACKEND": "Agg", "TRITON_INTERPRET": "0", "RD_TRAIN_CORES": "1"})


def wait(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        if process.wait() != 0:
            raise SystemExit(f"geco_rounding_control: a sweep exited {process.returncode}")


def key(record: dict[str, Any]) -> Key:
    identity = record["identity"]
    return identity["family"], float(identity["target"]), int(identity["seed"])


def finished(folder: Path) -> dict[Key, dict[str, Any]]:
    """`key` -> the metrics of each finished run under ``folder`` (`rd_train.protocol.records.collect`)."""
    from rd_train.protocol import records

    return {key(record): record["metrics"] for record in records.collect(folder)}


def committed(families: tuple[str, ...] = FAMILIES, sweep: str = "geco",
              folder: Path = RECORDS) -> dict[Key, dict[str, Any]]:
    """`key` -> the committed record's metrics (`rd_train.protocol.records.read`), for this measurement's
    runs: the vector VAE's in ``sweep`` of ``families``, each at its λ."""
    from rd_train.protocol import records

    return {key(record): record["metrics"] for record in records.read(folder)
            if (i := record["identity"])["architecture"] == "vector" and i["sweep"] == sweep
            and i["family"] in families and float(i["lam"]) == LAMS[i["family"]]}


def summary(reference: dict, control: dict) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    rows = []
    for key in sorted(control):
        ref, ctl = reference[key], control[key]
        rows.append({"family": key[0], "target": key[1], "seed": key[2],
                     "error_record": ref["geco_tracking_error"], "error_control": ctl["geco_tracking_error"],
                     "error_shift": ctl["geco_tracking_error"] - ref["geco_tracking_error"],
                     "anisotropy_relative_shift": ctl["anisotropy"] / ref["anisotropy"] - 1})
    families = {}
    for family in sorted({r["family"] for r in rows}):
        mine = [r for r in rows if r["family"] == family]
        shifts = [abs(r["error_shift"]) for r in mine]
        families[family] = {
            "runs": len(mine),
            "within_3_percent_record": sum(abs(r["error_record"]) <= TOLERANCE for r in mine),
            "within_3_percent_control": sum(abs(r["error_control"]) <= TOLERANCE for r in mine),
            "mean_abs_error_shift": statistics.fmean(shifts), "max_abs_error_shift": max(shifts),
            "mean_abs_anisotropy_relative_shift": statistics.fmean(abs(r["anisotropy_relative_shift"])
                                                                   for r in mine)}
    return rows, families


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True, help="the runs (resumable)")
    parser.add_argument("--out", type=Path, default=RESULTS / "cpu-geco-rounding-control.json")
    parser.add_argument("--families", nargs="+", choices=sorted(LAMS), default=list(FAMILIES),
                        help="the design's arms (default) or the extension's (perceptual)")
    parser.add_argument("--sweep", choices=("geco", "length"), default="geco",
                        help="the GECO sweep (default) or its length replicate (the second extension)")
    args = parser.parse_args()
    from bench_params import benchmark_params
    from host_overhead import commit_of
    from rd_train.training.metrics import write_json

    base = benchmark_params("geco_rounding_control")
    sweep = args.sweep
    targets = [float(t) for t in (base["sweep"]["length_replicate"]["targets"] if sweep == "length"
                                  else base["sweep"]["rate_targets"])]
    seeds = [int(s) for s in base["sweep"]["seeds"]]
    # Runs are keyed by (family, target, seed): the length replicate's live apart from the GECO sweep's.
    work = args.work.resolve() / ("length" if sweep == "length" else "")
    start = time.perf_counter()
    families = tuple(args.families)
    # The reference check first: one run as the sweep trains it (the design's: the miss), beside the pixel
    # control where pixel SSE is measured.
    check = MISS if sweep == "geco" and families[0] == MISS[0] else (families[0], max(targets), seeds[-1])
    family, target, seed = check
    first = [launch(work / "reference", narrowed(base, family, [target], [seed], sweep), family, onednn=True,
                    sweep=sweep)]
    if "pixel" in families:
        first.append(launch(work / "control" / "pixel", narrowed(base, "pixel", targets, seeds, sweep),
                            "pixel", onednn=False, sweep=sweep))
    wait(first)
    reference = committed(families, sweep)
    again = finished(work / "reference")[check]
    if again["kl"] != reference[check]["kl"]:
        raise SystemExit(f"geco_rounding_control: {check} trained again ends at KL {again['kl']!r}, its "
                         f"record at {reference[check]['kl']!r}: the records are not these configs' runs")
    # Each neural family's nine runs: the seeds split over two processes.
    for family in (f for f in families if f != "pixel"):
        wait([launch(work / "control" / f"{family}-{half}", narrowed(base, family, targets, part, sweep),
                     family, onednn=False, sweep=sweep)
              for half, part in enumerate((seeds[0::2], seeds[1::2]))])
    control = {k: v for k, v in finished(work / "control").items() if k in reference}
    rows, by_family = summary(reference, control)
    print("| family | target | seed | error, record (oneDNN) | error, oneDNN off | shift "
          "| anisotropy shift |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['family']} | {r['target']:g} | {r['seed']} | {r['error_record']:+.2%} | "
              f"{r['error_control']:+.2%} | {r['error_shift']:+.2%} | "
              f"{r['anisotropy_relative_shift']:+.1%} |")
    for family, f in by_family.items():
        print(f"{family}: within 3 %: {f['within_3_percent_record']} of {f['runs']} (record), "
              f"{f['within_3_percent_control']} (oneDNN off); |error shift| mean "
              f"{f['mean_abs_error_shift']:.2%}, largest {f['max_abs_error_shift']:.2%}")
    command = "python benchmarks/geco_rounding_control.py --work WORK"
    if sweep != "geco":
        command += f" --sweep {sweep}"
    if families != FAMILIES or sweep != "geco":
        command += f" --families {' '.join(families)} --out {args.out.as_posix()}"
    paragraphs = __doc__.split("\n\n")  # the design, and the extension's paragraph where one ran
    design = paragraphs[2:4] + ([paragraphs[5]] if sweep == "length" else
                                [paragraphs[4]] if families != FAMILIES else [])
    write_json(args.out, {"what": paragraphs[0], "design": "\n\n".join(design), "command": command,
                          "commit": commit_of(ROOT), "reference_reproduced": True,
                          "reference_run": list(check), "runs": rows, "families": by_family,
                          "seconds": time.perf_counter() - start})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
