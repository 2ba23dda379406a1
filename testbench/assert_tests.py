"""cocotb test of a DAC driver's generated Verilog with its assertions on: requests in, its
slots taken under back-pressure (the output stalls for several cycles at a time). The pytest
runner (tests/testbench/test_assertions.py) builds a correct driver, which passes, and one
that withdraws `valid` while stalled, whose assertion must stop the simulation and fail this
test."""

from __future__ import annotations

import os

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge


@cocotb.test()
async def slots_under_back_pressure(dut):
    requests = int(os.environ["CIM_REQUESTS"])
    slots = int(os.environ["CIM_SLOTS"])
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    dut.i__valid.value = 0
    dut.o__ready.value = 0
    for _ in range(2):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    sent = taken = 0
    for cycle in range(requests * slots * 20):
        dut.i__valid.value = int(sent < requests)
        dut.i__payload.value = (0b1001 * (sent + 1)) & 0xF   # x[0], x[1]: the low bits
        dut.o__ready.value = int(cycle % 7 == 6)            # stalled 6 cycles in 7
        await ReadOnly()
        took_in = bool(dut.i__valid.value) and bool(dut.i__ready.value)
        took_out = bool(dut.o__valid.value) and bool(dut.o__ready.value)
        await RisingEdge(dut.clk)
        sent += took_in
        taken += took_out
        if taken == requests * slots:
            break
    assert taken == requests * slots, f"{taken} slots of {requests * slots} came out"
