"""Wall time of the RTL regression (`cim sim --json`) from a clean build, in parts, for one or
more source trees (git worktrees of different commits) run alternately on the same machine.

    python benchmarks/regression_speed.py --chip STATE --data PATH --images N \\
        [--tree DIR]... [--rounds R] [--shards 2] [--nice 5]

Each run gets an empty build directory (CIM_BUILD_DIR), so the Verilator build is in the
figure; the tree comes first on PYTHONPATH (an older tree's `cim` entry point is found by its
module: cim_cli.main or, before the split, cim_core.cli; `cim sim` runs in the tree, so a
relative --chip names each tree's own chip state, made there with the same seed, as an older
commit may not read a newer state's format). Trees take turns (A, B, A, B, ...)
so that the machine's load falls on each alike. Printed per run: the wall time end to end,
the build and the simulation as `cim sim` reports them, the rest (golden model and setup;
with the golden model overlapping the build, `golden` is its own time, already inside the
build's), and the CPU seconds of the whole process tree (robust against a loaded machine).
Every run must be bit-exact; the last line gives each tree's median and the ratio to the
first tree.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def cli_module(tree: Path) -> str:
    return "cim_cli.main" if (tree / "cim_cli" / "main.py").exists() else "cim_core.cli"


def run_once(tree: Path, args) -> dict:
    tree = tree.resolve()
    with tempfile.TemporaryDirectory(prefix="regspeed-", dir=args.scratch) as build:
        env = dict(os.environ, PYTHONPATH=str(tree), CIM_BUILD_DIR=build)
        cmd = ["nice", "-n", str(args.nice), sys.executable, "-m", cli_module(tree), "sim",
               "--chip", args.chip, "--data", args.data,
               "--images", str(args.images), "--shards", str(args.shards), "--json"]
        cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0 and not proc.stdout.strip():
        raise SystemExit(f"{tree}: cim sim failed ({proc.returncode}): {proc.stderr[-2000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    return dict(tree=str(tree), wall=wall, build=out["build_seconds"],
                sim=out["sim_seconds"], golden=out.get("golden_seconds"),
                rest=wall - out["build_seconds"] - out["sim_seconds"], cpu=cpu,
                bitexact=out["bitexact"], images=out["images"],
                images_per_s=out["sim_images_per_s"], cmd=" ".join(cmd))


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--chip", required=True,
                    help="chip state; a relative path is taken in each tree (an older tree "
                         "may need the state its own `cim program`/`cim hybrid` wrote)")
    ap.add_argument("--data", required=True, help="MNIST directory")
    ap.add_argument("--images", type=int, default=10000)
    ap.add_argument("--tree", action="append", type=Path,
                    help="source tree (repeat; default: this one)")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--shards", type=int, default=2)
    ap.add_argument("--nice", type=int, default=5)
    ap.add_argument("--scratch", default=None, help="where the clean build directories go")
    args = ap.parse_args()
    trees = args.tree or [Path(__file__).resolve().parent.parent]
    runs = {str(t.resolve()): [] for t in trees}
    for r in range(args.rounds):
        for tree in trees:
            res = run_once(tree, args)
            runs[res["tree"]].append(res)
            gold = "" if res["golden"] is None else f" (golden {res['golden']:.0f} s)"
            print(f"round {r + 1} {res['tree']}: wall {res['wall']:.0f} s = build "
                  f"{res['build']:.0f} s + simulation {res['sim']:.0f} s "
                  f"({res['images_per_s']:.1f} images/s) + rest {res['rest']:.0f} s{gold}; "
                  f"CPU {res['cpu']:.0f} s; bit-exact {res['bitexact']}/{res['images']}",
                  flush=True)
            if res["bitexact"] != res["images"]:
                raise SystemExit(f"not bit-exact: {res['cmd']}")
    base = None
    for tree, rs in runs.items():
        wall = statistics.median(r["wall"] for r in rs)
        cpu = statistics.median(r["cpu"] for r in rs)
        base = base or (wall, cpu)
        print(f"median {tree}: wall {wall:.0f} s, CPU {cpu:.0f} s; speed-up against the "
              f"first tree: wall {base[0] / wall:.2f}x, CPU {base[1] / cpu:.2f}x")


if __name__ == "__main__":
    main()
