"""Cell models generated from the Liberty file (cim_flows.asic_cells) against the OSU018
package's own cell Verilog, cell by cell on Icarus: every input combination of each
combinational cell, random input sequences (one input changing at a time, so every clock,
clear and preset edge happens alone and in combination with every data value) for the
flip-flops and the latch. Four-state: a defined output of the package's model must be
matched exactly (X only before a flip-flop has been written)."""

from __future__ import annotations

import itertools
import shutil
import subprocess

import numpy as np
import pytest

from cim_flows import asic, asic_cells

LIB = asic.OSU018_DIR / asic.LIBERTY
MODELS = asic.OSU018_DIR / asic.CELL_MODELS
needs_cells = pytest.mark.skipif(
    not LIB.is_file() or not MODELS.is_file() or not shutil.which("iverilog"),
    reason="qflow-tech-osu018 and iverilog (apt) are needed")


@pytest.mark.parametrize("expr, table", [
    # (A, B, C) -> value, written out by hand from the Liberty reference's precedence:
    # inversion, then XOR, then AND (also by juxtaposition), then OR.
    ("A B+C", lambda a, b, c: (a & b) | c),
    ("A^B C", lambda a, b, c: (a ^ b) & c),
    ("A+B^C", lambda a, b, c: a | (b ^ c)),
    ("!A B", lambda a, b, c: (1 - a) & b),
    ("(A+B)' C", lambda a, b, c: (1 - (a | b)) & c),
    ("A*B|C&1", lambda a, b, c: (a & b) | c),
    ("!(A (B+0))", lambda a, b, c: 1 - (a & b)),
    ("A' B'", lambda a, b, c: (1 - a) & (1 - b)),
])
def test_function_precedence(expr, table):
    v = asic_cells.function_to_verilog(expr)
    for a, b, c in itertools.product((0, 1), repeat=3):
        # The Verilog expression evaluated on 0/1 (~x is 1-x on one bit).
        py = (v.replace("1'b", "").replace("~", "1-").replace("A", str(a))
              .replace("B", str(b)).replace("C", str(c)))
        assert eval(py, {"__builtins__": {}}) == table(a, b, c), (expr, v, a, b, c)  # noqa: S307


@pytest.mark.parametrize("bad", ["A +", "(A B", "A $ B", "A B)"])
def test_function_rejects_bad_syntax(bad):
    with pytest.raises(asic_cells.LibertyError):
        asic_cells.function_to_verilog(bad)


def _flips(rng, cell, ins: list[str], n: int) -> list[int]:
    """n random input indices to toggle one at a time, all inputs starting at 0. One case is
    left out: releasing clear or preset while the other is still active. An edge-triggered
    model (every synthesizable flip-flop with asynchronous clear and preset) keeps the
    `clear_preset_var1` value until its next event, the package's UDP follows the one still
    active; no netlist of this flow has such a flip-flop (dfflibmap maps to DFFPOSX1)."""
    both = [g for g in cell.children("ff") if "clear" in g.attrs and "preset" in g.attrs]
    pins = []      # (index, active value) of the clear and preset pins
    for g in both:
        for key in ("clear", "preset"):
            event, _ = asic_cells._edge(g.attrs[key])
            edge, pin = event.split()
            pins.append((ins.index(pin), 0 if edge == "negedge" else 1))
    state, out = [0] * len(ins), []
    while len(out) < n:
        k = int(rng.integers(len(ins)))
        active = [i for i, a in pins if state[i] == a]
        if k in active and len(active) == 2:
            continue
        state[k] ^= 1
        out.append(k)
    return out


def _testbench(lib) -> tuple[str, dict]:
    """A Verilog module driving each cell's package model and generated model (prefix
    `gen_`) with the same inputs and printing every defined output that differs."""
    rng = np.random.default_rng(7)
    lines, steps = ["module cellcheck;"], {}
    body = []
    for cell in asic_cells.cells(lib):
        name = cell.args[0]
        pins = cell.children("pin")
        ins = [p.args[0] for p in pins if p.attrs["direction"] == "input"]
        outs = [p.args[0] for p in pins if p.attrs["direction"] == "output"]
        lines.append(f"  reg [{len(ins) - 1}:0] i_{name} = 0;")
        for o in outs:
            lines.append(f"  wire p_{name}_{o}, g_{name}_{o};")
        conn = [f".{n}(i_{name}[{k}])" for k, n in enumerate(ins)]
        for tag, mod in (("p", name), ("g", "gen_" + name)):
            c = conn + [f".{o}({tag}_{name}_{o})" for o in outs]
            lines.append(f"  {mod} {tag}_{name} ({', '.join(c)});")
        check = " ".join(
            f'if (p_{name}_{o} !== 1\'bx && p_{name}_{o} !== g_{name}_{o}) '
            f'$display("MISMATCH {name}.{o} in=%b pkg=%b gen=%b", i_{name}, p_{name}_{o}, '
            f'g_{name}_{o}); if (p_{name}_{o} !== 1\'bx) n_{name} = n_{name} + 1;' for o in outs)
        lines.append(f"  integer n_{name} = 0;")
        sequential = bool(cell.children("ff") or cell.children("latch"))
        if sequential:
            flips = _flips(rng, cell, ins, 400)
            seq = [f"i_{name}[{k}] = ~i_{name}[{k}]; #1; {check}" for k in flips]
        else:
            seq = [f"i_{name} = {len(ins)}'d{v}; #1; {check}" for v in range(2 ** len(ins))]
        steps[name] = len(seq)
        body += seq
        body.append(f'$display("CHECKED {name} %0d", n_{name});')
    lines += ["  initial begin", *("    " + s for s in body), "    $finish;", "  end",
              "endmodule"]
    return "\n".join(lines) + "\n", steps


@needs_cells
def test_generated_models_match_the_package_models(tmp_path):
    lib = asic_cells.parse_liberty(LIB.read_text())
    gen = asic_cells.write_models(LIB, tmp_path / "gen.v", prefix="gen_")
    tb, steps = _testbench(lib)
    (tmp_path / "tb.v").write_text(tb)
    subprocess.run(["iverilog", "-g2005", "-o", tmp_path / "sim", "-s", "cellcheck",
                    tmp_path / "tb.v", gen, MODELS], check=True, capture_output=True)
    out = subprocess.run(["vvp", "-n", tmp_path / "sim"], check=True, capture_output=True,
                         text=True).stdout
    assert "MISMATCH" not in out, out[:2000]
    checked = dict(ln.split()[1:] for ln in out.splitlines() if ln.startswith("CHECKED"))
    # Every cell with logic was compared, and each on (nearly) all of its steps: the
    # flip-flops' outputs are X only until their first write.
    assert set(checked) == set(steps) and len(steps) >= 30
    for name, n in checked.items():
        outs = len([p for p in lib.children("cell") if p.args[0] == name][0].children("pin"))
        assert int(n) >= steps[name] // 2, (name, n, steps[name], outs)
