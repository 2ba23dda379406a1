"""Power of a mapped netlist from OpenSTA, with the switching activity of a gate-level run.

Debian's OpenSTA (2.0.17, 2019) has `report_power` (the Liberty's internal-power tables and
leakage, switching power from the wire load model's and pins' capacitance) and
`set_power_activity`, but reads neither VCD nor SAIF. The activity therefore comes the other
way round: the gate-level simulation on Verilator writes a SAIF file (`--trace-saif`: per
net, the toggle count TC and the time at 1, T1), this module reads it, turns every cell pin's
toggles into OpenSTA's activity (transitions per clock period) and duty (T1 over the run),
gives each cell its outputs' figures, and has OpenSTA report each group of cells with equal
figures under that global activity (this OpenSTA cannot annotate single pins: see
group_commands); the instance rows are summed.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

_TOK = re.compile(r"\(|\)|(?:\\.|[^\s()\\])+")


def _unescape(name: str) -> str:
    return re.sub(r"\\(.)", r"\1", name)


_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9, "ps": 1e-12, "fs": 1e-15}


def read_saif(path: Path) -> tuple[float, dict[str, tuple[int, float]]]:
    """The run's duration in seconds and, per net (scopes joined with `/`), its toggle count
    and its time at 1 in seconds."""
    # Line comments (Verilator's SAIF starts with one) are not part of the data.
    text = re.sub(r"//[^\n]*", "", Path(path).read_text())
    stack: list[list] = [[]]
    for m in _TOK.finditer(text):
        t = m.group(0)
        if t == "(":
            stack.append([])
        elif t == ")":
            done = stack.pop()
            stack[-1].append(done)
        else:
            stack[-1].append(t)
    root = stack[0][0]
    head = {x[0]: x[1:] for x in root if isinstance(x, list) and x and x[0] in
            ("DURATION", "TIMESCALE")}
    scale = "".join(head.get("TIMESCALE", ["1", "s"]))
    m = re.fullmatch(r"(\d+)\s*([munpf]?s)", scale)
    if not m or "DURATION" not in head:
        raise ValueError(f"{path}: no DURATION or TIMESCALE ({scale!r}) in the SAIF header")
    unit = int(m.group(1)) * _UNITS[m.group(2)]
    duration = float(head["DURATION"][0]) * unit
    nets: dict[str, tuple[int, float]] = {}

    def walk(node, scope):
        for item in node:
            if not isinstance(item, list) or not item:
                continue
            if item[0] == "INSTANCE":
                walk(item[2:], [*scope, _unescape(item[1])])
            elif item[0] == "NET":
                for net in item[1:]:
                    fields = {f[0]: float(f[1]) for f in net[1:] if isinstance(f, list)}
                    nets["/".join([*scope, _unescape(net[0])])] = (
                        int(fields.get("TC", 0)), fields.get("T1", 0.0) * unit)

    walk(root, [])
    return duration, nets


def difference(longer: tuple[float, dict], shorter: tuple[float, dict]
               ) -> tuple[float, dict[str, tuple[int, float]]]:
    """The activity of what a longer run did beyond a shorter one with the same beginning
    (read_saif results): toggle counts, times at 1 and durations subtracted. Two runs of N
    and 1 images after the same programming leave the N - 1 images' own activity."""
    d_long, n_long = longer
    d_short, n_short = shorter
    if d_long <= d_short:
        raise ValueError(f"the longer run lasted {d_long:g} s, the shorter {d_short:g} s")
    out = {}
    for name, (tc, t1) in n_long.items():
        tc0, t10 = n_short.get(name, (0, 0.0))
        out[name] = (tc - tc0, t1 - t10)
    return d_long - d_short, out


def find_scope(nets: dict, top: str) -> str:
    """The SAIF scope of the netlist's top module (e.g. `TOP/cim_pe_asic`, or
    `TOP/harness/chip` when a harness instantiates it as `chip`)."""
    scopes = sorted({n.rsplit("/", 1)[0] for n in nets}, key=len)
    for s in scopes:
        if s.split("/")[-1] == top:
            return s
    raise ValueError(f"the SAIF has no scope named {top!r}")


