"""`cim verilog` and `cim sim`: the chip's RTL for a chip state, and its simulation against the
golden model."""

from __future__ import annotations

import hashlib
import json
import shlex
import time
from pathlib import Path

import numpy as np

from .config import ConfigError, SystemConfig


def load_chip(args):
    """The chip of a chip-state file, or the ideal chip of the bundled weights."""
    if getattr(args, "chip", None):
        from . import chipstate
        state = chipstate.load(args.chip)
        chip = state.chip
        return chip() if callable(chip) else chip, str(args.chip)
    from . import stages
    cfg = SystemConfig.load(args.config) if args.config else SystemConfig()
    if args.replication is not None:
        cfg = cfg.with_(replication=args.replication)
    mapping, prog = stages.ideal_program(cfg, stages.load_model())
    return prog.chip(mapping), "ideal chip (bundled weights, no device errors)"


def cmd_verilog(args) -> int:
    from golden.noise import pe_seed
    from hdl import build
    from hdl.chip import CimChip
    from hdl.harness import SimHarness
    chip, source = load_chip(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    top = SimHarness(chip, args.form) if args.top == "harness" else CimChip(chip, args.form)
    sources = build.generate(top, args.top, out, args.form)
    if args.top == "harness":
        from hdl.harness import LOADER_SOURCE
        sources.append(LOADER_SOURCE)
    files = {}
    for s in sources:
        dest = out / Path(s).name
        if Path(s).resolve() != dest.resolve():
            dest.write_text(Path(s).read_text())
        files[dest.name] = hashlib.sha256(dest.read_bytes()).hexdigest()
    cfg = chip.config
    for pe in range(cfg.n_pe):
        name = f"pe{pe}_conductance.hex"
        (out / name).write_text("".join(f"{int(v):02x}\n" for v in chip.conductance[pe].ravel()))
        files[name] = hashlib.sha256((out / name).read_bytes()).hexdigest()
    d = chip.digital
    manifest = {
        "top": args.top, "form": args.form, "chip_state": source,
        "files": files,
        "conductance_init": "pe<N>_conductance.hex: one code per line, row-major "
                            "(row = source line, column = bit line); the same codes are "
                            "elaborated into each crossbar instance's INIT parameter",
        "config": cfg.to_dict(), "mapping": chip.mapping.to_dict(),
        "digital": {"adc_gain": d.adc_gain, "requant_mult": d.requant_mult,
                    "requant_shift": d.requant_shift, "read_noise": d.read_noise,
                    "noise_seed": d.noise_seed,
                    "pe_seeds": [pe_seed(d.noise_seed, p) for p in range(cfg.n_pe)]},
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))
    summary = {"out": str(out), "top": args.top, "files": sorted(files) + ["manifest.json"],
               "seconds": round(time.perf_counter() - t0, 2)}
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"wrote {len(files) + 1} files to {out} ({summary['seconds']} s): "
              f"{', '.join(summary['files'][:3])}, ...")
    return 0


def _images(args):
    from golden import data
    d = data.load(args.data)
    n_all = len(d.test_labels)
    if args.start < 0 or args.start >= n_all:
        raise ConfigError(f"--start {args.start} is outside the {n_all} test images")
    if args.images < 1:
        raise ConfigError(f"--images must be at least 1, got {args.images}")
    stop = min(n_all, args.start + args.images)
    ids = np.arange(args.start, stop)
    return d.test_images[args.start:stop], d.test_labels[args.start:stop], ids


def summarize(chip, res, labels) -> dict:
    """The figures of an RTL run, as `cim sim --json` prints them."""
    cfg = chip.config
    bounds = {n: chip.mapping.slot_bound(n) * cfg.pulse_cycles for n in res.cycles_layer}
    return {
        "images": res.images, "bitexact": res.bitexact,
        "accuracy": float((res.labels_rtl == labels).mean()),
        "golden_accuracy": float((np.argmax(res.golden_logits, axis=1) == labels).mean()),
        "cycles_per_image": res.cycles_per_image,
        "cycles_image_latency": res.cycles_image, "cycles_per_layer": res.cycles_layer,
        "cycles_bound_per_layer": bounds,
        "sim_images_per_s": res.sim_images_per_s, "sim_seconds": round(res.sim_seconds, 2),
        "build_seconds": round(res.build_seconds, 2),
        "replication": cfg.replication, "clock_mhz": cfg.clock_mhz,
        "hw_images_per_s": cfg.clock_mhz * 1e6 / res.cycles_per_image,
    }


def rtl_summary(chip, images, labels, ids, shards: int = 2, progress: bool = True) -> dict:
    from . import rtl_sim
    res = rtl_sim.simulate(chip, images, ids, shards=shards, progress=progress)
    return summarize(chip, res, labels)


