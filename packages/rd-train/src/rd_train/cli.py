"""``rd-train fit|evaluate|prepare --config run.yaml [--set key=value ...]``."""

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
        if name == "train-features":
            p.add_argument("--out", required=True, help="file for the learned feature network")
            p.add_argument("--steps", type=int, default=600)
    args = parser.parse_args(argv)
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
        from rd_train.data import save_embedded

        save_embedded(args.out, config.data)
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
