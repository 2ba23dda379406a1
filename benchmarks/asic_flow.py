"""The ASIC flow at full size, with the time of each step: the paper's PE (synthesis onto
OSU018, OpenSTA, 2,000 random vectors at gate level) and the chip's periphery (synthesis,
OpenSTA, `--images` test images through its netlist). Gate level on Verilator with the
Liberty's cell models by default, `--simulator icarus` for the package's. The figures are
docs/asic.md's.

    python benchmarks/asic_flow.py [--designs pe chip] [--vectors 2000] [--images 3]
                                   [--simulator verilator|icarus] [--out build/asic_bench]

It is `cim asic --design D --out OUT` for each design, and prints the areas, timing and times.
"""

import argparse
import time
from pathlib import Path

from cim_flows import asic, asic_report
from cim_spec.config import SystemConfig


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--designs", nargs="+", default=["pe", "chip"], choices=["pe", "chip"])
    ap.add_argument("--vectors", type=int, default=2000, help="gate-level vectors (PE)")
    ap.add_argument("--images", type=int, default=3, help="gate-level images (chip)")
    ap.add_argument("--simulator", default="verilator", choices=["verilator", "icarus"])
    ap.add_argument("--clock", type=float, help="MHz (default: the configuration's, 100)")
    ap.add_argument("--out", type=Path, default=Path("build/asic_bench"))
    args = ap.parse_args()
    cfg = SystemConfig()
    for design in args.designs:
        t0 = time.perf_counter()
        r = asic.run(cfg, design, args.out, args.clock,
                     args.vectors if design == "pe" else 0, simulator=args.simulator,
                     images=args.images if design == "chip" else 0)
        wall = time.perf_counter() - t0
        print(asic_report.table_text(r))
        print(f"\n{design}: wall time {wall:.0f} s\n")


if __name__ == "__main__":
    main()
