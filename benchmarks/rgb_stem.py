"""A CIFAR-shaped network through the chip's RTL: 3 x 32 x 32 images, a ResNet-style stem (a
padded 3 x 3 conv with a bias, then a 3 x 3 stride-2 max pool, windows overlapping), an
identity residual block, a 2 x 2 average pool and the dense logits layer, on the default
system (8 PEs of 128 x 16). Random cells, gains, biases and read noise, the requantization
calibrated on the images (testbench/random_config.py), random images: every logit against the
golden model, and the cycles per image, measured and the bound (the mapping's read slots on
the busiest PE times the pulse width, docs/chip.md "Cycles per image"), per layer.

    python benchmarks/rgb_stem.py [--images 4] [--simulator verilator|icarus] [--seed 1]
"""

import argparse
import time

import numpy as np

from cim_spec.config import SystemConfig
from cim_spec.mapping import map_network
from cim_spec.network import Add, Conv, Dense, Network, Pool
from testbench import chip_sim, random_config
from testbench.runner import SIMULATORS

NET = Network("rgb_stem", (3, 32, 32), (
    Conv("S", 3, 8, 3, pad=1, bias=True), Pool("M", 3, 2),
    Conv("R", 8, 8, 3, pad=1, relu=False), Add("A", other="M"),
    Pool("G", 2, 2, mode="avg"),
    Dense("F", 512, 10, bias=True)))


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--simulator", choices=SIMULATORS, default="verilator")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    mapping = map_network(SystemConfig(), NET)
    chip = random_config.draw_chip(rng, mapping)
    images = rng.integers(0, 256, size=(args.images, *NET.input_shape)).astype(np.uint8)
    ids = rng.integers(0, 2 ** 32, size=args.images, dtype=np.int64)
    chip = random_config.calibrate(rng, chip, images, ids)
    t0 = time.perf_counter()
    res = chip_sim.simulate(chip, images, ids, progress=False, simulator=args.simulator)
    wall = time.perf_counter() - t0
    print(f"{NET.name}: {res.bitexact}/{res.images} images bit-exact with the golden model "
          f"({args.simulator}; build {res.build_seconds:.0f} s, simulation "
          f"{res.sim_seconds:.0f} s, {wall:.0f} s in all)")
    pulse = mapping.config.pulse_cycles
    bound = {lm.name: mapping.slot_bound(lm.name) * pulse for lm in mapping.layers}
    print(f"cycles per image: {res.cycles_image:,} measured, {sum(bound.values()):,} bound")
    for name, b in bound.items():
        print(f"  {name}: {res.cycles_layer[name]:,} / {b:,}")
    for m in res.mismatches[:3]:
        print(f"  mismatch: {m}")


if __name__ == "__main__":
    main()
