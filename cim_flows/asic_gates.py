"""The mapped netlist at gate level (the ASIC flow's steps 3 and 4, cim_flows.asic): a PE's
random read vectors or the chip's test images through it on Verilator (cell models generated
from the Liberty) or Icarus (the package's models), every result against the golden model;
and OpenSTA's report_power with the run's switching activity (cim_flows.asic_power)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from cim_spec.config import SystemConfig

from . import asic_cells, asic_liberty
from .asic_tools import (
    CELL_MODELS,
    LIBERTY,
    MACRO_LIBERTY,
    AsicError,
    library_dir,
    need_tool,
    run_sta,
)
from .synth import _say

SIMULATORS = ("verilator", "icarus")
# Cell models: generated from the Liberty (cim_flows.asic_cells; Verilator compiles them) or
# the package's own Verilog (Icarus only: UDPs, specify blocks).
MODELS = ("liberty", "package")
GENERATED_MODELS = "osu018_cells_liberty.v"


def cell_models(work: Path, models: str) -> Path:
    """The cell models' Verilog for the simulator, in `work`."""
    if models not in MODELS:
        raise AsicError(f"cell models must be one of {MODELS}, got {models!r}")
    if models == "package":
        shutil.copyfile(library_dir() / CELL_MODELS, work / CELL_MODELS)
        return work / CELL_MODELS
    return asic_cells.write_models(library_dir() / LIBERTY, work / GENERATED_MODELS)


def default_models(simulator: str) -> str:
    return "liberty" if simulator == "verilator" else "package"


def gate_level(cfg: SystemConfig, work: Path, top: str, p, vectors: int, seed: int = 1,
               progress: bool = True, simulator: str = "verilator",
               models: str | None = None, saif: bool = False) -> dict:
    """`vectors` random read vectors through the mapped PE (cell models + behavioral macro),
    bit-exact against the golden model; AsicError if any partial sum differs. `saif`
    (Verilator): the run's switching activity as `saif` in the result (for `power`)."""
    from hdl.crossbar import BEHAVIORAL_SOURCE
    from testbench import gate_level as gl
    models = models or default_models(simulator)
    if simulator == "icarus":
        need_tool("iverilog")
    cells = cell_models(work, models)
    stimulus = work / "gls_stimulus.npz"
    n = gl.write_stimulus(stimulus, cfg, p, vectors, seed)
    _say(progress, f"asic: gate-level simulation of {n} vectors on {simulator} "
                   f"({models} cell models)")
    try:
        res = gl.simulate([work / "mapped_sim.v", cells, BEHAVIORAL_SOURCE], top,
                          work / f"gls_{simulator}_{models}{'_saif' if saif else ''}",
                          stimulus, simulator, saif)
    except AssertionError as exc:
        raise AsicError(str(exc)) from None
    res.update(seed=seed, models=models)
    return res


def gate_level_chip(cfg: SystemConfig, work: Path, top: str, images: int,
                    progress: bool = True, simulator: str = "verilator",
                    clock_mhz: float | None = None, with_power: bool = False) -> dict:
    """The first `images` bundled test images through the chip's mapped netlist (cell models
    generated from the Liberty, the behavioral crossbar for the macros, the simulation
    harness around it), every logit compared with the golden model of the same chip (the
    ideal program `cim synth --design chip` builds). The macros are programmed through the
    chip's programming port first.

    `with_power`: the model records every net's activity (SAIF); a second run of the first
    image alone is subtracted from it, which leaves the activity of images 2..N without the
    programming, and OpenSTA's report_power turns it into watts and energy per image."""
    from golden import data
    from testbench import chip_sim
    from testbench import gate_level as gl

    from . import asic_power
    from .stages import ideal_program, load_model
    if simulator != "verilator":
        raise AsicError("the chip's gate-level run needs Verilator (Icarus: hours per image)")
    if with_power and images < 2:
        raise AsicError("power needs at least 2 images (the first is subtracted)")
    mapping, prog = ideal_program(cfg, load_model())
    chip = prog.chip(mapping)
    cells = cell_models(work, "liberty")
    _say(progress, f"asic: building the chip's gate-level simulation ({simulator})")
    try:
        built = gl.build_chip(chip, [work / "mapped_sim.v", cells], top, work / "gls_chip",
                              simulator, saif=with_power)
    except RuntimeError as e:      # cocotb's runner: a build command's non-zero exit
        why = (" (killed: most often out of memory; the paper chip's netlist needs about 7 GB,"
               " more with --power's tracing)") if "137" in str(e) else ""
        raise AsicError(f"the gate-level build failed{why}: {e}; see "
                        f"{work / 'gls_chip' / 'build.log'}") from None
    d = data.load_bundled()
    writes = gl.chip_cell_writes(chip)
    out = {"simulator": gl.SIMULATORS[simulator], "models": "liberty", "images": images,
           "cells_programmed": len(writes), "build_s": round(built[1], 1), "sim_s": 0.0}
    saifs = {}
    for n in ([1, images] if with_power else [images]):
        _say(progress, f"asic: {n} images through the netlist after {len(writes)} cell writes")
        res = chip_sim.simulate(chip, d.test_images[:n], np.arange(n), writes=writes,
                                prebuilt=built, progress=progress, waves=with_power,
                                simulator=simulator)
        if res.mismatches:
            m = res.mismatches[0]
            raise AsicError(f"gate-level chip: {len(res.mismatches)} of {n} images differ "
                            f"from the golden model; first: image {m.image_id} netlist "
                            f"{m.rtl} golden {m.golden}")
        out["sim_s"] += round(res.sim_seconds, 1)
        if with_power:
            saifs[n] = asic_power.read_saif(res.run_dir / "shard0" / "dump.saif")
            shutil.rmtree(res.run_dir, ignore_errors=True)
    out.update(bitexact=res.bitexact, cycles_image=res.cycles_image,
               cycles_layer=res.cycles_layer, cycles_per_image=res.cycles_per_image)
    if with_power:
        act = asic_power.difference(saifs[images], saifs[1])
        clock = clock_mhz or cfg.clock_mhz
        pw = power(work, top, clock, act, asic_power.find_scope(act[1], "chip"), progress)
        cycles = act[0] / SIM_PERIOD_S / (images - 1)
        pw.update(images=images - 1, cycles_per_image=round(cycles, 1),
                  uj_per_image=round(pw["total_w"] * cycles / (clock * 1e6) * 1e6, 4))
        out["power"] = pw
    return out


