"""Random configurations through the RTL: for each seed, a drawn system configuration, a small
network that maps onto it, a random chip and a few images (testbench/random_config.py); the
generated chip runs them on Verilator (half of them with random traffic: gaps, back-pressure,
handshake monitors) and every logit is compared with the golden model.

    python benchmarks/random_configs.py --count 200 [--start 0] [--json OUT.json]
    python benchmarks/random_configs.py --seed 17          # reproduce one case

Each case needs its own Verilator build (about a minute); builds are deleted after each
case unless --keep-builds. A failing case is printed with the seed that reproduces it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
import traceback
from pathlib import Path

import numpy as np

from testbench import chip_sim, random_config


def run_case(seed: int, keep: bool) -> dict:
    t0 = time.perf_counter()
    case = random_config.draw(seed)
    row = dict(seed=seed, config=case.describe(), refused_draws=len(case.refused))
    pauses = seed if seed % 2 else None
    try:
        res = chip_sim.simulate(case.chip, case.images, case.image_ids, progress=False,
                                pauses=pauses)
    except Exception as e:   # a build or simulator failure is a finding too, keep going
        row.update(status="error", error=f"{type(e).__name__}: {e}",
                   trace=traceback.format_exc(limit=3))
    else:
        ok = res.bitexact == len(case.images)
        row.update(status="pass" if ok else "mismatch", images=len(case.images),
                   bitexact=res.bitexact, random_traffic=pauses is not None,
                   build_s=round(res.build_seconds, 1), sim_s=round(res.sim_seconds, 1),
                   cycles_per_image=res.cycles_image,
                   constant_logits=bool((res.golden_logits == res.golden_logits[0]).all()),
                   mismatches=[str(m) for m in res.mismatches[:3]])
        if not keep and res.build_dir is not None:
            shutil.rmtree(res.build_dir, ignore_errors=True)
    row["seconds"] = round(time.perf_counter() - t0, 1)
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=200)
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--seed", type=int, help="run this one seed only")
    ap.add_argument("--json", type=Path, help="write every case's row here (JSON lines)")
    ap.add_argument("--keep-builds", action="store_true")
    a = ap.parse_args(argv)
    seeds = [a.seed] if a.seed is not None else range(a.start, a.start + a.count)
    rows, t0 = [], time.perf_counter()
    for seed in seeds:
        row = run_case(seed, a.keep_builds)
        rows.append(row)
        flag = {"pass": "ok", "mismatch": "MISMATCH", "error": "ERROR"}[row["status"]]
        extra = (f"{row['bitexact']}/{row['images']} bit-exact, build {row['build_s']} s, "
                 f"sim {row['sim_s']} s" if "images" in row else row["error"])
        print(f"{flag:8} {row['config']}: {extra}", flush=True)
        if row["status"] != "pass":
            print(f"         reproduce: python benchmarks/random_configs.py --seed {seed}",
                  flush=True)
        if a.json:
            with open(a.json, "a") as fh:
                fh.write(json.dumps(row) + "\n")
    passed = sum(r["status"] == "pass" for r in rows)
    failed = [r["seed"] for r in rows if r["status"] != "pass"]
    secs = [r["seconds"] for r in rows]
    print(f"\n{len(rows)} configurations, {passed} bit-exact, {len(failed)} failed"
          + (f" (seeds {failed})" if failed else "")
          + f"; {time.perf_counter() - t0:.0f} s, median {np.median(secs):.0f} s per case; "
          f"constant logits in {sum(r.get('constant_logits', False) for r in rows)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
