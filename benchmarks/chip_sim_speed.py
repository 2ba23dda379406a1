"""Speed of the whole chip's RTL simulation on Verilator (cocotb, one shard), in images and
cycles per second of wall time and of the simulator's own CPU time.

    python benchmarks/chip_sim_speed.py [--images N] [--replication R] [--noise RN]
                                        [--no-asserts]

Verification builds check the RTL's assertions (docs/verification.md); `--no-asserts` builds
without them, to measure what they cost.
"""

import argparse
import resource
import time

import numpy as np

from cim_flows import stages
from cim_spec import program
from cim_spec.config import SystemConfig
from golden import data
from testbench import chip_sim as rtl_sim


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--replication", type=int, default=3)
    ap.add_argument("--noise", type=int, default=0, help="read-noise amplitude")
    ap.add_argument("--shards", type=int, default=1)
    ap.add_argument("--no-asserts", dest="asserts", action="store_false",
                    help="build without the RTL's assertions")
    args = ap.parse_args()
    cfg = SystemConfig(replication=args.replication)
    mapping, prog = stages.ideal_program(cfg, stages.load_model())
    d = prog.digital
    chip = program.Chip(mapping, prog.target, program.Digital(
        d.adc_gain, d.requant_mult, d.requant_shift, read_noise=args.noise, noise_seed=1))
    base = data.load_bundled().test_images
    images = np.resize(base, (args.images, *base.shape[1:]))
    t0 = time.perf_counter()
    rtl_sim.build_chip(chip, asserts=args.asserts)
    t_build = time.perf_counter() - t0
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    res = rtl_sim.simulate(chip, images, shards=args.shards, progress=False,
                           asserts=args.asserts)
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    cycles = res.cycles_per_image * res.images
    print(f"build (cached if unchanged), assertions {'on' if args.asserts else 'off'}: "
          f"{t_build:.1f} s")
    print(f"{res.images} images, replication {args.replication}, {args.shards} shard(s): "
          f"{res.bitexact} bit-exact, {res.cycles_per_image:.0f} cycles/image")
    print(f"wall: {res.sim_seconds:.1f} s = {res.sim_images_per_s:.1f} images/s = "
          f"{cycles / res.sim_seconds:,.0f} cycles/s")
    print(f"simulator CPU: {cpu:.1f} s = {res.images / cpu:.1f} images/s per core = "
          f"{cycles / cpu:,.0f} cycles/s per core")


if __name__ == "__main__":
    main()
