"""What the update engine adds to the chip (hdl/chip_engine.py): yosys resource tables of the
engine as the chip holds it (engine, feature FIFO, image count) and, with --chip, of the whole
chip with and without it (slow: each chip synthesis takes minutes).

    python benchmarks/chip_engine_area.py [--target generic|ecp5] [--chip] [--out DIR]

The chip is the bundled model's, default configuration (replication 1); the rule constants
(threshold 512, margin 2000) cost next to nothing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cim_flows import synth
from cim_spec.config import SystemConfig

RULE = (512, 2000)


def _plan(cfg):
    from cim_flows.stages import ideal_program, load_model
    from hdl.chip_plan import plan_chip
    mapping, prog = ideal_program(cfg, load_model())
    return plan_chip(prog.chip(mapping))


@synth.design("chip-engine-block", "the update engine as the chip holds it (hdl/chip_engine.py)")
def _block(cfg, form):
    from hdl.chip_engine import ChipEngine, EngineRule
    return ChipEngine(_plan(cfg), EngineRule(*RULE))


@synth.design("chip-with-engine", "the chip top with its update engine")
def _chip_engine(cfg, form):
    from hdl.chip import CimChip
    from hdl.chip_engine import EngineRule
    return CimChip(_plan(cfg), form=form, engine=EngineRule(*RULE))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", default="generic", choices=["generic", "ecp5"])
    ap.add_argument("--chip", action="store_true", help="also the chip with and without it")
    ap.add_argument("--out", type=Path, default=Path("runs/chip_engine_area"))
    args = ap.parse_args(argv)
    cfg = SystemConfig()
    designs = ["chip-engine-block"] + (["chip", "chip-with-engine"] if args.chip else [])
    totals = {}
    for name in designs:
        r = synth.synthesize(cfg, name, args.target, "asic", args.out)
        print(synth.table_text(r))
        totals[name] = r
    if args.chip:
        base, eng = totals["chip"]["totals"], totals["chip-with-engine"]["totals"]
        print("chip with engine minus chip:",
              {k: eng[k] - base[k] for k in base if isinstance(base[k], (int, float))})
    return 0


if __name__ == "__main__":
    sys.exit(main())
