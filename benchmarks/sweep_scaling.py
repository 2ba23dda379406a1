"""Sweep throughput (points/minute) with 1 and 2 local Dask workers and through a `dask
scheduler` + `dask worker` pair on the loopback address; checks that all three give the same
rows, bit for bit.

    python benchmarks/sweep_scaling.py [--chips 12] [--images 300] [--stages transfer,hybrid]

The clusters are started before the clock starts (their start-up is not a sweep's cost); each
worker's first point includes the calibration of the configuration (cached per worker), as in
any real sweep.
"""

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cim_flows import sweep, sweep_spec

ROOT = Path(__file__).resolve().parents[1]


def spec_text(chips: int, images: int, stages: list[str]) -> str:
    return f"""
[sweep]
chips = {chips}
images = {images}
hybrid_images = 500
stages = {stages!r}

[axes]
"device.relax_sigma_us" = [0.3, 0.9]
"""


def timed(spec, out: Path, address: str) -> tuple[float, list[dict]]:
    t0 = time.perf_counter()
    s = sweep.run(spec, out, scheduler=address, progress=False)
    dt = time.perf_counter() - t0
    assert s["failed"] == 0, s
    return dt, sweep.read_table(out / "sweep.parquet")


def local(spec, out: Path, n: int):
    import logging

    from dask.distributed import LocalCluster
    with LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                      dashboard_address=None, silence_logs=logging.ERROR) as cluster:
        return timed(spec, out, cluster.scheduler_address)


def loopback(spec, out: Path, n: int):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    addr = f"tcp://127.0.0.1:{port}"
    procs = [subprocess.Popen([sys.executable, "-m", "dask", "scheduler", "--host", "127.0.0.1",
                               "--port", str(port), "--no-dashboard"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "dask", "worker", addr, "--host", "127.0.0.1", "--nworkers",
             str(n), "--nthreads", "1", "--no-dashboard"], env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        from dask.distributed import Client
        with Client(addr, timeout="30s") as c:
            c.wait_for_workers(n, timeout=60)
        return timed(spec, out, addr)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=30)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--chips", type=int, default=12)
    ap.add_argument("--images", type=int, default=300)
    ap.add_argument("--stages", default="transfer,hybrid")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        path = tmp / "spec.toml"
        path.write_text(spec_text(args.chips, args.images, args.stages.split(",")))
        spec = sweep_spec.load(path)
        n = len(spec.points())
        results = {}
        for name, fn, w in (("1 local worker", local, 1), ("2 local workers", local, 2),
                            ("loopback scheduler, 2 workers", loopback, 2)):
            dt, rows = fn(spec, tmp / name.replace(" ", "_").replace(",", ""), w)
            results[name] = (dt, rows)
            print(f"{name:>30}: {n} points in {dt:6.1f} s = {60 * n / dt:6.1f} points/min",
                  flush=True)
        base = results["1 local worker"]
        same = all(rows == base[1] for _, rows in results.values())
        print(f"speed-up 2 vs 1 local workers: {base[0] / results['2 local workers'][0]:.2f}x; "
              f"rows identical across all three: {same}  ({os.cpu_count()} cores; "
              f"{args.images} images, stages {args.stages})")
        if not same:
            sys.exit(1)


if __name__ == "__main__":
    main()
