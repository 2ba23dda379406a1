"""The post-synthesis check, timed: the chip's harness mapped to ECP5 cells by synth_ecp5,
simulated on Verilator with yosys' ECP5 cell models (block RAM and DSP models from
testbench/ecp5_models.py), images compared bit for bit with the golden model
(cim_flows.post_synth). Prints the wall time of each step and the netlist's cell counts.

    python benchmarks/post_synth_chip.py [--images 5] [--replication 1] [--chip STATE]
        [--small]        # a 2-PE chip of 64 x 12 cells and a small network instead
        [--work DIR]     # a netlist already there for the same chip is reused
        [--run RUN]      # also RUN/post_synth.json, which `cim report --run RUN` shows

The paper chip (default), measured under a heavy load: synthesis 46 min, Verilator build
23 min, 5 images 12 min (docs/board.md); --small runs the same path in minutes.
"""

import argparse
import json
from pathlib import Path

import numpy as np

from cim_flows import post_synth, rtl
from cim_spec import files, program
from cim_spec.config import SystemConfig
from cim_spec.mapping import map_network
from cim_spec.network import Conv, Dense, Network, Pool
from golden import data
from testbench.random_config import uniform_chip

SMALL_NET = Network("small", (1, 8, 8), (Conv("A", 1, 4, 3), Pool("P", 2, 2),
                                         Dense("D", 36, 5)))


def small_chip(n_images: int) -> tuple[program.Chip, np.ndarray, str]:
    """2 PEs of 64 x 12 cells, 6-bit inputs and ADCs, 4 ADCs per PE, random cells and
    gains, read noise on; random 8 x 8 images. Small enough to synthesize in minutes,
    with block RAM (crossbars, feature maps) and DSPs (ADC gain, requantisation) in it."""
    cfg = SystemConfig(n_pe=2, array_rows=64, array_cols=12, adc_bits=6, input_bits=6,
                       act_bits=6, adcs_per_pe=4)
    rng = np.random.default_rng(5)
    chip = uniform_chip(map_network(cfg, SMALL_NET), rng)
    images = rng.integers(0, 256, size=(n_images, 8, 8)).astype(np.uint8)
    return chip, images, "small chip (2 PEs of 64 x 12 cells, random cells, read noise)"


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--images", type=int, default=5)
    ap.add_argument("--replication", type=int, default=1)
    ap.add_argument("--chip", type=Path, help="chip-state file (default: the ideal chip)")
    ap.add_argument("--small", action="store_true")
    ap.add_argument("--work", type=Path, default=Path("build/post_synth"))
    ap.add_argument("--run", type=Path, help="run directory for post_synth.json")
    args = ap.parse_args()
    if args.small:
        chip, images, what = small_chip(args.images)
        work = args.work / "small"
    else:
        chip, what = rtl.chip_for(args.chip, SystemConfig(replication=args.replication))
        images = data.load_bundled().test_images[:args.images]
        work = args.work / f"r{chip.config.replication}"
    res = post_synth.check(chip, images, work)
    res.update(chip=what, replication=chip.config.replication)
    print(json.dumps(res, indent=1))
    if args.run:
        files.write_json(args.run / "post_synth.json", res)
    raise SystemExit(0 if res["bitexact"] == res["images"] else 1)


if __name__ == "__main__":
    main()
