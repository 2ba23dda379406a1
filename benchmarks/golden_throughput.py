"""Throughput of the bit-accurate golden model (images/s) on the bundled default chip.

    python benchmarks/golden_throughput.py [--images N] [--replication R] [--workers W]
"""

import argparse
import os
import time

import numpy as np

from cim_flows import stages
from cim_spec import program
from cim_spec.config import SystemConfig
from golden import chip_model, data


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--images", type=int, default=10_000)
    ap.add_argument("--replication", type=int, default=1)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--read-noise", type=int, default=0)
    args = ap.parse_args()
    cfg = SystemConfig(replication=args.replication)
    mapping, prog = stages.ideal_program(cfg, stages.load_model())
    chip = prog.chip(mapping)
    if args.read_noise:
        chip = program.Chip(mapping, chip.conductance, program.Digital(
            chip.digital.adc_gain, chip.digital.requant_mult, chip.digital.requant_shift,
            read_noise=args.read_noise, noise_seed=1))
    base = data.load_bundled().test_images
    images = np.resize(base, (args.images, *base.shape[1:]))
    chip_model.run(chip, images[:256], workers=args.workers)  # warm up
    t0 = time.perf_counter()
    chip_model.run(chip, images, workers=args.workers)
    dt = time.perf_counter() - t0
    print(f"golden bit-accurate model: {args.images} images in {dt:.2f} s = "
          f"{args.images / dt:,.0f} images/s (replication {args.replication}, "
          f"read noise {args.read_noise}, {os.cpu_count()} cores, workers "
          f"{args.workers or 'auto'})")


if __name__ == "__main__":
    main()
