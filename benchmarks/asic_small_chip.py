"""A small chip through the ASIC flow and its gate-level netlist on Verilator: the test
suite's second network and configuration (tests/testbench/test_chip.py: 10 x 10 images, 6 PEs
of 32 x 12 cells, 4 ADCs per PE, 6-bit, replication 2, random cells and gains, read noise),
synthesized onto OSU018, then N random images through the mapped netlist (the Liberty's cell
models, the behavioral crossbar), every logit against the golden model. Prints the times.

    python benchmarks/asic_small_chip.py [--images 3] [--out build/asic_small_chip]
"""

import argparse
import time
from pathlib import Path

import numpy as np

from cim_flows import asic
from cim_spec import program
from cim_spec.config import SystemConfig
from cim_spec.mapping import map_network
from cim_spec.network import Conv, Dense, Network, Pool
from hdl.chip import CimChip
from hdl.chip_plan import plan_chip
from hdl.params import CrossbarForm
from testbench import chip_sim
from testbench import gate_level as gl
from testbench.random_config import uniform_chip

OTHER = Network("other", (1, 10, 10), (
    Conv("A", 1, 3, 3), Pool("P", 2, 2), Conv("B", 3, 4, 2), Pool("Q", 2, 2),
    Dense("D", 16, 5)))


def small_chip() -> tuple[SystemConfig, program.Chip, np.random.Generator]:
    cfg = SystemConfig(n_pe=6, array_rows=32, array_cols=12, replication=2, adc_bits=6,
                       input_bits=6, act_bits=6, adcs_per_pe=4, pulse_cycles=2)
    rng = np.random.default_rng(5)
    chip = uniform_chip(map_network(cfg, OTHER), rng)
    return cfg, chip, rng


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path("build/asic_small_chip"))
    args = ap.parse_args()
    cfg, chip, rng = small_chip()
    work = args.out.resolve()
    syn = asic.synthesize(cfg, "chip", work, cfg.clock_mhz,
                          component=CimChip(plan_chip(chip), form=CrossbarForm.BLACKBOX))
    print(f"cells {syn['totals']['cells']:,}, {syn['totals']['area_um2']:,.0f} um^2; "
          f"times {syn['times']}")
    cells = asic.cell_models(work, "liberty")
    built = gl.build_chip(chip, [work / "mapped_sim.v", cells], syn["top"], work / "gls_chip")
    images = rng.integers(0, 256, size=(args.images, 10, 10)).astype(np.uint8)
    t0 = time.perf_counter()
    res = chip_sim.simulate(chip, images, np.arange(len(images)),
                            writes=gl.chip_cell_writes(chip), prebuilt=built, progress=False)
    print(f"gate level (Verilator): {res.bitexact}/{res.images} images bit-exact, "
          f"{res.cycles_image} cycles per image; build {built[1]:.0f} s, simulation "
          f"{res.sim_seconds:.1f} s (wall {time.perf_counter() - t0:.1f} s)")


if __name__ == "__main__":
    main()
