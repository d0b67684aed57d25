"""``rd-train fit|evaluate|prepare|train-features --config run.yaml [--set key=value ...]``, and the
DVC stage commands ``rd-train sweep`` and ``rd-train aggregate``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from rd_train.config import ConfigError, TrainConfig, from_dict


def _config(path: str | None, overrides: list[str]) -> TrainConfig:
    data: dict[str, Any] = {}
    if path:
        if not Path(path).is_file():
            raise FileNotFoundError(f"config file {path} does not exist")
        data = yaml.safe_load(Path(path).read_text()) or {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        node = data
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(raw)
    return from_dict(data)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rd-train", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("fit", "evaluate", "prepare", "train-features"):
        p = sub.add_parser(name)
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
        if name == "train-features":
            p.add_argument("--out", required=True, help="file for the learned feature network")
            p.add_argument("--steps", type=int, default=600)
    sweep = sub.add_parser("sweep", help="run one (sweep, loss family) of params.yaml (a DVC stage)")
    sweep.add_argument("--params", default="params.yaml")
    sweep.add_argument("--sweep", choices=["fixed", "geco"], required=True)
    sweep.add_argument("--family", required=True, help="pixel, or a key of params.yaml's losses")
    sweep.add_argument("--out", required=True)
    sweep.add_argument("--summary", required=True, help="JSON of the family's scalar metrics (DVC metrics)")
    agg = sub.add_parser("aggregate", help="figures and tables under paper/ from the runs' metrics")
    agg.add_argument("--params", default="params.yaml")
    agg.add_argument("--runs", default="runs")
    agg.add_argument("--paper", default="paper")
    args = parser.parse_args(argv)
    if args.command == "sweep":
        from rd_train.sweep import run_sweep

        run_sweep(args.params, args.sweep, args.family, args.out, args.summary)
        return 0
    if args.command == "aggregate":
        from rd_train.report import aggregate

        aggregate(args.params, args.runs, args.paper)
        return 0
    try:
        config = _config(args.config, args.set)
    except (ConfigError, FileNotFoundError) as error:
        print(f"rd-train: {error}", file=sys.stderr)
        return 2

    from rd_train import run
    from rd_train.metrics import write_json

    if args.command == "train-features":
        from rd_train.losses.learned_features import train_feature_network

        info = train_feature_network(args.out, config.data.image_size, config.data.n_train, args.steps,
                                     config.seed)
        print(f"held-out photo accuracy {info['heldout_accuracy']:.3f} "
              f"(chance {info['chance_accuracy']:.3f}) -> {args.out}")
        return 0
    if args.command == "prepare":
        from rd_train.data import dataset_md5, save_embedded
        from rd_train.dvc_pin import PinError, check_pin, write_pin

        save_embedded(args.out, config.data)
        try:
            if args.check:
                print(f"{args.out}: {check_pin(args.out, args.check)}, as {args.check} pins")
            elif args.pin:
                print(f"{args.out}: {write_pin(args.out, args.pin, args.dataset)}, pinned in {args.pin}")
            else:
                print(f"{args.out}: {dataset_md5(args.out)}")
        except PinError as error:
            print(f"rd-train: {error}", file=sys.stderr)
            return 1
        return 0
    if args.command == "fit":
        metrics = run.fit(config)
        print(f"kl={metrics['kl']:.4f} nats  anisotropy={metrics['anisotropy']:.4f}  "
              f"psnr={metrics['psnr']:.2f} dB  -> {Path(config.out_dir) / 'metrics.json'}")
        return 0
    checkpoint = args.checkpoint or str(Path(config.out_dir) / "checkpoints" / "last.ckpt")
    metrics = run.evaluate(config, checkpoint)
    if args.out:
        write_json(args.out, metrics)
    print(f"kl={metrics['kl']:.4f} nats  anisotropy={metrics['anisotropy']:.4f}  "
          f"psnr={metrics['psnr']:.2f} dB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
