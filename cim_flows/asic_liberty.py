"""A Liberty view of the crossbar macro, so that the ASIC tools treat it as a hard macro.

The crossbar is analog (1T1R array, bit-line drivers, source-line multiplexers, sample-and-hold)
and has no standard-cell netlist; `hdl/verilog/cim_crossbar_blackbox.v` gives synthesis its
ports only. Static timing and the area table need more: this module writes one Liberty cell,
`cim_crossbar`, with the black box's pins (widths from the PE parameters) and the timing the
RTL contract implies (docs/pe.md, "Timing"):

* every input (`sample`, `bits`, `row0`, `n_lines`, `slot`, `nonce`, `prog_*`, `rst`) is taken
  at the rising clock edge: a setup and a hold constraint against `clk`;
* the line currents (`currents`) change only after a rising edge, `read_ns` later: the
  sample-and-hold settles within the cycle, and the ADC bank takes them at the next edge.

Every number here is an assumption of ours, listed in `MacroTiming` / `macro_area_um2` and in
docs/asic.md; none comes from a measured macro.
"""

from __future__ import annotations

from dataclasses import dataclass

# 0.18 um (OSU018) over the 130 nm of the energy model's area figures (the paper's process).
NODE_UM = 0.18
WIRE_LOAD = "cim_osu018_estimate"


@dataclass(frozen=True)
class MacroTiming:
    """Timing of the macro's digital interface, in ns and pF (the OSU018 library's units)."""

    # Inputs are latched like a standard flip-flop's D pin: the OSU018 DFFPOSX1 needs about
    # 0.19 ns of setup and no hold (6e-8 ns) at its typical corner.
    setup_ns: float = 0.20
    hold_ns: float = 0.0
    # Clock edge to valid line currents: the sample-and-hold output and its buffer settle. An
    # assumption; the RTL contract only needs it below one clock period minus the ADC's setup.
    read_ns: float = 2.0
    output_transition_ns: float = 0.20
    # Each digital input drives one buffer inside the macro: the OSU018 BUFX2's A pin.
    input_cap_pf: float = 0.0093
    clock_cap_pf: float = 0.028          # one DFFPOSX1 clock pin (the macro's input latch)
    # The wire load model of the whole netlist (STA before placement), see liberty_text.
    wire_cap_pf_per_um: float = 0.0002
    wire_res_kohm_per_um: float = 0.0003
    wire_um_per_fanout: float = 15.0     # about one and a half 10-um cell rows per pin


def macro_area_um2(rows: int, cols: int, node_um: float = NODE_UM) -> dict:
    """The macro's area from the energy model's per-component areas (cim_flows.energy
    .AreaParams, 130 nm: 1T1R cell, bit-line driver, source-line MUX and sample-and-hold),
    scaled by (node / 130 nm)^2 to the standard cells' node. The ADCs are not in the macro:
    the ADC bank is its own module (digital in this RTL)."""
    from .energy import AreaParams
    a = AreaParams()
    parts = {"array": rows * cols * a.cell_um2, "drivers": cols * a.driver_um2,
             "mux": rows * a.mux_um2, "sample_hold": rows * a.sample_hold_um2}
    scale = (node_um / a.feature_um) ** 2
    return {"parts_um2_130nm": parts, "scale": scale,
            "area_um2": round(sum(parts.values()) * scale, 1)}


def pins(p) -> list[tuple[str, str, int]]:
    """(name, direction, width) of `cim_crossbar`, as hdl/verilog/cim_crossbar_blackbox.v
    declares them for the PE parameters `p` (hdl.params.PEParams)."""
    return [("clk", "input", 1), ("rst", "input", 1), ("sample", "input", 1),
            ("bits", "input", p.cols), ("row0", "input", p.row_bits),
            ("n_lines", "input", p.line_bits), ("slot", "input", p.slot_bits),
            ("nonce", "input", 32), ("currents", "output", p.max_lines * p.current_bits),
            ("prog_en", "input", 1), ("prog_row", "input", p.row_bits),
            ("prog_col", "input", p.col_bits), ("prog_code", "input", p.code_bits)]


def _scalar(name: str, value: float, ind: str) -> list[str]:
    return [f"{ind}{name} (scalar) {{", f'{ind}  values ("{value:g}");', f"{ind}}}"]


