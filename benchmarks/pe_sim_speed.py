"""PE simulation speed on Verilator, and the Verilog generation and Verilator build times.

    python benchmarks/pe_sim_speed.py [--cycles N] [--noise R]
"""

import argparse
import json
import shutil
import time

import numpy as np

from hdl import build
from hdl.params import CrossbarForm, PEParams
from hdl.pe import PE
from testbench import runner


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--cycles", type=int, default=2_000_000)
    ap.add_argument("--noise", type=int, default=0, help="read-noise amplitude (0 = off)")
    args = ap.parse_args()
    p = PEParams(max_lines=24, read_noise=args.noise)
    g = np.random.default_rng(0).integers(0, 256, size=(p.rows, p.cols))
    build_dir = runner.BUILD_ROOT / "bench_pe"
    shutil.rmtree(build_dir, ignore_errors=True)
    t0 = time.perf_counter()
    sources = build.generate(PE(p, init=g, form=CrossbarForm.VERILOG), "pe", build_dir)
    t_gen = time.perf_counter() - t0
    t0 = time.perf_counter()
    runner.build(sources, "pe", build_dir, asserts=False)   # as generated: no assertions
    t_build = time.perf_counter() - t0
    runner.test("pe", "testbench.pe_bench_tests", build_dir,
                env={"CIM_BENCH_CYCLES": args.cycles, "CIM_BENCH_NOISE": args.noise})
    figures = json.loads((build_dir / "bench.json").read_text())
    print(f"Verilog generation: {t_gen:.2f} s; Verilator build: {t_build:.1f} s")
    print(f"PE on Verilator (free running): {figures['cycles_per_s']:,.0f} cycles/s, "
          f"{figures['slots_per_s']:,.0f} read slots/s")


if __name__ == "__main__":
    main()
