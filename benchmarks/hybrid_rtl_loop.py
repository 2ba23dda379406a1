"""What a batch of RTL-in-the-loop hybrid training costs, two ways: one simulation kept
running across batches (testbench.chip_session, what `cim hybrid --on rtl` uses) against a new
simulator process per batch (testbench.chip_sim.simulate, the cells written so far re-sent
each time). Same images, same cell writes (random FC codes between batches); the logits of
both must agree.

    python benchmarks/hybrid_rtl_loop.py --chip STATE [--batches 4] [--batch 50] [--writes 20]
"""

import argparse
import resource
import time

import numpy as np

from cim_spec import chipstate
from golden import data, hybrid
from testbench import chip_sim
from testbench.chip_session import ChipSession


def child_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--chip", required=True)
    ap.add_argument("--batches", type=int, default=4)
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--writes", type=int, default=20, help="cell writes between batches")
    args = ap.parse_args()
    state = chipstate.load(args.chip)
    chip = state.chip
    d = data.load(None)
    rng = np.random.default_rng(1)
    n = args.batches * args.batch
    pick = rng.choice(len(d.train_images), n, replace=False)
    images, ids = d.train_images[pick], hybrid.TRAIN_ID_BASE + np.arange(n)
    pos, neg = hybrid.fc_cells(state)
    cells = [rng.choice(np.concatenate([pos.ravel(), neg.ravel()]), args.writes, replace=False)
             for _ in range(args.batches)]
    codes = [rng.integers(0, state.config.code_max + 1, args.writes) for _ in cells]
    t0 = time.perf_counter()
    chip_sim.build_chip(chip)
    print(f"build (cached if unchanged): {time.perf_counter() - t0:.1f} s")

    cpu0, t0 = child_cpu(), time.perf_counter()
    got = []
    with ChipSession(chip) as s:
        for b in range(args.batches):
            sl = slice(b * args.batch, (b + 1) * args.batch)
            w = s.writes_for(cells[b - 1], codes[b - 1]) if b else []
            got.append(s.run(images[sl], ids[sl], w).logits)
        sim = s.sim_seconds
    wall, cpu = time.perf_counter() - t0, child_cpu() - cpu0
    print(f"one session: {wall:.1f} s wall for {args.batches} batches of {args.batch} "
          f"({wall / args.batches:.2f} s/batch), {sim:.1f} s of it in the simulator's batches, "
          f"simulator CPU {cpu:.1f} s")

    cpu0, t0 = child_cpu(), time.perf_counter()
    done, sim = [], 0.0
    for b in range(args.batches):
        sl = slice(b * args.batch, (b + 1) * args.batch)
        so_far = [w for k in range(b) for w in
                  ChipSession.writes_for(s, cells[k], codes[k])]
        r = chip_sim.simulate(chip, images[sl], ids[sl], writes=so_far, progress=False)
        done.append(r.logits)
        sim += r.sim_seconds
    wall, cpu = time.perf_counter() - t0, child_cpu() - cpu0
    print(f"a process per batch: {wall:.1f} s wall ({wall / args.batches:.2f} s/batch), "
          f"{sim:.1f} s of it running the simulator processes, simulator CPU {cpu:.1f} s")
    same = all(np.array_equal(a, b) for a, b in zip(got, done, strict=True))
    print(f"logits of both ways identical: {same}")


if __name__ == "__main__":
    main()
