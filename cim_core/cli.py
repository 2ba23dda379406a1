"""The `cim` command."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from .config import ConfigError, SystemConfig


def _config(args) -> SystemConfig:
    cfg = SystemConfig.load(args.config) if getattr(args, "config", None) else SystemConfig()
    changes = {}
    if getattr(args, "replication", None) is not None:
        changes["replication"] = args.replication
    if getattr(args, "adc_bits", None) is not None:
        changes["adc_bits"] = args.adc_bits
    return cfg.with_(**changes) if changes else cfg


def _data(args):
    from golden import data
    return data.load(getattr(args, "data", None))


def _emit(args, obj: dict, text: str) -> None:
    print(json.dumps(obj) if getattr(args, "json", False) else text)


def _split(d, args):
    images, labels = (d.test_images, d.test_labels) if args.split == "test" else \
        (d.train_images, d.train_labels)
    if args.limit is not None:
        if args.limit < 1:
            raise ConfigError(f"--limit must be at least 1, got {args.limit}")
        images, labels = images[:args.limit], labels[:args.limit]
    return images, labels


# ---------------------------------------------------------------------------------------------

def cmd_map(args) -> int:
    from golden.network import MCNN

    from .mapping import map_network
    m = map_network(_config(args), MCNN)
    if args.json:
        print(m.to_json())
    else:
        print(m.table())
    return 0


def cmd_train(args) -> int:
    from golden import model_file, train
    from golden.network import MCNN
    d = _data(args)
    if args.data is None:
        print("note: training on the bundled 2,000-image subset; give --data for full MNIST",
              file=sys.stderr)
    model = train.train(MCNN, d, epochs=args.epochs, qat_epochs=args.qat_epochs,
                        seed=args.seed, progress=not args.quiet)
    model_file.save(model, args.out)
    _emit(args, {"out": str(args.out), **{k: v for k, v in model.meta.items()
                                          if k.endswith("accuracy") or k == "test_images"}},
          f"wrote {args.out}")
    return 0


def cmd_eval(args) -> int:
    from . import stages
    d = _data(args)
    images, labels = _split(d, args)
    t0 = time.time()
    if args.chip is not None:
        from .cli_chip import eval_chip
        extra = eval_chip(args, images, labels)
        acc = extra.pop("accuracy")
        args.stage = extra.pop("stage")
    elif args.age:
        raise ConfigError("--age needs a chip state (--chip FILE)")
    elif args.stage == "float":
        model = stages.load_model(args.weights)
        acc = stages.float_accuracy(model, images, labels)
        extra = {}
    elif args.stage == "quant":
        model = stages.load_model(args.weights)
        cfg = _config(args)
        mapping, prog = stages.ideal_program(cfg, model)
        acc = stages.chip_accuracy(prog.chip(mapping), images, labels,
                                   progress=not args.json, desc="ideal chip")
        extra = {"replication": cfg.replication, "adc_bits": cfg.adc_bits}
    else:
        raise ConfigError(f"unknown stage {args.stage!r}")
    out = {"stage": args.stage, "accuracy": acc, "images": int(len(labels)),
           "data": str(args.data) if args.data else "bundled", "split": args.split,
           "seconds": round(time.time() - t0, 2), **extra}
    age = f" at age {args.age:g} s" if args.age else ""
    _emit(args, out, f"{args.stage}{age}: accuracy {100 * acc:.2f}% on {len(labels)} "
                     f"{args.split} images ({out['data']})")
    return 0


def cmd_demo(args) -> int:
    from . import stages
    d = _data(args)
    images, labels = d.test_images, d.test_labels
    if args.limit:
        images, labels = images[:args.limit], labels[:args.limit]
    cfg = _config(args)
    model = stages.load_model(args.weights)
    rows = [("float (software)", stages.float_accuracy(model, images, labels))]
    mapping, prog = stages.ideal_program(cfg, model)
    chip = prog.chip(mapping)
    rows.append(("quantized ideal chip", stages.chip_accuracy(
        chip, images, labels, progress=not args.json, desc="ideal chip")))
    state = None
    if not args.no_chip:
        from .cli_chip import demo_rows
        more, state = demo_rows(args, cfg, model, d, images, labels)
        rows += more
        chip = state.chip
    result = {"images": int(len(labels)), "replication": cfg.replication,
              "stages": {name: acc for name, acc in rows}}
    width = max(len(n) for n, _ in rows)
    text = [f"mCNN on {len(labels)} MNIST test images "
            f"({'bundled subset' if args.data is None else args.data}), "
            f"replication {cfg.replication}", ""]
    text += [f"  {name:<{width}}  {100 * acc:6.2f}%" for name, acc in rows]
    if args.rtl_images:
        from .cli_rtl import rtl_summary
        sim = rtl_summary(chip, images[:args.rtl_images], labels[:args.rtl_images],
                          np.arange(args.rtl_images), progress=not args.json)
        result["rtl"] = sim
        text += ["", f"RTL (Verilator) on the first {sim['images']} images, "
                     f"{'after hybrid training' if state else 'ideal chip'}:",
                 f"  bit-exact with the golden model  {sim['bitexact']}/{sim['images']}",
                 f"  cycles per image                 {sim['cycles_per_image']:.0f} "
                 f"({sim['hw_images_per_s']:,.0f} images/s at {cfg.clock_mhz:g} MHz)",
                 "  cycles per layer                 " + ", ".join(
                     f"{n} {c}" for n, c in sim["cycles_per_layer"].items())]
    if args.out:
        _write_run(args.out, result, state)
    _emit(args, result, "\n".join(text))
    return 0 if not args.rtl_images or result["rtl"]["bitexact"] == result["rtl"]["images"] \
        else 1


def _write_run(out: Path, result: dict, state) -> None:
    """A run directory for `cim report`: the stages, the RTL summary and the chip state."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "stages.json").write_text(json.dumps(result, indent=1))
    if "rtl" in result:
        (out / "sim.json").write_text(json.dumps(result["rtl"], indent=1))
    if state is not None:
        from . import chipstate
        chipstate.save(state, out / "chip_hybrid")