def _pin_body(direction: str, t: MacroTiming, ind: str) -> list[str]:
    out = [f"{ind}direction : {direction};"]
    if direction == "input":
        out.append(f"{ind}capacitance : {t.input_cap_pf:g};")
        for kind, v in (("setup_rising", t.setup_ns), ("hold_rising", t.hold_ns)):
            out += [f"{ind}timing () {{", f'{ind}  related_pin : "clk";',
                    f"{ind}  timing_type : {kind};",
                    *_scalar("rise_constraint", v, ind + "  "),
                    *_scalar("fall_constraint", v, ind + "  "), f"{ind}}}"]
    else:
        out += [f"{ind}timing () {{", f'{ind}  related_pin : "clk";',
                f"{ind}  timing_type : rising_edge;",
                *_scalar("cell_rise", t.read_ns, ind + "  "),
                *_scalar("cell_fall", t.read_ns, ind + "  "),
                *_scalar("rise_transition", t.output_transition_ns, ind + "  "),
                *_scalar("fall_transition", t.output_transition_ns, ind + "  "),
                f"{ind}}}"]
    return out


def liberty_text(p, timing: MacroTiming = MacroTiming(), node_um: float = NODE_UM) -> str:
    """The Liberty library `cim_macros` with the one cell `cim_crossbar` for PE parameters
    `p`. Units and thresholds match the OSU018 library, so OpenSTA can mix the two."""
    area = macro_area_um2(p.rows, p.cols, node_um)
    lines = [
        f"/* cim_crossbar hard macro for a {p.rows} x {p.cols} PE: {p.max_lines} lines of",
        f"   {p.current_bits} bits. Generated by cim_flows.asic_liberty from the PE parameters;",
        f"   area {area['area_um2']:g} um^2 = energy-model areas at 130 nm x "
        f"{area['scale']:.3f}. */",
        "library (cim_macros) {",
        "  delay_model : table_lookup;",
        '  time_unit : "1ns";', '  voltage_unit : "1V";', '  current_unit : "1uA";',
        '  pulling_resistance_unit : "1kohm";', '  leakage_power_unit : "1nW";',
        "  capacitive_load_unit (1,pf);",
        *[f"  {k}_pct_{e} : {v};" for k, v in (("slew_upper_threshold", 80),
                                               ("slew_lower_threshold", 20),
                                               ("input_threshold", 50),
                                               ("output_threshold", 50))
          for e in ("rise", "fall")],
        "  nom_process : 1;", "  nom_voltage : 1.8;", "  nom_temperature : 25;",
        "  operating_conditions (typical) { process : 1; voltage : 1.8; temperature : 25; }",
        "  default_operating_conditions : typical;",
        # Wires, before placement: each net gets `wire_um_per_fanout` um of metal per pin it
        # drives, at OSU018-like metal-2 figures (0.2 fF/um, 0.3 ohm/um). Without a wire load
        # model (the OSU018 Liberty has none) STA would see pin capacitances only.
        f'  wire_load ("{WIRE_LOAD}") {{',
        f"    capacitance : {timing.wire_cap_pf_per_um:g};",
        f"    resistance : {timing.wire_res_kohm_per_um:g};",
        f"    slope : {timing.wire_um_per_fanout:g};",
        *[f"    fanout_length ({n}, {n * timing.wire_um_per_fanout:g});" for n in (1, 2, 4, 8)],
        "  }",
    ]
    buses = sorted({w for _, _, w in pins(p) if w > 1})
    for w in buses:
        lines += [f"  type (bus{w}) {{", "    base_type : array;", "    data_type : bit;",
                  f"    bit_width : {w};", f"    bit_from : {w - 1};", "    bit_to : 0;",
                  "    downto : true;", "  }"]
    lines += ["  cell (cim_crossbar) {", f"    area : {area['area_um2']:g};",
              "    dont_touch : true;", "    dont_use : true;",
              "    interface_timing : true;",
              "    pin (clk) {", "      direction : input;", "      clock : true;",
              f"      capacitance : {timing.clock_cap_pf:g};", "    }"]
    for name, direction, width in pins(p):
        if name == "clk":
            continue
        if width > 1:
            lines += [f"    bus ({name}) {{", f"      bus_type : bus{width};",
                      *_pin_body(direction, timing, "      "), "    }"]
        else:
            lines += [f"    pin ({name}) {{", *_pin_body(direction, timing, "      "), "    }"]
    lines += ["  }", "}", ""]
    return "\n".join(lines)