def cmd_sim(args) -> int:
    from . import rtl_sim
    chip, source = load_chip(args)
    images, labels, ids = _images(args)
    res = rtl_sim.simulate(chip, images, ids, shards=args.shards, waves=args.waves,
                           progress=not args.json)
    cfg = chip.config
    out = {**summarize(chip, res, labels), "shards": args.shards, "chip": source,
           "data": str(args.data) if args.data else "bundled", "start": int(ids[0]),
           "failures": [_failure(args, mm) for mm in res.mismatches[:20]]}
    acc, gold_acc, bounds = out["accuracy"], out["golden_accuracy"], out["cycles_bound_per_layer"]
    if res.mismatches:
        shown = res.mismatches[:3]
        where = rtl_sim.locate(chip, images[[mm.index for mm in shown]],
                               [mm.image_id for mm in shown])
        for f, w in zip(out["failures"], where, strict=False):
            f["first_difference"] = w
    if args.json:
        print(json.dumps(out))
    else:
        print(f"{res.images} images through the RTL ({source}), replication {cfg.replication}")
        print(f"  bit-exact with the golden model: {res.bitexact}/{res.images}")
        print(f"  accuracy: RTL {100 * acc:.2f}%, golden {100 * gold_acc:.2f}%")
        print(f"  cycles per image: {res.cycles_per_image:.0f} "
              f"(hardware {out['hw_images_per_s']:,.0f} images/s at {cfg.clock_mhz:g} MHz)")
        for name, c in res.cycles_layer.items():
            print(f"    {name}: {c} cycles (read-slot bound {bounds[name]}, "
                  f"+{100 * (c / bounds[name] - 1):.1f}%)")
        print(f"  simulation: {res.sim_images_per_s:.1f} images/s on Verilator "
              f"({res.sim_seconds:.1f} s, {args.shards} shard(s); build {res.build_seconds:.0f}"
              f" s)")
        if args.waves:
            print(f"  waveforms: {res.build_dir}/run*/dump.vcd")
        for f in out["failures"]:
            print(f"  MISMATCH image {f['index']}: {f['first_difference']}; reproduce: "
                  f"{f['reproduce']}")
    return 0 if res.bitexact == res.images else 1


def _failure(args, mm) -> dict:
    o, rtl, gold = mm.first_difference
    cmd = ["cim", "sim", "--images", "1", "--start", str(mm.image_id), "--shards", "1"]
    if args.chip:
        cmd += ["--chip", str(args.chip)]
    elif args.replication is not None:
        cmd += ["--replication", str(args.replication)]
    if args.data:
        cmd += ["--data", str(args.data)]
    return {"index": mm.index, "image_id": mm.image_id,
            "first_difference": f"logit {o}: rtl {rtl}, golden {gold}",
            "rtl_logits": mm.rtl, "golden_logits": mm.golden,
            "reproduce": " ".join(shlex.quote(c) for c in cmd)}


def register(sub) -> None:
    def chip_args(sp):
        sp.add_argument("--chip", type=Path, help="chip-state file (default: the ideal chip "
                        "of the bundled weights)")
        sp.add_argument("--config", type=Path, help="system configuration TOML (without "
                        "--chip)")
        sp.add_argument("--replication", type=int, help="conv replica groups (without --chip)")
        sp.add_argument("--json", action="store_true", help="print one JSON object")

    sp = sub.add_parser("verilog", help="write the chip's Verilog, conductance init and manifest")
    chip_args(sp)
    sp.add_argument("--out", type=Path, default=Path("cim_verilog"), help="output directory")
    sp.add_argument("--form", choices=["verilog", "amaranth", "blackbox"], default="verilog",
                    help="crossbar macro: behavioral Verilog, Amaranth emulation, black box")
    sp.add_argument("--top", choices=["chip", "harness"], default="chip",
                    help="the chip, or the chip in its simulation harness")
    sp.set_defaults(func=cmd_verilog)

    sp = sub.add_parser("sim", help="run images through the RTL on Verilator, compare with "
                        "the golden model")
    chip_args(sp)
    sp.add_argument("--data", type=Path, help="MNIST (default: the bundled subset)")
    sp.add_argument("--images", type=int, default=20, help="how many test images")
    sp.add_argument("--start", type=int, default=0, help="index of the first test image")
    sp.add_argument("--shards", type=int, default=2, help="parallel simulator processes")
    sp.add_argument("--waves", action="store_true",
                    help="write waveforms: dump.vcd in each shard's run directory")
    sp.set_defaults(func=cmd_sim)

