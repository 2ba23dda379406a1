"""`cim verilog` and `cim sim`: the chip's RTL for a chip state, and its simulation against the
golden model."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from .common import add_force, config_from, refuse_with, test_images


def cmd_verilog(args) -> int:
    from cim_flows import rtl
    chip, source = _chip(args)
    rtl.check_export(chip, Path(args.out), args.top, args.form, args.force,
                     [args.chip, args.config])
    summary = rtl.export_verilog(chip, Path(args.out), args.top, args.form, source)
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"wrote {len(summary['files'])} files to {summary['out']} "
              f"({summary['seconds']} s): {', '.join(summary['files'][:3])}, ...")
    return 0


def _chip(args):
    from cim_flows import rtl
    if args.chip is not None:
        refuse_with(args, "with --chip: the chip state carries its configuration",
                    {"--config": args.config is not None,
                     "--replication": args.replication is not None})
    return rtl.chip_for(args.chip, None if args.chip else config_from(args))



def cmd_sim(args) -> int:
    from cim_flows.rtl import summarize
    from testbench import chip_sim
    chip, source = _chip(args)
    images, labels, ids = test_images(args)
    # Without waveforms the harness runs free of cocotb (testbench/chip_batch.py).
    res = chip_sim.simulate(chip, images, ids, shards=args.shards, waves=args.waves,
                           progress=not args.json, batch=True)
    cfg = chip.config
    out = {**summarize(chip, res, labels), "shards": args.shards, "chip": source,
           "data": str(args.data) if args.data else "bundled", "start": int(ids[0]),
           "failures": [_failure(args, mm) for mm in res.mismatches[:20]]}
    acc, gold_acc, bounds = out["accuracy"], out["golden_accuracy"], out["cycles_bound_per_layer"]
    if res.mismatches:
        shown = res.mismatches[:3]
        where = chip_sim.locate(chip, images[[mm.index for mm in shown]],
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
            print(f"  waveforms: {res.run_dir}/shard*/dump.vcd")
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
    add_force(sp)
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

