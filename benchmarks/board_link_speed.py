"""The chip board's serial link: what each rate carries against the chip's own rate, and the
simulated board's speed (host code -> pty -> Verilator, the real protocol), with and without
the features in the replies (IMAGE_FEATURES frames, what `cim hybrid --on board` uses).

The two modes alternate over `--rounds` rounds on one simulated board, so that a change in
the machine's load hits both alike; every image is checked against the golden model.

    python benchmarks/board_link_speed.py [--images N] [--rounds K] [--replication R | --chip STATE]
"""

import argparse
import json
import statistics
import time

from cim_flows import board_link, rtl
from cim_spec import link
from cim_spec.config import SystemConfig
from golden import data
from testbench import board_sim


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--images", type=int, default=8, help="images per round and mode")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--replication", type=int, default=3)
    ap.add_argument("--chip", help="chip state (default: the ideal chip, --replication)")
    args = ap.parse_args()
    chip, _ = rtl.chip_for(args.chip, None if args.chip else
                           SystemConfig(replication=args.replication))
    layers = chip.mapping.layers
    n_pixels = 28 * 28
    feature_bytes = link.features_length(*board_link.feature_shape(chip))
    rates = {f"{baud}{' features' if f else ''}": round(board_link.link_images_per_s(
        baud, n_pixels, layers[-1].n_out, len(layers), f), 1)
        for baud in (115_200, 1_000_000, 2_000_000, 3_000_000) for f in (0, feature_bytes)}
    bundle = data.load_bundled()
    n = args.images
    speed = {False: [], True: []}
    exact = {False: 0, True: 0}
    cycles = []
    t0 = time.perf_counter()
    with board_sim.simulated_board(chip) as path:
        t_start = time.perf_counter() - t0
        port = board_link.Port(path)
        try:
            session = board_link.Session(port)
            for r in range(args.rounds):
                for features in (False, True):
                    k = (2 * r + features) * n % (len(bundle.test_images) - n)
                    run = board_link.run_images(
                        session, chip, bundle.test_images[k:k + n],
                        bundle.test_labels[k:k + n], range(k, k + n), timeout=120,
                        features=features)
                    speed[features].append(run.images_per_s)
                    exact[features] += run.bitexact
                    cycles += run.cycles_image
        finally:
            port.close()
    print(json.dumps({"link_images_per_s_by_baud": rates,
                      "feature_bytes": feature_bytes,
                      "sim_build_and_start_s": round(t_start, 1),
                      "sim_images_per_mode": n * args.rounds,
                      "sim_bitexact": {"logits": exact[False], "logits_and_features":
                                       exact[True]},
                      "sim_images_per_s": {"logits": [round(v, 3) for v in speed[False]],
                                           "logits_and_features": [round(v, 3) for v in
                                                                   speed[True]]},
                      "sim_images_per_s_median": {
                          "logits": round(statistics.median(speed[False]), 3),
                          "logits_and_features": round(statistics.median(speed[True]), 3)},
                      "sim_cycles_per_image_median": int(statistics.median(cycles))},
                     indent=1))


if __name__ == "__main__":
    main()
