"""Random configurations through the RTL: for each seed, a drawn system configuration, a small
network that maps onto it, a random chip and a few images (testbench/random_config.py); the
generated chip runs them (odd seeds with random traffic: gaps, back-pressure, handshake
monitors) and every logit is compared with the golden model.

    python benchmarks/random_configs.py --count 200 [--start 0] [--jobs 2] [--json OUT.jsonl]
    python benchmarks/random_configs.py --seed 17          # reproduce one case

Each case is a build of its own, so the build dominates: on Icarus (the default here) a case
takes seconds; on Verilator (`--simulator verilator`) a minute or two, about half that with
`--cxx-opt O0` (the model compiled without C++ optimization: it builds faster and simulates
three images slower). The regressions keep Verilator with its default -Os. Builds are deleted
after each case unless --keep-builds. A failing case prints the seed and the command that
reproduces it; `--start` and `--count` split or resume a run (with --json appending).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import shutil
import sys
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np

from testbench import chip_sim, random_config
from testbench.runner import SIMULATORS


def run_case(seed: int, simulator: str, cxx_opt: str | None, keep: bool) -> dict:
    t0 = time.perf_counter()
    row = dict(seed=seed, simulator=simulator, cxx_opt=cxx_opt)
    try:
        case = random_config.draw(seed)
    except Exception as e:   # a generator that finds nothing to map is a finding too
        row.update(status="error", config=f"seed {seed}: no draw",
                   error=f"{type(e).__name__}: {e}", seconds=round(time.perf_counter() - t0, 1))
        return row
    pauses = seed if seed % 2 else None
    row.update(config=case.describe(), refused_draws=len(case.refused),
               random_traffic=pauses is not None)
    try:
        res = chip_sim.simulate(case.chip, case.images, case.image_ids, progress=False,
                                pauses=pauses, simulator=simulator, cxx_opt=cxx_opt)
    except Exception as e:   # a build or simulator failure is a finding too, keep going
        row.update(status="error", error=f"{type(e).__name__}: {e}".splitlines()[0],
                   trace=traceback.format_exc(limit=3))
    else:
        ok = res.bitexact == len(case.images)
        row.update(status="pass" if ok else "mismatch", images=len(case.images),
                   bitexact=res.bitexact,
                   build_s=round(res.build_seconds, 1), sim_s=round(res.sim_seconds, 1),
                   cycles_per_image=res.cycles_image,
                   # equal digests: two simulators (or builds) gave the same logits
                   logits_sha=hashlib.sha256(np.ascontiguousarray(
                       res.logits, np.int64).tobytes()).hexdigest()[:16],
                   constant_logits=bool((res.golden_logits == res.golden_logits[0]).all()),
                   mismatches=[str(m) for m in res.mismatches[:3]])
        if not keep and res.build_dir is not None:
            shutil.rmtree(res.build_dir, ignore_errors=True)
    row["seconds"] = round(time.perf_counter() - t0, 1)
    return row


def reproduce(row: dict) -> str:
    opts = f" --simulator {row['simulator']}"
    if row["cxx_opt"]:
        opts += f" --cxx-opt {row['cxx_opt'].lstrip('-')}"
    return f"python benchmarks/random_configs.py --seed {row['seed']}{opts}"


def line(row: dict) -> str:
    flag = {"pass": "ok", "mismatch": "MISMATCH", "error": "ERROR"}[row["status"]]
    if "images" in row:
        extra = (f"{row['bitexact']}/{row['images']} bit-exact, build {row['build_s']} s, "
                 f"sim {row['sim_s']} s")
    else:
        extra = row["error"]
    return f"{flag:8} {row['config']}: {extra}; {row['seconds']} s"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=200)
    ap.add_argument("--start", type=int, default=0, help="first seed")
    ap.add_argument("--seed", type=int, help="run this one seed only")
    ap.add_argument("--simulator", choices=SIMULATORS, default="icarus")
    ap.add_argument("--cxx-opt", choices=["O0", "O1", "O2", "Os"],
                    help="Verilator only: the model's C++ optimization (default: Verilator's "
                    "Os)")
    ap.add_argument("--jobs", type=int, default=1, help="cases run in parallel processes")
    ap.add_argument("--json", type=Path, help="append every case's row here (JSON lines)")
    ap.add_argument("--keep-builds", action="store_true")
    a = ap.parse_args(argv)
    if a.cxx_opt is not None and a.simulator != "verilator":
        ap.error("--cxx-opt is for --simulator verilator")
    if a.count < 1 or a.jobs < 1 or a.start < 0:
        ap.error("--count and --jobs must be at least 1, --start at least 0")
    cxx_opt = None if a.cxx_opt is None else f"-{a.cxx_opt}"
    seeds = [a.seed] if a.seed is not None else list(range(a.start, a.start + a.count))
    opts = f"{a.simulator}" + (f", C++ {cxx_opt}" if cxx_opt else "")
    print(f"{len(seeds)} configurations (seeds {seeds[0]}-{seeds[-1]}) on {opts}, "
          f"{a.jobs} at a time", flush=True)
    rows, t0 = [], time.perf_counter()
    # Fresh interpreters for the workers: the simulation starts threads of its own.
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(a.jobs, mp_context=ctx) as pool:
        futures = [pool.submit(run_case, s, a.simulator, cxx_opt, a.keep_builds)
                   for s in seeds]
        for fut in as_completed(futures):
            row = fut.result()
            rows.append(row)
            print(line(row), flush=True)
            if row["status"] != "pass":
                print(f"         reproduce: {reproduce(row)}", flush=True)
            if a.json:
                with open(a.json, "a") as fh:
                    fh.write(json.dumps(row) + "\n")
    rows.sort(key=lambda r: r["seed"])
    passed = sum(r["status"] == "pass" for r in rows)
    failed = [r for r in rows if r["status"] != "pass"]
    secs = [r["seconds"] for r in rows]
    print(f"\n{len(rows)} configurations, {passed} bit-exact, {len(failed)} failed"
          + (f" (seeds {[r['seed'] for r in failed]})" if failed else "")
          + f"; {time.perf_counter() - t0:.0f} s wall, median {np.median(secs):.1f} s per "
          f"case; random traffic in {sum(r.get('random_traffic', False) for r in rows)}; "
          f"constant logits in {sum(r.get('constant_logits', False) for r in rows)}; "
          f"{sum(r.get('refused_draws', 0) for r in rows)} draws refused and redrawn")
    for r in failed:
        print(f"  seed {r['seed']} {r['status']}: {reproduce(r)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
