// Behavioral model of one 1T1R crossbar array (one PE), for simulation.
//
// It holds an integer conductance code per cell (docs/datapath.md section 1) and, on a
// `sample` strobe, returns the integer current of each selected source line:
//     current[j] = sum over bit lines c with bits[c] = 1 of code[row0 + j][c],  j < n_lines
// plus the optional seeded read noise of section 6. Lines j >= n_lines read 0.
//
// Why hand-written Verilog: an Amaranth description becomes continuous assignments that
// the simulator evaluates every cycle for every line; here the sums sit inside `if (sample)` of
// a clocked block, so the simulator only computes them on read slots and only for the
// selected lines (about 20x faster for eight PEs). hdl/crossbar.py has the same function in
// Amaranth, for amaranth.sim and for the FPGA emulation; tests hold the two bit-exact.
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
    output reg  [MAX_LINES*CUR_BITS-1:0] currents,
    input  wire                          prog_en,
    input  wire [ROW_BITS-1:0]           prog_row,
    input  wire [COL_BITS-1:0]           prog_col,
    input  wire [CODE_BITS-1:0]          prog_code
);
    reg [CODE_BITS-1:0] g [0:ROWS*COLS-1];

    // Temporaries of the read computation (blocking assignments inside the clocked block are
    // deliberate: they are variables of a loop, not registers).
    integer r, c, j;
    reg [31:0] row;
    reg [31:0] sum;
    reg [31:0] h;
    reg signed [63:0] s, t;

    function [31:0] mix32(input [31:0] x);
        reg [31:0] y;
        begin
            y = x ^ (x >> 16);
            y = y * 32'h7feb352d;
            y = y ^ (y >> 15);
            y = y * 32'h846ca68b;
            mix32 = y ^ (y >> 16);
        end
    endfunction

    function [31:0] cell_index(input [31:0] rr, input [31:0] cc);
        cell_index = rr * COLS + cc;
    endfunction

    initial begin
        for (r = 0; r < ROWS * COLS; r = r + 1)
            g[r] = INIT[r*CODE_BITS +: CODE_BITS];
        currents = {MAX_LINES*CUR_BITS{1'b0}};
    end

    always @(posedge clk) begin
        if (prog_en)
            g[cell_index({{(32-ROW_BITS){1'b0}}, prog_row}, {{(32-COL_BITS){1'b0}}, prog_col})]
                <= prog_code;
        // Reset clears the sampled currents; the cells are non-volatile and keep their codes.
        if (rst)
            currents <= {MAX_LINES*CUR_BITS{1'b0}};
        else if (sample) begin
            for (j = 0; j < MAX_LINES; j = j + 1) begin
                sum = 32'd0;
                row = {{(32-ROW_BITS){1'b0}}, row0} + j;
                if (j < {{(32-LINE_BITS){1'b0}}, n_lines}) begin
                    for (c = 0; c < COLS; c = c + 1)
                        if (bits[c])
                            sum = sum + {{(32-CODE_BITS){1'b0}}, g[cell_index(row, c)]};
                    if (READ_NOISE != 0) begin
                        h = mix32(nonce ^ mix32(PE_SEED ^ {{(24-SLOT_BITS){1'b0}}, slot,
                                                          row[7:0]}));
                        s = {56'd0, h[7:0]} + {56'd0, h[15:8]} + {56'd0, h[23:16]}
                            + {56'd0, h[31:24]} - 64'sd510;
                        t = {32'd0, sum};
                        t = t + ((t * s * READ_NOISE) >>> 22);
                        sum = (t < 0) ? 32'd0 : t[31:0];
                    end
                end
                currents[j*CUR_BITS +: CUR_BITS] <= sum[CUR_BITS-1:0];
            end
        end
    end
endmodule
