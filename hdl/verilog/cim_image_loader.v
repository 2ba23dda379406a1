// Simulation-only image loader for the chip's harness (hdl/harness.py).
//
// A testbench hands over an image in a few wide beats; the loader then feeds its pixels to the
// chip's pixel stream, one per cycle. It is hand-written Verilog on purpose: all its logic
// sits in one clocked block, so Verilator never re-evaluates anything that reads the wide
// input outside a clock edge (Amaranth would make the capture a combinational next-state
// process, which Verilator runs on every input change), and the beats are narrow enough that
// copying the input port costs little.
//
// Protocol: while load_ready is high the loader takes one beat per cycle (load_valid high at a
// clock edge); beat b carries pixels [b*PER_BEAT, (b+1)*PER_BEAT) and the image's tag (ID_BITS
// bits: the image id, and above it the label of a chip with an update engine). After the last
// beat it feeds the pixels, and raises load_ready again when it has fed them all.
//
// The image is held as an array of beats, not one wide vector: a write into a wide vector at a
// variable offset makes Verilator copy all of it into a shadow and back on every clock edge
// (7% of the batch regression's simulation time), an array element only when it is written.
module cim_image_loader #(
    parameter integer N = 784,
    parameter integer BITS = 8,
    parameter integer PER_BEAT = 64,
    parameter integer ID_BITS = 32
) (
    input  wire                       clk,
    input  wire                       load_valid,
    input  wire [PER_BEAT*BITS+ID_BITS-1:0] load_payload,
    output reg                        load_ready,
    output reg                        pix_valid,
    output reg  [BITS-1:0]            pix_data,
    output reg  [ID_BITS-1:0]         pix_id,
    input  wire                       pix_ready
);
    localparam integer BEATS = (N + PER_BEAT - 1) / PER_BEAT;

    reg [PER_BEAT*BITS-1:0] image [0:BEATS-1];
    reg [ID_BITS-1:0] image_id;
    reg [31:0] beat;
    reg [31:0] index;

    initial begin
        load_ready = 1'b1;
        pix_valid = 1'b0;
        pix_data = {BITS{1'b0}};
        pix_id = {ID_BITS{1'b0}};
        beat = 32'd0;
        index = 32'd0;
        image_id = {ID_BITS{1'b0}};
    end

    always @(posedge clk) begin
        if (load_ready) begin
            if (load_valid) begin
                image[beat] <= load_payload[PER_BEAT*BITS-1:0];
                image_id <= load_payload[PER_BEAT*BITS +: ID_BITS];
                if (beat == BEATS - 1) begin
                    beat <= 32'd0;
                    index <= 32'd0;
                    load_ready <= 1'b0;
                end else
                    beat <= beat + 32'd1;
            end
        end else if (!pix_valid || pix_ready) begin
            if (index < N) begin
                pix_data <= image[index / PER_BEAT][(index % PER_BEAT)*BITS +: BITS];
                pix_id <= image_id;
                pix_valid <= 1'b1;
                index <= index + 32'd1;
            end else begin
                pix_valid <= 1'b0;
                load_ready <= 1'b1;
            end
        end
    end
endmodule