def pin_activity(nets: dict, duration: float, period: float, scope: str,
                 cell_pins: dict[str, set[str]]) -> dict[str, tuple[float, float]]:
    """OpenSTA pin name (`inst/inst/cell/PIN`) -> (transitions per clock period, duty) for
    every cell pin the SAIF has under `scope` (find_scope). `duration` and the simulation's
    clock `period` in seconds; `cell_pins`: instance path -> its pins (netlist_cells)."""
    out = {}
    prefix = scope.rstrip("/") + "/"
    cycles = duration / period
    for name, (tc, t1) in nets.items():
        if not name.startswith(prefix):
            continue
        inst, _, pin = name[len(prefix):].rpartition("/")
        if pin in cell_pins.get(inst, ()):
            out[f"{inst}/{pin}"] = (tc / cycles, t1 / duration if duration else 0.0)
    return out


_INST = re.compile(r"^\s*(\\\S+|\w+)\s+(\\\S+|\w+)\s*\($", re.M)
_MODULE = re.compile(r"^module\s+(\\\S+|\S+?)\s*\(", re.M)


def netlist_cells(netlist: Path, cell_names: set[str], top: str) -> dict[str, str]:
    """Instance path (`inst/inst/cell`) -> cell type of every standard cell in a yosys
    netlist (hierarchy kept: submodule instances are followed from `top`)."""
    text = Path(netlist).read_text()
    bodies = {}
    starts = [(m.start(), _unescape(m.group(1)).lstrip("\\")) for m in _MODULE.finditer(text)]
    for k, (pos, name) in enumerate(starts):
        end = starts[k + 1][0] if k + 1 < len(starts) else len(text)
        bodies[name] = [(t.lstrip("\\"), i.lstrip("\\"))
                        for t, i in _INST.findall(text[pos:end])]
    out = {}

    def walk(module, path):
        for typ, inst in bodies.get(module, ()):
            p = f"{path}/{inst}" if path else inst
            if typ in cell_names:
                out[p] = typ
            elif typ in bodies:
                walk(typ, p)

    walk(top, "")
    return out


def cell_activity(acts: dict[str, tuple[float, float]], cells: dict[str, str],
                  outputs: dict[str, list[str]]) -> dict[str, tuple[float, float]]:
    """Instance path -> (activity, duty) of its output pins (their mean: FAX1 and HAX1 have
    two) from pin_activity's figures; instances without a recorded output are left out."""
    out = {}
    for inst, cell in cells.items():
        vals = [acts[f"{inst}/{o}"] for o in outputs[cell] if f"{inst}/{o}" in acts]
        if vals:
            out[inst] = (sum(v[0] for v in vals) / len(vals), sum(v[1] for v in vals) / len(vals))
    return out


def group_commands(cell_acts: dict[str, tuple[float, float]], digits: int = 2,
                   chunk: int = 2000) -> list[str]:
    """OpenSTA commands giving each group of cells with the same rounded activity and duty
    its power: the global activity set to the group's figures, then `report_power
    -instances` for the group (one row per cell, summed by parse_instance_power). Debian's
    OpenSTA cannot annotate pins: `set_power_activity -pins` fails in its own Tcl (it calls
    an undefined `get_pins_error`), and activities set with `sta::set_power_pin_activity`
    are not used by its power calculation (its debug trace shows the global activity)."""
    groups = defaultdict(list)
    for inst, (a, d) in cell_acts.items():
        groups[(float(f"{a:.{digits}g}"), round(d, 1))].append(inst)
    cmds = []
    for (a, d), insts in sorted(groups.items()):
        cmds.append(f"set_power_activity -global -activity {a:g} -duty {d:g}")
        for k in range(0, len(insts), chunk):
            names = " ".join(insts[k:k + chunk])
            cmds.append(f"report_power -instances [get_cells {{{names}}}] -digits 6")
    return cmds


_ROW = re.compile(r"^\s*([\d.]+e[+-]\d+)\s+([\d.]+e[+-]\d+)\s+([\d.]+e[+-]\d+)\s+"
                  r"([\d.]+e[+-]\d+)\s+(\S+)\s*$", re.M)


def parse_instance_power(text: str) -> dict:
    """Watts summed over the instance rows of `report_power -instances` outputs: internal,
    switching, leakage, total, and the number of instances."""
    keys = ("internal_w", "switching_w", "leakage_w", "total_w")
    out = dict.fromkeys(keys, 0.0)
    n = 0
    for m in _ROW.finditer(text):
        n += 1
        for k, v in zip(keys, m.groups()[:4], strict=True):
            out[k] += float(v)
    return {**out, "instances": n}
