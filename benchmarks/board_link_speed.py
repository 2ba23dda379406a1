"""The chip board's serial link: what each rate carries against the chip's own rate, and the
simulated board's speed (host code -> pty -> Verilator, the real protocol).

    python benchmarks/board_link_speed.py [--images N] [--replication R]
"""

import argparse
import json
import time

from cim_flows import board_link, rtl
from cim_spec.config import SystemConfig
from golden import data
from testbench import board_sim


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--replication", type=int, default=3)
    args = ap.parse_args()
    chip, _ = rtl.chip_for(None, SystemConfig(replication=args.replication))
    layers = chip.mapping.layers
    n_pixels = 28 * 28
    rates = {baud: round(board_link.link_images_per_s(baud, n_pixels, layers[-1].n_out,
                                                      len(layers)), 1)
             for baud in (115_200, 1_000_000, 2_000_000, 3_000_000)}
    bundle = data.load_bundled()
    t0 = time.perf_counter()
    with board_sim.simulated_board(chip) as path:
        t_start = time.perf_counter() - t0
        port = board_link.Port(path)
        try:
            run = board_link.run_images(board_link.Session(port), chip,
                                        bundle.test_images[:args.images],
                                        bundle.test_labels[:args.images],
                                        range(args.images), timeout=120)
        finally:
            port.close()
    print(json.dumps({"link_images_per_s_by_baud": rates,
                      "sim_build_and_start_s": round(t_start, 1),
                      "sim_images": run.images, "sim_bitexact": run.bitexact,
                      "sim_images_per_s": round(run.images_per_s, 3),
                      "sim_cycles_per_image_median": run.to_dict()["cycles_image_median"]},
                     indent=1))


if __name__ == "__main__":
    main()
