"""What every `cim` command shares: the configuration from its options, the data set, the
common options, and printing a result as text or as one JSON object."""

from __future__ import annotations

import json
from pathlib import Path

from cim_spec.config import ConfigError, SystemConfig


def config_from(args) -> SystemConfig:
    """The system configuration: `--config FILE` (default: the paper's), then the overrides
    `--replication` and `--adc-bits`."""
    cfg = SystemConfig.load(args.config) if getattr(args, "config", None) else SystemConfig()
    changes = {}
    if getattr(args, "replication", None) is not None:
        changes["replication"] = args.replication
    if getattr(args, "adc_bits", None) is not None:
        changes["adc_bits"] = args.adc_bits
    return cfg.with_(**changes) if changes else cfg


def load_data(args):
    from golden import data
    return data.load(getattr(args, "data", None))


def emit(args, obj: dict, text: str, indent: int | None = None) -> None:
    """Print `obj` as one JSON object with `--json`, else the text."""
    print(json.dumps(obj, indent=indent) if getattr(args, "json", False) else text)


def split(d, args):
    """The images and labels that `--split` and `--limit` select."""
    images, labels = (d.test_images, d.test_labels) if args.split == "test" else \
        (d.train_images, d.train_labels)
    if args.limit is not None:
        if args.limit < 1:
            raise ConfigError(f"--limit must be at least 1, got {args.limit}")
        images, labels = images[:args.limit], labels[:args.limit]
    return images, labels


def add_common(sp, data: bool = True, cfg: bool = True) -> None:
    """`--json`, the configuration options and `--data`, as a command needs them."""
    sp.add_argument("--json", action="store_true", help="print one JSON object")
    if cfg:
        add_config(sp, json_flag=False)
    if data:
        sp.add_argument("--data", type=Path, help="MNIST: IDX directory or mnist.npz "
                        "(default: the bundled subset)")


def add_config(sp, json_flag: bool = True) -> None:
    if json_flag:
        sp.add_argument("--json", action="store_true", help="print one JSON object")
    sp.add_argument("--config", type=Path, help="system configuration TOML")
    sp.add_argument("--replication", type=int, help="conv replica groups (1 or 3)")
    sp.add_argument("--adc-bits", type=int, dest="adc_bits", help="ADC resolution")
