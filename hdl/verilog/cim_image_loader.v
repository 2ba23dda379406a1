// Simulation-only image loader for the chip's harness (hdl/harness.py).
//
// A testbench hands over a whole image in one transfer on a wide port; the loader feeds its
// pixels to the chip's pixel stream, one per cycle. It is hand-written Verilog on purpose:
// all its logic sits in one clocked block, so Verilator never re-evaluates anything that
// reads the 6,000-bit input outside a clock edge (Amaranth would make the capture a
// combinational next-state process, which Verilator runs on every input change).
//
// Protocol: the testbench holds load_valid and load_payload; load_ready is high for one
// cycle once the last pixel has been taken, and the transfer completes at the end of that
// cycle.
module cim_image_loader #(
    parameter integer N = 784,
    parameter integer BITS = 8
) (
    input  wire                  clk,
    input  wire                  load_valid,
    input  wire [N*BITS+31:0]    load_payload,
    output reg                   load_ready,
    output reg                   pix_valid,
    output reg  [BITS-1:0]       pix_data,
    output reg  [31:0]           pix_id,
    input  wire                  pix_ready
);
    reg [N*BITS+31:0] image;
    reg [1:0] state;
    reg [31:0] index;

    localparam [1:0] IDLE = 2'd0, FEED = 2'd1, TAKEN = 2'd2;

    initial begin
        state = IDLE;
        load_ready = 1'b0;
        pix_valid = 1'b0;
        pix_data = {BITS{1'b0}};
        pix_id = 32'd0;
        index = 32'd0;
    end

    always @(posedge clk) begin
        load_ready <= 1'b0;
        case (state)
            IDLE:
                if (load_valid) begin
                    image <= load_payload;
                    index <= 32'd0;
                    state <= FEED;
                end
            FEED:
                if (!pix_valid || pix_ready) begin
                    if (index < N) begin
                        pix_data <= image[index*BITS +: BITS];
                        pix_id <= image[N*BITS +: 32];
                        pix_valid <= 1'b1;
                        index <= index + 32'd1;
                    end else begin
                        pix_valid <= 1'b0;
                        load_ready <= 1'b1;
                        state <= TAKEN;
                    end
                end
            default:
                state <= IDLE;
        endcase
    end
endmodule
