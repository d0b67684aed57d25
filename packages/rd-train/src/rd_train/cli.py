"""``rd-train fit|evaluate|prepare --config run.yaml [--set key=value ...]``, and the DVC stage
commands ``rd-train sweep``, ``rd-train spatial-sweep``, ``rd-train records`` (each finished run's record,
git-tracked), ``rd-train report`` (every table and figure derived from the records), ``rd-train analyze``
and ``rd-train diffusability``; ``rd-train plan`` predicts the training stages' time on this machine
before they run (plan.py). The training stages import this module, so it holds the parsers and one-line
handlers only: what a command does lives in the module its handler calls.

A mistake the user can fix (a config value, a missing file or weights, an unreadable checkpoint, a
run directory holding another run, a params.yaml naming an unknown family) prints one line,
``rd-train: <what is wrong and what to do>``, on stderr and exits 2; ``--debug`` or
``RD_TRAIN_DEBUG=1`` adds the traceback. Anything else is a bug: traceback and exit code 1.

On a GPU, ``RD_TRAIN_STEP_GRAPH=1`` replays each training step's forward and backward as one CUDA graph
(fit and sweep; one process, no fp16 scaling, no compile). It computes what the eager step does (equal
bit for bit where tested, on a CPU); its speed on a GPU is not measured yet.
"""

from __future__ import annotations

import argparse
import atexit
import gc
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from rd_train.config import ConfigError, TrainConfig, from_dict, read_yaml
from rd_train.errors import UserError


def _params(path: str) -> Any:
    """The one `rd_train.params.Params` of a stage's command: read and validated here, before any work."""
    from rd_train.params import load_params

    return load_params(path)


def _config(path: str | None, overrides: list[str]) -> TrainConfig:
    data: dict[str, Any] = read_yaml(path) if path else {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        node = data
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item}: {part} is a value, not a section")
        try:
            node[leaf] = yaml.safe_load(raw)
        except yaml.YAMLError:
            raise ConfigError(f"--set {item}: the value is not valid YAML") from None
    return from_dict(data)


def _fit(args: argparse.Namespace) -> int:
    from rd_train.training import run

    config = _config(args.config, args.set)
    metrics = run.fit(config)
    if metrics:  # only the first process of a multi-GPU run reports
        print(f"kl={metrics['kl']:.4f} nats  anisotropy={metrics['anisotropy']:.4f}  "
              f"psnr={metrics['psnr']:.2f} dB  -> {Path(config.out_dir) / 'metrics.json'}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from rd_train.training import run
    from rd_train.training.metrics import write_json

    config = _config(args.config, args.set)
    checkpoint = args.checkpoint or str(Path(config.out_dir) / "checkpoints" / "last.ckpt")
    metrics = run.evaluate(config, checkpoint)
    if args.out:
        write_json(args.out, metrics)
    print(f"kl={metrics['kl']:.4f} nats  anisotropy={metrics['anisotropy']:.4f}  "
          f"psnr={metrics['psnr']:.2f} dB")
    return 0


def _prepare(args: argparse.Namespace) -> int:
    from rd_train.pipeline.dvc_pin import check_pin, write_pin
    from rd_train.training.data import dataset_md5, save_embedded

    config = _config(args.config, args.set)
    save_embedded(args.out, config.data)
    if args.check:
        print(f"{args.out}: {check_pin(args.out, args.check)}, as {args.check} pins")
    elif args.pin:
        print(f"{args.out}: {write_pin(args.out, args.pin, args.dataset)}, pinned in {args.pin}")
    else:
        print(f"{args.out}: {dataset_md5(args.out)}")
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from rd_train.pipeline.sweep import run_sweep

    run_sweep(_params(args.params), args.sweep, args.family, args.out, args.jobs)
    return 0


def _spatial_sweep(args: argparse.Namespace) -> int:
    from rd_train.pipeline.spatial import run_spatial_sweep

    run_spatial_sweep(_params(args.params), args.out, args.jobs)
    return 0


def _records(args: argparse.Namespace) -> int:
    from rd_train.protocol.records import write_from_runs  # records only: the stage needs no report code

    print(write_from_runs(args.runs, args.out))
    return 0


def _report(args: argparse.Namespace) -> int:
    from rd_train.protocol.report import write_report

    print(write_report(_params(args.params), args.records, args.out, args.length_pilot))
    return 0


def _analyze(args: argparse.Namespace) -> int:
    from rd_train.mechanism import analyze

    analyze(_params(args.params), args.runs, args.paper, args.out, args.jobs)
    return 0


def _diffusability(args: argparse.Namespace) -> int:
    from rd_train.diffusability import run_stage

    summary = run_stage(_params(args.params), args.runs, args.paper, args.out, args.jobs)
    table = Path(args.paper) / "tables" / "diffusability.md"
    print(f"diffusability: {len(summary['records'])} runs -> {table}")
    return 0


def _plan(args: argparse.Namespace) -> int:
    from rd_train.pipeline.plan import format_plan, plan_params, plan_to_json

    lengths = (args.lengths[0], args.lengths[1]) if args.lengths else None
    params = _params(args.params)
    plans, costs, workers = plan_params(params, args.jobs, lengths, costs_path=args.costs)
    print(format_plan(plans, workers))
    if args.json:
        from rd_train.training.metrics import write_json

        write_json(Path(args.json), plan_to_json(params, plans, costs, workers))
        print(f"plan: -> {args.json}")
    return 0


def _inspect(args: argparse.Namespace) -> int:
    import time

    from rd_train.inspection import Options, inspect_autoencoders

    if args.limit is not None and args.limit < 1:
        raise ConfigError(f"--limit must be >= 1, got {args.limit}")
    options = Options(device=args.device, precision=args.precision, weight_images=args.weight_images,
                      vgg_weights=args.vgg_weights)
    start = time.perf_counter()
    results = inspect_autoencoders(args.autoencoders, args.images, args.out, args.size, args.limit, options)
    for name, r in results.items():
        print(f"{name}: KL {r['kl_nats']:.2f} nats ({r['kl_bits_per_pixel']:.4f} bits/pixel)  anisotropy "
              f"{r['anisotropy']:.3f}  active units {r['active_units']}/{r['latent_coordinates']}  "
              f"PSNR {r['psnr_db']:.2f} dB  scaling_factor {r['aggregate']['scaling_factor']:.5f}")
    print(f"{len(results)} autoencoder(s) on {r['images']} images in {time.perf_counter() - start:.1f} s -> "
          f"{Path(args.out) / 'comparison.md'}")
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "fit": _fit, "evaluate": _evaluate, "prepare": _prepare, "sweep": _sweep,
    "spatial-sweep": _spatial_sweep, "records": _records, "report": _report,
    "analyze": _analyze, "inspect": _inspect, "diffusability": _diffusability, "plan": _plan,
}


