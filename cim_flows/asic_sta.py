"""Static timing of a mapped netlist with OpenSTA (`sta`, Debian's opensta) at the clock:
worst slack, WNS/TNS, Fmax, the worst path into every module's own flip-flops and the critical
path cell by cell with its modules (the ASIC flow's step 2, cim_flows.asic)."""

from __future__ import annotations

import re
from pathlib import Path

from . import asic_liberty
from .asic_tools import LIBERTY, MACRO_LIBERTY, AsicError, need_tool, run_sta
from .synth import _say


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
    need_tool("sta")
    (work / "sta.tcl").write_text(sta_script(top, clock_mhz, instances))
    _say(progress, f"asic: OpenSTA at {clock_mhz:g} MHz")
    log, seconds = run_sta(work, "sta.tcl", "timing")
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
