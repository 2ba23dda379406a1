"""The opt-in coverage run: the chip regression on Verilator coverage builds (line, toggle,
branch), with random traffic, cell writes through the programming port and gain writes
through the gain port between images, plus the functional bins of testbench/coverage.py; one
merged report, RUN/coverage.json, which `cim report --run RUN` shows as a table.

    python benchmarks/coverage_run.py --out RUN [--images 8] [--replication 1 3]
                                      [--other] [--force]

The chips are the regression's (tests/testbench/test_chip.py): the bundled mCNN with
perturbed cells and read noise, per replication; `--other` adds the second network on its
own configuration (a small 5-layer network on 6 PEs, replication 2). Each run is a separate
Verilator build with --coverage (slower to build and run than the regression's).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from cim_flows import stages
from cim_spec import files, program
from cim_spec.config import SystemConfig
from cim_spec.mapping import map_network
from cim_spec.network import Conv, Dense, Network, Pool
from golden import data
from testbench import chip_sim, coverage
from testbench.chip_sim import CellWrite, GainWrite
from testbench.random_config import uniform_chip

OTHER = Network("other", (1, 10, 10), (
    Conv("A", 1, 3, 3), Pool("P", 2, 2), Conv("B", 3, 4, 2), Pool("Q", 2, 2),
    Dense("D", 16, 5)))


mcnn_chip = stages.perturbed_chip


def other_chip() -> program.Chip:
    cfg = SystemConfig(n_pe=6, array_rows=32, array_cols=12, replication=2, adc_bits=6,
                       input_bits=6, act_bits=6, adcs_per_pe=4, pulse_cycles=2)
    return uniform_chip(map_network(cfg, OTHER), np.random.default_rng(5))


def writes_between(chip: program.Chip, rng, n_images: int) -> list[CellWrite]:
    """A few cells of every layer re-written before the middle image."""
    out = []
    for b in chip.mapping.blocks[::max(1, len(chip.mapping.blocks) // 6)]:
        out.append(CellWrite(n_images // 2, b.pe, b.row0 + int(rng.integers(b.n_rows)),
                             int(rng.integers(b.n_in)), int(rng.integers(chip.config.code_max
                                                                          + 1))))
    return out


def gain_writes(chip: program.Chip, n_images: int) -> list[GainWrite]:
    """Every weight layer's gain register written through the gain port between images: a
    quarter of the way in to 10% above its programmed gain (drift compensation), at half way
    to the register's largest value, at three quarters to 1. The images before the first
    write run at the programmed gains. All layers move together: a layer at gain 1 reads
    almost nothing, so the next layer, even at the top gain, would never clamp."""
    top = chip_sim.gain_register_max(chip)
    out = []
    for layer, gain in chip.digital.adc_gain.items():
        out += [GainWrite(max(1, n_images // 4), layer, min(top, round(gain * 1.1))),
                GainWrite(max(1, n_images // 2), layer, top),
                GainWrite(max(1, 3 * n_images // 4), layer, 1)]
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="run directory")
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--replication", type=int, nargs="*", default=[1, 3])
    ap.add_argument("--other", action="store_true", help="also the second network")
    ap.add_argument("--force", action="store_true")
    a = ap.parse_args(argv)
    target = a.out / "coverage.json"
    files.check_output(target, {files.OTHER}, a.force)
    rng = np.random.default_rng(1)
    bundle = data.load_bundled()
    cases = [(f"mCNN r{r}", mcnn_chip(r)) for r in a.replication]
    if a.other:
        cases.append(("other r2", other_chip()))
    runs, rows, dats = [], [], []
    dat_dir = a.out / "coverage_dat"
    for name, chip in cases:
        h, w = chip.mapping.network.input_shape[1:]
        images = (bundle.test_images[:a.images] if (h, w) == (28, 28) else
                  rng.integers(0, 256, size=(a.images, h, w)).astype(np.uint8))
        ids = rng.integers(0, 2 ** 32, size=a.images, dtype=np.int64)
        writes = writes_between(chip, rng, a.images)
        gains = gain_writes(chip, a.images)
        t0 = time.perf_counter()
        before = set(dat_dir.glob("*.dat")) if dat_dir.exists() else set()
        res = chip_sim.simulate(chip, images, ids, progress=False, pauses=7,
                                writes=[*writes, *gains], coverage=dat_dir)
        dats += sorted(set(dat_dir.glob("*.dat")) - before)
        # Every image is sampled with the chip as the writes before it left it.
        runs.append((name, chip, images, ids, res.traffic, [*writes, *gains]))
        rows.append(dict(name=name, images=a.images, bitexact=res.bitexact,
                         writes=len(writes), gain_writes=len(gains),
                         build_s=round(res.build_seconds, 1),
                         sim_s=round(res.sim_seconds, 1), traffic=res.traffic,
                         seconds=round(time.perf_counter() - t0, 1)))
        print(f"{name}: {res.bitexact}/{a.images} bit-exact, build {res.build_seconds:.0f} s, "
              f"sim {res.sim_seconds:.0f} s", flush=True)
    func = coverage.functional(runs)
    struct = coverage.structural(dats, a.out / "coverage_merged.dat")
    rep = coverage.report(func, struct, rows)
    files.write_json(target, rep)
    for group, g in rep["functional"].items():
        print(f"{group:12} {g['hit']}/{g['bins']} bins" +
              (f"; not hit: {', '.join(g['missed'][:6])}" if g["missed"] else ""))
    for kind, s in struct.items():
        print(f"verilator {kind:8} {s['hit']}/{s['points']} ({s['percent']}%)")
    print(f"written {target}")
    return 0 if all(r["bitexact"] == r["images"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
