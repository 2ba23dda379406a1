"""The `cim` commands that make and use chip states: program, hybrid, eval --chip, and the
transfer and hybrid rows of `cim demo`. Registered by cim_cli.main."""

from __future__ import annotations

import time
from pathlib import Path

from cim_spec.config import ConfigError

from . import common
from .common import add_common, add_force, config_from, emit

DEFAULT_SEED = 1
HYBRID_FRACTION = 0.1


def _preset(args):
    from cim_spec.device_params import load_preset
    return load_preset(args.preset)


def hybrid_params(args):
    from golden.hybrid import HybridParams
    kw = {k: getattr(args, k) for k in ("epochs", "batch", "lr", "threshold_us")
          if getattr(args, k, None) is not None}
    return HybridParams(**kw, seed=args.seed if args.seed is not None else 0)


def engine_rule(args) -> tuple[int, int, int]:
    """`cim hybrid --engine`: the update engine's threshold, margin and epochs, checked
    before any work, with the ranges of the engine's default widths."""
    from golden import engine_training
    from golden.update_engine import EngineParams
    if args.on not in ("golden", "rtl"):
        raise ConfigError(f"--engine runs on the golden model or the chip's RTL (--on rtl), "
                          f"not --on {args.on}")
    common.refuse_with(args, "with --engine: the engine updates image by image from the "
                       "logit margin, with no batch or learning rate",
                       {"--batch": args.batch is not None, "--lr": args.lr is not None})
    p = EngineParams()
    t = engine_training.DEFAULT_THRESHOLD if args.threshold_us is None else args.threshold_us
    if t != int(t) or not 1 <= t <= p.acc_max:
        raise ConfigError(f"--threshold with --engine is the accumulator threshold, an integer "
                          f"in 1..{p.acc_max} ({p.acc_bits}-bit accumulators), got {t:g}")
    m = engine_training.DEFAULT_MARGIN if args.margin is None else args.margin
    if not 0 <= m < 1 << p.logit_bits:
        raise ConfigError(f"--margin must be an integer in 0..{(1 << p.logit_bits) - 1} "
                          f"(logit units), got {m}")
    epochs = 3 if args.epochs is None else args.epochs
    if epochs < 1:
        raise ConfigError(f"--epochs must be an integer >= 1, got {epochs}")
    return int(t), m, epochs


# ---------------------------------------------------------------------------------------------

def cmd_program(args) -> int:
    from cim_flows import stages
    from cim_spec import chipstate
    from golden import transfer
    preset_file = Path(args.preset) if Path(args.preset).is_file() else None
    chipstate.check_output(args.out, args.force, [args.weights, args.config, preset_file])
    cfg = config_from(args)
    model = stages.load_model(args.weights)
    t0 = time.time()
    state = stages.transfer_state(cfg, model, _preset(args), args.seed)
    npz, js = chipstate.save(state, args.out)
    rep = transfer.transfer_report(state)
    out = {"out": str(js), "arrays": str(npz), "seed": args.seed, "preset": state.device.name,
           "replication": cfg.replication, **rep.to_dict(),
           "seconds": round(time.time() - t0, 2)}
    emit(args, out, f"transfer with preset {state.device.name!r}, seed {args.seed}, "
                     f"replication {cfg.replication}\n{rep.text()}\nwrote {js} and {npz.name}")
    return 0