def _add_stage_paths(parser: argparse.ArgumentParser, runs: str = "runs") -> None:
    """The inputs every report stage reads: the params file, the runs and the paper directory."""
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--runs", default=runs)
    parser.add_argument("--paper", default="paper")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rd-train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debug", action="store_true", help="show the traceback of a user error too")
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: a subcommand's absent --debug must not override one given before the subcommand.
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("fit", "evaluate", "prepare"):
        p = sub.add_parser(name, parents=[common])
        p.add_argument("--config", help="YAML run config")
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config key, e.g. --set loss.lam=0.5")
        if name == "evaluate":
            p.add_argument("--checkpoint", help="defaults to <out_dir>/checkpoints/last.ckpt")
            p.add_argument("--out", help="write the metrics JSON here")
        if name == "prepare":
            p.add_argument("--out", required=True, help="directory for the embedded dataset")
            pin = p.add_mutually_exclusive_group()
            pin.add_argument("--check", metavar="DVC_FILE",
                             help="stop unless the rebuilt dataset hashes as this DVC file pins (data.dvc)")
            pin.add_argument("--pin", metavar="DVC_FILE",
                             help="write a DVC file pinning the rebuilt dataset (after changing its params)")
            p.add_argument("--dataset", default="data/embedded",
                           help="with --pin: where the DVC file puts the dataset (default data/embedded)")
    sweep = sub.add_parser("sweep", parents=[common],
                           help="run one (sweep, loss family) of params.yaml (a DVC stage)")
    sweep.add_argument("--params", default="params.yaml")
    sweep.add_argument("--sweep", choices=["fixed", "geco", "length", "control"], required=True)
    sweep.add_argument("--family", required=True, help="pixel, or a key of params.yaml's losses")
    sweep.add_argument("--out", required=True)
    sweep.add_argument("--jobs", type=int, default=1, help="runs trained at once (processes sharing the "
        "cores)")
    spatial = sub.add_parser("spatial-sweep", parents=[common],
                             help="train the AutoencoderKL grid of params.yaml `spatial` (a DVC stage)")
    spatial.add_argument("--params", default="params.yaml")
    spatial.add_argument("--out", required=True, help="runs go to OUT/<sweep>/<family>/<run>")
    spatial.add_argument("--jobs", type=int, default=1, help="runs trained at once (processes sharing the "
        "cores)")
    rec = sub.add_parser("records", parents=[common],
                         help="every finished run's record (identity, metrics, validation history, training "
                         "curves) as git-tracked JSON lines under OUT (a DVC stage)")
    rec.add_argument("--runs", default="runs", help="the runs folder, searched at any depth")
    rec.add_argument("--out", default="paper/records")
    rep = sub.add_parser("report", parents=[common],
                         help="every table and figure derived from the run records (claims, convergence, "
                         "sweeps, runs.csv) under OUT: no run or checkpoint needed (the DVC stage aggregate)")
    rep.add_argument("--params", default="params.yaml")
    rep.add_argument("--records", default="paper/records",
                     help="the run records: one folder, or several joined by ':' (os.pathsep); a folder's "
                     "sub-folders holding a source.json (e.g. paper/records/outside/spatial-length) hold "
                     "runs trained outside dvc repro, which enter only if that file's params equal --params")
    rep.add_argument("--out", default="paper")
    rep.add_argument("--length-pilot", default=None, metavar="JSON",
                     help="the length pilot's results, shown beside the sweep's lengths in claims.md "
                     "(benchmarks/results/cpu-convergence-pilot.json)")
    dif = sub.add_parser("diffusability", parents=[common],
                         help="a latent sampler on every matched-rate run, scored against floors "
                         "(a DVC stage)")
    _add_stage_paths(dif)
    dif.add_argument("--out", required=True, help="directory for per-run results and summary.json")
    dif.add_argument("--jobs", type=int, default=1, help="runs scored at once (processes)")
    ana = sub.add_parser("analyze", parents=[common],
                         help="effective distortion weights of every finished run (a DVC stage)")
    _add_stage_paths(ana)
    ana.add_argument("--out", required=True, help="JSON of every run's results")
    ana.add_argument("--jobs", type=int, default=1, help="runs analysed at once (processes)")
    pla = sub.add_parser("plan", parents=[common],
                         help="predict how long the training stages of a params file take here (times "
                         "short runs of each model and family first)")
    pla.add_argument("--params", default="params.yaml")
    pla.add_argument("--jobs", type=int, help="workers the stages get (default: the params' sweep.jobs)")
    pla.add_argument("--lengths", type=int, nargs=2, metavar=("SHORT", "LONG"),
                     help="steps of the two timed runs (default: 10 %% and 30 %% of the params' steps)")
    pla.add_argument("--json", help="also write the prediction and the timed costs here")
    pla.add_argument("--costs", help="reuse the costs an earlier `plan --json` timed on this machine")
    ins = sub.add_parser("inspect", parents=[common],
                         help="rate and posterior geometry of diffusers AutoencoderKLs or runs, side by side")
    ins.add_argument("autoencoders", nargs="+", metavar="AUTOENCODER",
                     help="a local diffusers AutoencoderKL directory (config.json + weights), or a run "
                     "directory")
    ins.add_argument("--images", required=True,
                     help="a folder of images (searched recursively) or 'embedded'")
    ins.add_argument("--size", type=int, default=256, help="center crop and resize to this many pixels")
    ins.add_argument("--limit", type=int, help="at most this many images (embedded: default 64)")
    ins.add_argument("--out", default="inspect", help="directory for the reports (default ./inspect)")
    ins.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    # A measuring tool measures exactly by default: fp32 forward passes. bf16 (or auto, which is bf16
    # where the hardware has it) is faster and approximates (0.14 % of the KL on a tiny AutoencoderKL).
    ins.add_argument("--precision", choices=["32-true", "auto", "bf16-mixed"], default="32-true",
                     help="of the networks' forward passes (default 32-true: exact; auto and bf16-mixed "
                     "are faster and approximate; statistics are float64 from the outputs)")
    ins.add_argument("--weight-images", type=int, default=4,
                     help="images for the effective distortion weights (0: skip them)")
    ins.add_argument("--vgg-weights", action="store_true",
                     help="also the effective weights under VGG16 (HED) features")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # A command that imported torch and Lightning exits in 0.3 s instead of 1.6 s: the interpreter's final
    # garbage collection skips the frozen objects (`rd_train.pipeline.workers.skip_exit_collection`, which
    # every pool worker calls; written out here so that no stage depends on the pipeline for two lines).
    atexit.register(gc.freeze)
    debug = args.debug or os.environ.get("RD_TRAIN_DEBUG", "") not in ("", "0")
    try:
        return COMMANDS[args.command](args)
    except UserError as error:
        if debug:
            traceback.print_exc()
        message = " ".join(str(error).split())  # one line, whatever the message's layout
        print(f"rd-train: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
