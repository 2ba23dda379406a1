"""The verification layer: the Verilator runner, stream drivers and monitors, scoreboards, the
cocotb testbenches (run inside the simulator, not by pytest) and the chip's public API
(`testbench.chip_sim`: simulate, locate) that the flows call."""