# --------------------------------------------------------------------------------------------
# 4. Power: OpenSTA's report_power with the gate-level run's switching activity

SIM_PERIOD_S = 10e-9           # the testbenches' clock (testbench/chip_tests.PERIOD_NS)


def power(work: Path, top: str, clock_mhz: float, saif, scope: str | None = None,
          progress: bool = True) -> dict:
    """`report_power` of `mapped.v` at `clock_mhz` with every cell pin's activity and duty
    from a gate-level run: `saif` is its SAIF file, or (duration, nets) as
    cim_flows.asic_power.read_saif / difference give them; `scope` the netlist's instance
    in it (default: the scope named `top`). Watts by kind, the pins annotated and the run's
    cycles."""
    from . import asic_power
    need_tool("sta")
    duration, nets = saif if isinstance(saif, tuple) else asic_power.read_saif(saif)
    scope = scope or asic_power.find_scope(nets, top)
    lib = asic_cells.parse_liberty((work / LIBERTY).read_text())
    pins_of = {c.args[0]: {p.args[0] for p in c.children("pin")} for c in asic_cells.cells(lib)}
    outputs = {c.args[0]: [p.args[0] for p in c.children("pin")
                           if p.attrs.get("direction") == "output"] for c in asic_cells.cells(lib)}
    cells = asic_power.netlist_cells(work / "mapped.v", set(pins_of), top)
    cell_pins = {inst: pins_of[t] for inst, t in cells.items()}
    acts = asic_power.pin_activity(nets, duration, SIM_PERIOD_S, scope, cell_pins)
    per_cell = asic_power.cell_activity(acts, cells, outputs)
    period = 1e3 / clock_mhz
    tcl = [f"read_liberty {LIBERTY}", f"read_liberty {MACRO_LIBERTY}",
           "read_verilog mapped.v", f"link_design {top}",
           f"set_wire_load_model -name {asic_liberty.WIRE_LOAD} -library cim_macros",
           f"create_clock -name clk -period {period:.4f} [get_ports clk]",
           'puts "=== power"', *asic_power.group_commands(per_cell), 'puts "=== end"', ""]
    (work / "power.tcl").write_text("\n".join(tcl))
    _say(progress, f"asic: OpenSTA report_power for {len(per_cell):,} cells in groups of equal "
                   f"activity")
    log, seconds = run_sta(work, "power.tcl", "report_power")
    watts = asic_power.parse_instance_power(log.split("=== power")[1])
    if watts["instances"] != len(per_cell):
        raise AsicError(f"report_power gave {watts['instances']} instances of "
                        f"{len(per_cell)} (see {work / 'power.log'})")
    cycles = duration / SIM_PERIOD_S
    return {**watts, "clock_mhz": clock_mhz, "pins_annotated": len(acts),
            "cell_pins": sum(len(v) for v in cell_pins.values()), "cells": len(cells),
            "cells_annotated": len(per_cell),
            "cycles": round(cycles), "saif_scope": scope,
            "seconds": round(seconds, 1)}
