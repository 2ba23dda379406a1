"""The DP16KD and MULT18X18D models of testbench/ecp5_models.py against the RTL yosys maps
onto them: memories and multipliers of the shapes the chip uses and around them are written
as behavioural Verilog, mapped by `synth_ecp5` (the post-synthesis check's script), and the
RTL and the mapped netlist (with yosys' ECP5 cell models and ours) run side by side on Icarus
with the same random stimulus; every output is compared on every cycle.

A model that reads the INITVAL order, an address bit, a byte enable, a write mode or an
operand's sign differently from yosys' mapping gives a different word here. The netlist must
hold the cells under test (counted in yosys' statistics), so the check cannot pass by
yosys choosing logic instead."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import numpy as np
import pytest

from cim_flows.synth import run_tool
from testbench import ecp5_models, post_synth

pytestmark = pytest.mark.skipif(shutil.which("iverilog") is None,
                                reason="needs Icarus Verilog (apt-get install iverilog)")

# (name, depth, width, write granularity, kind): "sdp" one write port and one synchronous
# read port with a clock enable; "2rd" two read ports (yosys copies the memory, as for the
# crossbar's lanes); "rf"/"wf" one port that reads and writes (read first / write first).
MEMORIES = [
    ("x1", 16384, 1, 1, "sdp"), ("x2", 8192, 2, 2, "sdp"), ("x4", 4096, 4, 4, "sdp"),
    ("x8", 2048, 8, 8, "sdp"), ("x9", 2048, 9, 9, "sdp"), ("x16", 1024, 16, 8, "sdp"),
    ("x36", 512, 36, 9, "sdp"), ("xbar", 128, 128, 4, "2rd"), ("cells", 64, 48, 4, "2rd"),
    ("rf18", 1024, 18, 9, "rf"), ("wf16", 1024, 16, 16, "wf"), ("rf4", 4096, 4, 4, "rf"),
]
# (name, width of a, signed a, width of b, signed b)
MULTIPLIERS = [("s18s18", 18, True, 18, True), ("u17u17", 17, False, 17, False),
               ("u18u18", 18, False, 18, False), ("s12u10", 12, True, 10, False),
               ("u24u20", 24, False, 20, False), ("u16s9", 16, False, 9, True)]


def memory(name, depth, width, gran, kind, rng, work) -> tuple[str, list[str], list[str]]:
    """A behavioural memory, fully initialised (random words in `work`/NAME.hex, which
    yosys and Icarus both read from their working directory); its module text, inputs and
    outputs."""
    abits = (depth - 1).bit_length()
    nbe = width // gran
    words = [int.from_bytes(rng.bytes(-(-width // 8)), "little") % 2 ** width
             for _ in range(depth)]
    (work / f"{name}.hex").write_text("".join(f"{v:x}\n" for v in words))
    style = '(* ram_style = "block" *) '
    ins = [f"{name}_wa:{abits}", f"{name}_wd:{width}", f"{name}_we:{nbe}",
           f"{name}_ra:{abits}", f"{name}_re:1"]
    outs = [f"{name}_q:{width}"]
    writes = "\n".join(f"      if (we[{b}]) m[wa][{b * gran} +: {gran}] <= "
                       f"wd[{b * gran} +: {gran}];" for b in range(nbe))
    if kind == "sdp":
        body = f"""  always @(posedge clk) begin
{writes}
    if (re) q <= m[ra];
  end"""
    elif kind == "2rd":
        ins.append(f"{name}_rb:{abits}")
        outs.append(f"{name}_q2:{width}")
        body = f"""  always @(posedge clk) begin
{writes}
    q <= m[ra];
    q2 <= m[rb];
  end"""
    else:     # one address for both: wa (ra, re unused but kept for the port list)
        rd = "m[wa]" if kind == "rf" else "(|we ? wd : m[wa])"
        body = f"""  always @(posedge clk) begin
    if (re) q <= {rd};
{writes}
  end"""
    decl = ", ".join(f"input [{int(w) - 1}:0] {n.split('_', 1)[1]}"
                     for n, w in (p.split(":") for p in ins))
    odecl = ", ".join(f"output reg [{int(w) - 1}:0] {n.split('_', 1)[1]} = 0"
                      for n, w in (p.split(":") for p in outs))
    text = f"""module {name}(input clk, {decl}, {odecl});
  {style}reg [{width - 1}:0] m [0:{depth - 1}];
  initial $readmemh("{name}.hex", m);
{body}
endmodule
"""
    return text, ins, outs


def multiplier(name, wa, sa, wb, sb) -> tuple[str, list[str], list[str]]:
    a = "$signed(a)" if sa else "$signed({1'b0, a})"
    b = "$signed(b)" if sb else "$signed({1'b0, b})"
    text = (f"module {name}(input clk, input [{wa - 1}:0] a, input [{wb - 1}:0] b, "
            f"output [{wa + wb - 1}:0] p);\n  assign p = {a} * {b};\nendmodule\n")
    return text, [f"{name}_a:{wa}", f"{name}_b:{wb}"], [f"{name}_p:{wa + wb}"]


def design(rng, work) -> tuple[str, list, list]:
    """All blocks under one top `dut` (flattened by synth_ecp5 like the chip)."""
    mods, ins, outs, inst = [], [], [], []
    for spec in MEMORIES:
        text, i, o = memory(*spec, rng, work)
        mods.append(text)
        ins += i
        outs += o
    for spec in MULTIPLIERS:
        text, i, o = multiplier(*spec)
        mods.append(text)
        ins += i
        outs += o
    for block in [s[0] for s in MEMORIES + MULTIPLIERS]:
        conns = ", ".join(f".{p.split(':')[0].split('_', 1)[1]}({p.split(':')[0]})"
                          for p in ins + outs if p.startswith(block + "_"))
        inst.append(f"  {block} u_{block}(.clk(clk), {conns});")
    ports = ", ".join([f"input [{int(p.split(':')[1]) - 1}:0] {p.split(':')[0]}" for p in ins]
                      + [f"output [{int(p.split(':')[1]) - 1}:0] {p.split(':')[0]}"
                         for p in outs])
    top = f"module dut(input clk, {ports});\n" + "\n".join(inst) + "\nendmodule\n"
    return "".join(mods) + top, ins, outs


def bench(ins, outs, cycles: int) -> str:
    """Both tops on the same random inputs, changed on the falling edge; every output
    compared before each rising edge (so registered and combinational outputs alike)."""
    decl = [f"  reg [{int(w) - 1}:0] {n};" for n, w in (p.split(":") for p in ins)]
    decl += [f"  wire [{int(w) - 1}:0] {n}_r, {n}_g;" for n, w in (p.split(":") for p in outs)]
    conn = ", ".join(f".{p.split(':')[0]}({p.split(':')[0]})" for p in ins)
    conn_r = ", ".join(f".{p.split(':')[0]}({p.split(':')[0]}_r)" for p in outs)
    conn_g = ", ".join(f".{p.split(':')[0]}({p.split(':')[0]}_g)" for p in outs)
    # $random gives 32 bits; wider inputs are filled from several draws.
    drive = "\n".join(f"      {n} = {{{', '.join(['$random(seed)'] * (-(-int(w) // 32)))}}};"
                      for n, w in (p.split(":") for p in ins))
    check = "\n".join(
        f"      if ({n}_r !== {n}_g) begin errors = errors + 1; "
        f"if (errors < 10) $display(\"MISMATCH cycle %0d {n}: rtl %h netlist %h\", c, "
        f"{n}_r, {n}_g); end\n"
        f"      if ({n}_r !== prev_{n}) changes = changes + 1;\n"
        f"      prev_{n} = {n}_r;" for n, _ in (p.split(":") for p in outs))
    prev = [f"  reg [{int(w) - 1}:0] prev_{n};" for n, w in (p.split(":") for p in outs)]
    return f"""`timescale 1ns/1ps
module tb;
  reg clk = 0;
  integer seed = 1, c, errors = 0, changes = 0;
{chr(10).join(decl + prev)}
  dut rtl(.clk(clk), {conn}, {conn_r});
  dut_gl gl(.clk(clk), {conn}, {conn_g});
  initial begin
    for (c = 0; c < {cycles}; c = c + 1) begin
{drive}
      #5;
{check}
      clk = 1; #5; clk = 0;
    end
    $display("DONE errors %0d changes %0d", errors, changes);
    $finish;
  end
endmodule
"""


@pytest.fixture(scope="module")
def mapped(tmp_path_factory):
    """The blocks' RTL and their synth_ecp5 netlist (top renamed dut_gl)."""
    work = tmp_path_factory.mktemp("ecp5_models")
    text, ins, outs = design(np.random.default_rng(3), work)
    (work / "rtl.v").write_text(text)
    (work / "map.ys").write_text(
        "read_verilog rtl.v\nsynth_ecp5 -top dut\nrename dut dut_gl\nhierarchy -top dut_gl\n"
        "tee -q -o stat.json stat -json\nwrite_verilog -noattr gl.v\n")
    run_tool("yosys", ["-q", "-l", "yosys.log", "-s", "map.ys"], work, work / "yosys.log",
             "ecp5 models", progress=False)
    (work / "models.v").write_text(ecp5_models.source())
    return work, ins, outs


def run_icarus(work, ins, outs, cycles=2000) -> str:
    (work / "tb.v").write_text(bench(ins, outs, cycles))
    # yosys' cell models, less TRELLIS_COMB (a cell of nextpnr's packer, never in
    # synth_ecp5's output), whose elaboration-time $error Icarus does not parse.
    lib = post_synth.cell_library()
    common = re.sub(r"module TRELLIS_COMB\(.*?endmodule", "",
                    (lib / "common_sim.vh").read_text(), flags=re.S)
    cells = work / "cells.v"
    cells.write_text(common + (lib / "ccu2c_sim.vh").read_text())
    subprocess.run(["iverilog", "-g2012", "-o", str(work / "sim"), f"-I{lib}", "-s", "tb",
                    str(work / "tb.v"), str(work / "rtl.v"), str(work / "gl.v"), str(cells),
                    str(work / "models.v")], check=True, capture_output=True, text=True)
    return subprocess.run(["vvp", "-n", str(work / "sim")], check=True, capture_output=True,
                          text=True, cwd=work).stdout


def test_models_match_the_rtl_yosys_maps(mapped):
    work, ins, outs = mapped
    stat = json.loads((work / "stat.json").read_text())["design"]["num_cells_by_type"]
    # Every memory in block RAM (the crossbar-shaped ones in several), every multiplier on
    # at least one DSP: the comparison below is of the models, not of yosys' logic.
    assert stat.get("DP16KD", 0) >= len(MEMORIES) + 2, stat
    assert stat.get("MULT18X18D", 0) >= len(MULTIPLIERS), stat
    out = run_icarus(work, ins, outs)
    last = out.strip().splitlines()[-1]
    assert last.startswith("DONE errors 0 "), out[-2000:]
    # The outputs moved (thousands of changes): the RTL side was not stuck.
    assert int(last.split()[-1]) > 1000, last
