"""The `cim` commands about the network: map, train, eval and demo."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from cim_spec.config import ConfigError

from . import chip_cmds
from .common import (
    add_common,
    add_force,
    config_from,
    emit,
    load_data,
    note,
    refuse_with,
    replicate_names,
    split,
)


def cmd_map(args) -> int:
    from cim_flows import stages
    from cim_spec.mapping import map_network
    net = stages.network(stages.load_model(args.weights)) if args.weights else None
    if net is None:
        from cim_spec.network import MCNN
        net = MCNN
    m = map_network(config_from(args), net, replicate_names(args))
    if args.json:
        print(m.to_json())
    else:
        print(m.table())
    return 0


def cmd_train(args) -> int:
    from cim_spec import files
    from cim_spec.network import MCNN
    from golden import model_file, train
    if args.epochs + args.qat_epochs == 0:
        raise ConfigError("--epochs and --qat-epochs are both 0: nothing to train")
    if args.hwa is None and (args.hwa_scale is not None or args.hwa_age is not None):
        raise ConfigError("--hwa-scale/--hwa-age do not apply without --hwa")
    if args.qat_epochs == 0 and args.hwa is not None:
        raise ConfigError("--hwa needs quantization-aware epochs (--qat-epochs >= 1)")
    files.check_output(args.out, {files.MODEL}, args.force, [args.data, args.init, args.config])
    hwa = _hwa_noise(args)
    init = model_file.load(args.init, MCNN) if args.init is not None else None
    d = load_data(args)
    if args.data is None:
        note("note: training on the bundled 2,000-image subset; give --data for full MNIST")
    model = train.train(MCNN, d, epochs=args.epochs, qat_epochs=args.qat_epochs,
                        seed=args.seed, hwa=hwa, init=init, progress=not args.quiet,
                        log=None if args.quiet else note)
    if args.init is not None:
        model.meta["init"] = str(args.init)
    # Again: training takes minutes, long enough for the path to have appeared meanwhile.
    files.check_output(args.out, {files.MODEL}, args.force, [args.data])
    model_file.save(model, args.out)
    emit(args, {"out": str(args.out), **{k: v for k, v in model.meta.items()
                                          if k.endswith("accuracy") or k == "test_images"}},
          f"wrote {args.out}")
    return 0


def _hwa_noise(args):
    """The device noise of `--hwa PRESET` (None without it)."""
    if args.hwa is None:
        return None
    from cim_spec.device_params import load_preset
    from golden.hwa import HwaNoise
    scale = 1.0 if args.hwa_scale is None else args.hwa_scale
    return HwaNoise.from_device(load_preset(args.hwa), config_from(args), scale=scale,
                                seed=args.seed, age_s=args.hwa_age or 0.0)


def cmd_eval(args) -> int:
    from cim_flows import stages
    if args.chip is not None:
        refuse_with(args, "with --chip: the chip state is the network and its weights",
                    {"--weights": args.weights is not None, "--stage": args.stage is not None})
    if args.drift_seed is not None and not args.age:
        raise ConfigError("--drift-seed does not apply without --age")
    if args.compensate and args.chip is None:
        raise ConfigError("--compensate needs a chip state (--chip FILE)")
    if args.recalibrate is not None and not args.compensate:
        raise ConfigError("--recalibrate applies with --compensate")
    args.stage = args.stage or "quant"
    d = load_data(args)
    images, labels = split(d, args)
    t0 = time.time()
    if args.chip is not None:
        extra = chip_cmds.eval_chip(args, images, labels)
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
        cfg = config_from(args)
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
    age += ", drift-compensated" if args.compensate else ""
    age += f", recalibrated on {args.recalibrate} labelled images" if args.recalibrate else ""
    emit(args, out, f"{args.stage}{age}: accuracy {100 * acc:.2f}% on {len(labels)} "
                     f"{args.split} images ({out['data']})")
    return 0


def cmd_demo(args) -> int:
    from cim_flows import stages
    if args.no_chip:
        refuse_with(args, "with --no-chip (there is no chip to program)",
                    {"--preset": args.preset is not None, "--seed": args.seed is not None})
    args.preset = args.preset or "yao2020"
    args.seed = 1 if args.seed is None else args.seed
    if args.out:
        _check_run(args)
    d = load_data(args)
    images, labels = d.test_images, d.test_labels
    if args.limit:
        images, labels = images[:args.limit], labels[:args.limit]
    cfg = config_from(args)
    model = stages.load_model(args.weights)
    rows = [("float (software)", stages.float_accuracy(model, images, labels))]
    mapping, prog = stages.ideal_program(cfg, model)
    chip = prog.chip(mapping)
    rows.append(("quantized ideal chip", stages.chip_accuracy(
        chip, images, labels, progress=not args.json, desc="ideal chip")))
    state = None
    if not args.no_chip:
        more, state = chip_cmds.demo_rows(args, cfg, model, d, images, labels)
        rows += more
        chip = state.chip
    result = {"network": mapping.network.name, "images": int(len(labels)),
              "replication": cfg.replication,
              "stages": {name: acc for name, acc in rows}}
    width = max(len(n) for n, _ in rows)
    name = "mCNN" if mapping.network.name == "mcnn" else mapping.network.name
    text = [f"{name} on {len(labels)} MNIST test images "
            f"({'bundled subset' if args.data is None else args.data}), "
            f"replication {cfg.replication}", ""]
    text += [f"  {name:<{width}}  {100 * acc:6.2f}%" for name, acc in rows]
    if args.rtl_images:
        from cim_flows.rtl import rtl_summary
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
    emit(args, result, "\n".join(text))
    return 0 if not args.rtl_images or result["rtl"]["bitexact"] == result["rtl"]["images"] \
        else 1


def _check_run(args) -> None:
    """Before any work: the run directory and every file `cim demo --out` will write there."""
    from cim_spec import chipstate, files
    out = args.out
    files.check_output(out, {files.DIRECTORY}, args.force)
    inputs = [args.data, args.weights]
    files.check_output(out / "stages.json", {files.JSON}, args.force, inputs)
    if args.rtl_images:
        files.check_output(out / "sim.json", {files.JSON}, args.force, inputs)
    if not args.no_chip:
        chipstate.check_output(out / "chip_hybrid", args.force, inputs)


def _write_run(out: Path, result: dict, state) -> None:
    """A run directory for `cim report`: the stages, the RTL summary and the chip state (the
    chip state first, stages.json last: a run directory with stages.json is complete)."""
    from cim_spec import chipstate, files
    if state is not None:
        chipstate.save(state, out / "chip_hybrid")
    if "rtl" in result:
        files.write_json(out / "sim.json", result["rtl"])
    files.write_json(out / "stages.json", result)


def register(sub) -> None:
    sp = sub.add_parser("map", help="print the mapping of a network onto the PEs")
    add_common(sp, data=False)
    sp.add_argument("--weights", type=Path, help="model file of the network (default: the "
                    "bundled mCNN; `cim import` writes one for an ONNX network)")
    sp.add_argument("--replicate", metavar="LAYERS", help="comma-separated conv layers to "
                    "replicate --replication times (default: every conv layer)")
    sp.set_defaults(func=cmd_map)

    sp = sub.add_parser("train", help="train the mCNN ex situ (quantization-aware)")
    add_common(sp, cfg=False)
    add_force(sp)
    sp.add_argument("--epochs", type=int, default=20)
    sp.add_argument("--qat-epochs", type=int, default=5, dest="qat_epochs")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--out", type=Path, default=Path("mcnn_weights.npz"))
    sp.add_argument("--quiet", action="store_true")
    sp.add_argument("--hwa", metavar="PRESET", help="hardware-aware training: inject this "
                    "device preset's programming errors, stuck cells and read noise into the "
                    "quantization-aware epochs")
    sp.add_argument("--hwa-scale", type=float, dest="hwa_scale",
                    help="with --hwa: multiply the programming error (default 1)")
    sp.add_argument("--hwa-age", type=float, dest="hwa_age",
                    help="with --hwa: also the random drift of this many seconds, after drift "
                         "compensation (default 0: right after programming)")
    sp.add_argument("--init", type=Path, help="start from this model's float weights "
                    "(e.g. --epochs 0 --hwa yao2020 on the bundled weights)")
    sp.add_argument("--config", type=Path, help="system configuration TOML (with --hwa: "
                    "the cell states)")
    sp.set_defaults(func=cmd_train)

    sp = sub.add_parser("eval", help="accuracy of a stage on bundled or user data")
    add_common(sp)
    sp.add_argument("--stage", choices=["float", "quant"],
                    help="float network, or quantized ideal chip (bit-accurate; the default)")
    sp.add_argument("--weights", type=Path, help="trained model .npz (default: bundled)")
    sp.add_argument("--split", choices=["test", "train"], default="test")
    sp.add_argument("--limit", type=int, help="only the first N images")
    sp.add_argument("--chip", type=Path, help="evaluate a chip state (from cim program/hybrid)")
    sp.add_argument("--age", type=float, help="with --chip: seconds of conductance relaxation")
    sp.add_argument("--drift-seed", type=int, dest="drift_seed",
                    help="with --age: seed of the drift (default: the chip's seed)")
    sp.add_argument("--compensate", action="store_true",
                    help="with --chip: recalibrate the ADC gains from reference reads "
                         "before evaluating (drift compensation, docs/device.md)")
    sp.add_argument("--recalibrate", type=int, metavar="N",
                    help="with --compensate: then re-run hybrid training of the FC layer on "
                         "N labelled training images, 3 epochs (recalibration, docs/device.md)")
    sp.set_defaults(func=cmd_eval)

    sp = sub.add_parser("demo", help="the main job on the bundled default: accuracy per stage")
    add_common(sp)
    sp.add_argument("--weights", type=Path, help="trained model .npz (default: bundled)")
    sp.add_argument("--limit", type=int, help="only the first N test images")
    sp.add_argument("--preset", help="device preset name or TOML file (default yao2020)")
    sp.add_argument("--seed", type=int, help="chip seed (default 1)")
    sp.add_argument("--no-chip", action="store_true", dest="no_chip",
                    help="only the float and ideal-chip rows (no transfer, no hybrid)")
    sp.add_argument("--rtl-images", type=int, default=20, dest="rtl_images",
                    help="images to run through the RTL on Verilator (0: none)")
    sp.add_argument("--out", type=Path, help="write a run directory for `cim report`")
    add_force(sp)
    sp.set_defaults(func=cmd_demo)