def cmd_hybrid(args) -> int:
    from cim_flows import stages
    from cim_spec import chipstate
    from golden import data, hybrid
    if args.on == "board":
        if (args.port is None) == (not args.sim):
            raise ConfigError("--on board needs exactly one of --port PATH and --sim")
    elif args.port is not None or args.sim:
        raise ConfigError("--port and --sim apply only with --on board")
    if args.engine:
        rule = engine_rule(args)
    elif args.margin is not None:
        raise ConfigError("--margin applies only with --engine")
    else:
        hybrid_params(args)         # refuse bad parameters before reading anything
    chipstate.check_output(args.out, args.force, [args.data], chips=[args.chip])
    state = chipstate.load(args.chip)
    d = data.load(args.data)
    seed = args.seed if args.seed is not None else 0
    images, labels = stages.hybrid_subset(d, args.fraction, args.images, seed)
    t0 = time.time()
    if args.engine:
        return _engine_run(args, state, images, labels, seed, rule, t0)
    extra, where = {}, "the golden model"
    if args.on == "rtl":
        from cim_flows import hybrid_loop
        new, rep, checks, times = hybrid_loop.train_on_rtl(state, images, labels,
                                                           hybrid_params(args),
                                                           progress=not args.json)
        extra = {"on": "rtl", **checks, "times": times.to_dict()}
        where = (f"the chip's RTL on Verilator ({times.batches} calls of one simulation: "
                 f"build {times.build:.1f} s, simulation {times.simulation:.1f} s, transport "
                 f"{times.transport:.1f} s, host {times.host:.1f} s; {times.writes} cell writes; "
                 f"FC layer bit-exact with the golden model in "
                 f"{times.images - checks['fc_mismatches']}/{times.images} images)")
    elif args.on == "board":
        from cim_flows import hybrid_loop
        if args.sim:
            common.note("building the simulated board (Verilator; cached after the first run) ...")
        new, rep, checks, times = hybrid_loop.train_on_board(
            state, images, labels, hybrid_params(args), port=args.port, sim=args.sim,
            baud=args.baud, progress=not args.json)
        extra = {"on": "board", "port": "sim" if args.sim else str(args.port), **checks,
                 "times": times.to_dict()}
        where = (f"the board ({extra['port']}; {times.batches} calls over the link: build "
                 f"{times.build:.1f} s, images over the link {times.simulation:.1f} s, cell "
                 f"writes {times.transport:.1f} s, host {times.host:.1f} s; {times.writes} cell "
                 f"writes; FC layer bit-exact with the golden model in "
                 f"{times.images - checks['fc_mismatches']}/{times.images} images)")
    else:
        new, rep = hybrid.train(state, images, labels, hybrid_params(args),
                                progress=not args.json)
    npz, js = chipstate.save(new, args.out)
    out = {"out": str(js), "chip": str(args.chip), **rep.to_dict(), **extra,
           "data": str(args.data) if args.data else "bundled",
           "seconds": round(time.time() - t0, 2)}
    src = "bundled subset" if args.data is None else str(args.data)
    emit(args, out, f"hybrid training of the FC layer on {rep.images} training images "
                     f"({src}), {rep.epochs} epochs, forward passes on {where}: "
                     f"{rep.pulses} pulses applied "
                     f"({rep.updates} updates fired, {rep.saturated} refused at the window "
                     f"edge); accuracy on the hardware during the last epoch "
                     f"{100 * rep.train_accuracy[-1]:.2f}%\nwrote {js} and {npz.name}")
    # A chip that disagrees with the golden model trained on wrong numbers: say so.
    return 1 if extra.get("fc_mismatches") or extra.get("input_mismatches") else 0


def _engine_run(args, state, images, labels, seed, rule, t0) -> int:
    """`cim hybrid --engine`: the update engine's rule on the golden model
    (golden/engine_training.py), or (`--on rtl`) the chip's own engine on Verilator
    (cim_flows/hybrid_loop.engine_on_rtl); the new state's history records the rule."""
    from cim_spec import chipstate
    from golden import engine_training
    t, m, epochs = rule
    extra, where = {}, ""
    if args.on == "rtl":
        from cim_flows import hybrid_loop
        new, rep, checks, times, _ = hybrid_loop.engine_on_rtl(
            state, images, labels, t, m, epochs, seed, progress=not args.json)
        extra = {"on": "rtl", **checks, "times": times.to_dict()}
        where = (f" on the chip's RTL and its engine ({times.batches} calls of one simulation: "
                 f"build {times.build:.1f} s, simulation {times.simulation:.1f} s, transport "
                 f"{times.transport:.1f} s, host {times.host:.1f} s; {times.writes} cell "
                 f"writes; mismatches with the golden model: " +
                 ", ".join(f"{k} {v}" for k, v in checks.items()) + ")")
    else:
        new, rep = engine_training.train(state, images, labels, t, m, epochs, seed,
                                         progress=not args.json)
    npz, js = chipstate.save(new, args.out)
    out = {"out": str(js), "chip": str(args.chip), "mode": "engine", "threshold": t,
           "margin": m, "seed": seed, **rep.to_dict(), **extra,
           "data": str(args.data) if args.data else "bundled",
           "seconds": round(time.time() - t0, 2)}
    src = "bundled subset" if args.data is None else str(args.data)
    emit(args, out, f"engine training of the FC layer on {rep.images} training images ({src}), "
                     f"{rep.epochs} epochs, threshold {t}, margin {m}{where}: {rep.updates} "
                     f"updating "
                     f"images, {rep.requests} pulse requests, {rep.pulses} pulses applied "
                     f"({rep.refused} refused at the window edge); accuracy on the hardware "
                     f"during the last epoch {100 * rep.train_accuracy[-1]:.2f}%\n"
                     f"wrote {js} and {npz.name}")
    # A chip that disagrees with the golden model trained on wrong numbers: say so.
    return 1 if any(extra.get(k) for k in extra if k.endswith("_mismatches")) else 0


