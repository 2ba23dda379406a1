// Black-box view of the crossbar macro for ASIC flows: the same module name and ports as
// cim_crossbar.v, no contents. Synthesis then reports what the digital periphery costs.
(* blackbox *)
module cim_crossbar #(
    parameter integer ROWS = 128,
    parameter integer COLS = 16,
    parameter integer CODE_BITS = 8,
    parameter integer MAX_LINES = 24,
    parameter integer ROW_BITS = 7,
    parameter integer COL_BITS = 4,
    parameter integer LINE_BITS = 5,
    parameter integer SLOT_BITS = 3,
    parameter integer CUR_BITS = 12,
    parameter integer READ_NOISE = 0,
    parameter [31:0] PE_SEED = 32'd0,
    parameter [ROWS*COLS*CODE_BITS-1:0] INIT = 0
) (
    input  wire                          clk,
    input  wire                          rst,
    input  wire                          sample,
    input  wire [COLS-1:0]               bits,
    input  wire [ROW_BITS-1:0]           row0,
    input  wire [LINE_BITS-1:0]          n_lines,
    input  wire [SLOT_BITS-1:0]          slot,
    input  wire [31:0]                   nonce,
    output wire [MAX_LINES*CUR_BITS-1:0] currents,
    input  wire                          prog_en,
    input  wire [ROW_BITS-1:0]           prog_row,
    input  wire [COL_BITS-1:0]           prog_col,
    input  wire [CODE_BITS-1:0]          prog_code
);
endmodule
