"""What every `cim` command shares: the configuration from its options, the data set, the
common options, and printing a result as text or as one JSON object."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from cim_spec.config import ConfigError, SystemConfig


class UsageError(ValueError):
    """A command line argparse cannot read (raised instead of argparse's exit, so that the
    error boundary in cim_cli.main reports it like any other bad input)."""


class Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(f"{self.prog}: error: {message}")


# The numeric options of every command, checked in one place (cim_cli.main calls
# check_numbers before any command runs): option dest -> (integer?, lowest, highest,
# lowest allowed?). A bound of None is open.
_I64 = 2 ** 63 - 1
NUMBERS = {
    "shards": (True, 1, 64, True),
    "workers": (True, 0, 4096, True),
    "images": (True, 1, 10 ** 9, True),
    "rtl_images": (True, 0, 10 ** 9, True),
    "limit": (True, 1, 10 ** 9, True),
    "start": (True, 0, 10 ** 9, True),
    "epochs": (True, 0, 10 ** 6, True),
    "qat_epochs": (True, 0, 10 ** 6, True),
    "batch": (True, 1, 10 ** 6, True),
    "calib_images": (True, 1, 10 ** 7, True),
    "seed": (True, 0, _I64, True),
    "drift_seed": (True, 0, _I64, True),
    "replication": (True, 1, None, True),
    "adc_bits": (True, 1, None, True),
    "cycles": (True, 1, 10 ** 12, True),
    "age": (False, 0.0, 3.2e11, True),          # at most ten thousand years
    "freq": (False, 0.0, 10000.0, False),
    "lr": (False, 0.0, 1e6, False),
    "threshold_us": (False, 0.0, 1e6, False),
    "fraction": (False, 0.0, 1.0, False),
    "hwa_scale": (False, 0.0, 10.0, True),
    "hwa_age": (False, 0.0, 3.2e11, True),
}


def check_numbers(args) -> None:
    """Refuse a numeric option outside its range, naming the option, value and range."""
    for dest, (integer, lo, hi, lo_ok) in NUMBERS.items():
        v = getattr(args, dest, None)
        if v is None:
            continue
        opt = "--" + {"threshold_us": "threshold"}.get(dest, dest).replace("_", "-")
        if not integer and not math.isfinite(v):
            raise ConfigError(f"{opt} must be a finite number, got {v}")
        if (v < lo if lo_ok else v <= lo) or (hi is not None and v > hi):
            top = "inf" if hi is None else f"{hi:g}" if not integer else str(hi)
            rng = f"{'[' if lo_ok else '('}{lo:g}, {top}]"
            raise ConfigError(f"{opt} must be in {rng}, got {v:g}")


def refuse_with(args, what: str, options: dict) -> None:
    """Refuse options that do not apply (`what` says when): `options` maps each option name
    to whether it was given."""
    given = [name for name, on in options.items() if on]
    if given:
        raise ConfigError(f"{'/'.join(given)} {'does' if len(given) == 1 else 'do'} not apply "
                          f"{what}")


def add_force(sp) -> None:
    sp.add_argument("--force", action="store_true",
                    help="replace existing outputs (never an input, never a file of another "
                         "kind)")


def note(msg: str) -> None:
    """Progress and notes go to stderr, so that stdout holds only the result."""
    print(msg, file=sys.stderr, flush=True)


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


def replicate_names(args):
    """`--replicate A,B`: the conv layers to replicate (None: all of them)."""
    if getattr(args, "replicate", None) is None:
        return None
    names = [n for n in args.replicate.split(",") if n]
    if not names:
        raise ConfigError("--replicate needs conv layer names, e.g. --replicate C1,C3")
    return names


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


def test_images(args):
    """The test images `--start` and `--images` select (`cim sim`, `cim board run`), their
    labels and their ids (their indices in the test set)."""
    import numpy as np

    d = load_data(args)
    n_all = len(d.test_labels)
    if args.start >= n_all:
        raise ConfigError(f"--start {args.start} is outside the {n_all} test images")
    stop = min(n_all, args.start + args.images)
    return (d.test_images[args.start:stop], d.test_labels[args.start:stop],
            np.arange(args.start, stop))