def eval_chip(args, images, labels) -> dict:
    """`cim eval --chip FILE [--age T]`: the accuracy of a chip state."""
    from cim_flows import stages
    from cim_spec import chipstate
    from golden import drift
    if args.config is not None or args.replication is not None or args.adc_bits is not None:
        raise ConfigError("--config/--replication/--adc-bits do not apply with --chip: the "
                          "chip state carries its configuration")
    state = chipstate.load(args.chip)
    stage = state.stage
    fresh = state
    if args.age:
        state = drift.aged(state, args.age, args.drift_seed)
    extra = {}
    if args.compensate:
        state, comp, rep = _compensated(fresh, state, args.age or 0.0, args)
        extra = {"compensation": comp.to_dict(),
                 **({"recalibration": rep.to_dict()} if rep else {})}
    acc = stages.chip_accuracy(state.chip, images, labels, progress=not args.json,
                               desc=f"chip ({stage})")
    return {"stage": stage, "accuracy": acc, "chip": str(args.chip), "age_s": args.age or 0.0,
            "replication": state.config.replication, "preset": state.device.name,
            "seed": state.seed, "compensated": bool(args.compensate), **extra}


def _compensated(fresh, aged, age_s: float, args):
    """Drift compensation of `aged` against the reference reads of `fresh` (its state right
    after its last programming), on the stored calibration images; with `--recalibrate N`
    then hybrid training of the FC layer on N labelled training images of `--data`.
    Returns the state, the compensation and the recalibration's report (or None)."""
    from cim_flows import stages
    from golden import compensate, data
    cal = stages.calibration_images()[:compensate.CALIB_IMAGES]
    if args.recalibrate is None:
        return (*compensate.compensate_state(fresh, aged, cal, age_s), None)
    images, labels = stages.hybrid_subset(data.load(args.data), None, args.recalibrate,
                                          compensate.RECAL_SEED)
    return compensate.recalibrate(fresh, aged, cal, age_s, images, labels)


def cmd_compensate(args) -> int:
    """`cim compensate`: age a chip state, calibrate its ADC gains, write the result (its
    RTL then comes from `cim verilog --chip` on it)."""
    from cim_spec import chipstate
    from golden import drift
    chipstate.check_output(args.out, args.force, [args.data], chips=[args.chip])
    fresh = chipstate.load(args.chip)
    aged = drift.aged(fresh, args.age, args.drift_seed) if args.age else fresh
    state, comp, rep = _compensated(fresh, aged, args.age or 0.0, args)
    npz, js = chipstate.save(state, args.out)
    out = {"out": str(js), "chip": str(args.chip), "age_s": args.age or 0.0, **comp.to_dict()}
    recal = ""
    if rep is not None:
        out["recalibration"] = rep.to_dict()
        recal = (f"\nrecalibration: hybrid training of the FC layer on {rep.images} labelled "
                 f"images, {rep.epochs} epochs, {rep.pulses} pulses")
    gains = ", ".join(f"{k} {comp.gains_before[k]} -> {v} (x{comp.factors[k]:.4f})"
                      for k, v in comp.gains_after.items())
    emit(args, out, f"drift compensation at age {args.age or 0:g} s on {comp.images} "
                     f"reference images: ADC gains {gains}{recal}\nwrote {js} and {npz.name}")
    return 0