# ---------------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cim", description=__doc__ + " Memristor CIM kit: "
                                "golden model, mapping, RTL flows for the Yao 2020 mCNN.")
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp, data=True, cfg=True):
        sp.add_argument("--json", action="store_true", help="print one JSON object")
        if cfg:
            sp.add_argument("--config", type=Path, help="system configuration TOML")
            sp.add_argument("--replication", type=int, help="conv replica groups (1 or 3)")
            sp.add_argument("--adc-bits", type=int, dest="adc_bits", help="ADC resolution")
        if data:
            sp.add_argument("--data", type=Path, help="MNIST: IDX directory or mnist.npz "
                            "(default: the bundled subset)")

    sp = sub.add_parser("map", help="print the mapping of the mCNN onto the PEs")
    common(sp, data=False)
    sp.set_defaults(func=cmd_map)

    sp = sub.add_parser("train", help="train the mCNN ex situ (quantization-aware)")
    common(sp, cfg=False)
    sp.add_argument("--epochs", type=int, default=20)
    sp.add_argument("--qat-epochs", type=int, default=5, dest="qat_epochs")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--out", type=Path, default=Path("mcnn_weights.npz"))
    sp.add_argument("--quiet", action="store_true")
    sp.set_defaults(func=cmd_train)

    sp = sub.add_parser("eval", help="accuracy of a stage on bundled or user data")
    common(sp)
    sp.add_argument("--stage", choices=["float", "quant"], default="quant",
                    help="float network, or quantized ideal chip (bit-accurate)")
    sp.add_argument("--weights", type=Path, help="trained model .npz (default: bundled)")
    sp.add_argument("--split", choices=["test", "train"], default="test")
    sp.add_argument("--limit", type=int, help="only the first N images")
    sp.add_argument("--chip", type=Path, help="evaluate a chip state (from cim program/hybrid)")
    sp.add_argument("--age", type=float, help="with --chip: seconds of conductance relaxation")
    sp.add_argument("--drift-seed", type=int, dest="drift_seed",
                    help="with --age: seed of the drift (default: the chip's seed)")
    sp.set_defaults(func=cmd_eval)

    sp = sub.add_parser("demo", help="the main job on the bundled default: accuracy per stage")
    common(sp)
    sp.add_argument("--weights", type=Path, help="trained model .npz (default: bundled)")
    sp.add_argument("--limit", type=int, help="only the first N test images")
    sp.add_argument("--preset", default="yao2020", help="device preset name or TOML file")
    sp.add_argument("--seed", type=int, default=1, help="chip seed")
    sp.add_argument("--no-chip", action="store_true", dest="no_chip",
                    help="only the float and ideal-chip rows (no transfer, no hybrid)")
    sp.add_argument("--rtl-images", type=int, default=20, dest="rtl_images",
                    help="images to run through the RTL on Verilator (0: none)")
    sp.add_argument("--out", type=Path, help="write a run directory for `cim report`")
    sp.set_defaults(func=cmd_demo)

    from .cli_chip import add_commands
    add_commands(sub, common)
    from . import cli_flows
    cli_flows.register(sub)
    from . import cli_rtl
    cli_rtl.register(sub)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ValueError as e:  # ConfigError, MnistError, ModelFileError, ... name the problem
        print(f"cim {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
