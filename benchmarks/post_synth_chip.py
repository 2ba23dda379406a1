"""The post-synthesis check, timed: the chip's harness mapped to ECP5 cells by synth_ecp5,
simulated on Verilator with yosys' ECP5 cell models, images compared bit for bit with the
golden model (cim_flows.post_synth). Minutes: flat synthesis of the whole chip, a Verilator
build of its gate-level netlist, then a few thousand cycles per second.

    python benchmarks/post_synth_chip.py [--images 5] [--replication 1] [--work DIR]
        [--run RUN]      # also RUN/post_synth.json, which `cim report --run RUN` shows
"""

import argparse
import json
from pathlib import Path

from cim_flows import post_synth, rtl
from cim_spec import files
from cim_spec.config import SystemConfig
from golden import data


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--images", type=int, default=5)
    ap.add_argument("--replication", type=int, default=1)
    ap.add_argument("--work", type=Path, default=Path("build/post_synth"))
    ap.add_argument("--run", type=Path, help="run directory for post_synth.json")
    args = ap.parse_args()
    chip, what = rtl.chip_for(None, SystemConfig(replication=args.replication))
    images = data.load_bundled().test_images[:args.images]
    res = post_synth.check(chip, images, args.work / f"r{args.replication}")
    res.update(chip=what, replication=args.replication)
    print(json.dumps(res, indent=1))
    if args.run:
        files.write_json(args.run / "post_synth.json", res)
    raise SystemExit(0 if res["bitexact"] == res["images"] else 1)


if __name__ == "__main__":
    main()