def demo_rows(args, cfg, model, d, images, labels):
    """The transfer and hybrid rows of `cim demo`, and the hybrid-trained chip state."""
    from cim_flows import stages
    from golden import hybrid
    seed = args.seed
    state = stages.transfer_state(cfg, model, _preset(args), seed)
    rows = [("after transfer", stages.chip_accuracy(state.chip, images, labels,
                                                    progress=not args.json, desc="transfer"))]
    if args.data is None:
        # 10% of the bundled 2,000 images is too few to show the method; use all of them.
        tr_images, tr_labels = d.train_images, d.train_labels
        note = f"hybrid training on all {len(tr_labels)} bundled training images"
    else:
        tr_images, tr_labels = stages.hybrid_subset(d, HYBRID_FRACTION, None, seed)
        note = f"hybrid training on 10% of the training set ({len(tr_labels)} images)"
    new, rep = hybrid.train(state, tr_images, tr_labels, hybrid.HybridParams(seed=seed),
                            progress=not args.json)
    rows.append(("after hybrid training", stages.chip_accuracy(
        new.chip, images, labels, progress=not args.json, desc="hybrid")))
    if not args.json:
        common.note(f"note: {note}; preset {state.device.name!r}, chip seed {seed}, "
                    f"{rep.pulses} FC pulses")
    return rows, new


def register(sub) -> None:
    sp = sub.add_parser("program", help="transfer: program trained weights into a chip state "
                        "by write-verify with device errors")
    add_common(sp, data=False)
    sp.add_argument("--weights", type=Path, help="trained model .npz (default: bundled)")
    sp.add_argument("--preset", default="yao2020", help="device preset name or TOML file")
    sp.add_argument("--seed", type=int, default=DEFAULT_SEED, help="chip seed")
    sp.add_argument("--out", type=Path, required=True, help="chip state to write "
                    "(STEM, STEM.npz or STEM.json)")
    add_force(sp)
    sp.set_defaults(func=cmd_program)

    sp = sub.add_parser("hybrid", help="retrain the FC layer in situ with programming pulses")
    add_common(sp, cfg=False)
    sp.add_argument("--chip", type=Path, required=True, help="chip state to start from")
    sp.add_argument("--out", type=Path, required=True, help="chip state to write")
    add_force(sp)
    g = sp.add_mutually_exclusive_group()
    g.add_argument("--fraction", type=float, default=HYBRID_FRACTION,
                   help="fraction of the training set (default 0.1)")
    g.add_argument("--images", type=int, help="number of training images instead")
    sp.add_argument("--epochs", type=int)
    sp.add_argument("--batch", type=int)
    sp.add_argument("--lr", type=float)
    sp.add_argument("--threshold", type=float, dest="threshold_us",
                    help="pulse threshold on the wanted conductance change, uS; with --engine "
                    "the accumulator threshold, an integer (default 512)")
    sp.add_argument("--engine", action="store_true",
                    help="train with the on-chip update engine's rule (golden/update_engine.py) "
                    "instead of the host's gradient: image by image, from the logit margin "
                    "and the FC inputs")
    sp.add_argument("--margin", type=int, help="with --engine: an image updates when its true "
                    "logit beats the strongest wrong one by at most this (default 10000)")
    sp.add_argument("--seed", type=int, help="image selection, shuffling, pulse noise")
    sp.add_argument("--on", choices=["golden", "rtl", "board"], default="golden",
                    help="where the forward passes run: the golden model (default), the "
                    "chip's RTL on Verilator, or the board over its serial link (--port or "
                    "--sim)")
    sp.add_argument("--port", help="the board's serial port (with --on board; its cells and "
                    "gains are written from --chip first)")
    sp.add_argument("--sim", action="store_true", help="with --on board: the simulated "
                    "board (Verilator behind a pseudo-terminal), built from --chip")
    sp.add_argument("--baud", type=int, default=2_000_000,
                    help="serial rate with --port (default 2 Mbaud, the bitstream's)")
    sp.set_defaults(func=cmd_hybrid)

    sp = sub.add_parser("compensate", help="drift compensation: age a chip state and "
                        "recalibrate its ADC gains from reference reads")
    sp.add_argument("--json", action="store_true", help="print one JSON object")
    sp.add_argument("--chip", type=Path, required=True, help="chip state right after "
                    "programming (transfer or hybrid)")
    sp.add_argument("--age", type=float, default=0.0, help="seconds of drift before the "
                    "calibration")
    sp.add_argument("--drift-seed", type=int, dest="drift_seed",
                    help="seed of the drift (default: the chip's seed)")
    sp.add_argument("--out", type=Path, required=True, help="chip state to write")
    sp.add_argument("--recalibrate", type=int, metavar="N",
                    help="then re-run hybrid training of the FC layer on N labelled training "
                         "images, 3 epochs (recalibration, docs/device.md)")
    sp.add_argument("--data", type=Path, help="MNIST for --recalibrate (default: bundled)")
    add_force(sp)
    sp.set_defaults(func=cmd_compensate)
