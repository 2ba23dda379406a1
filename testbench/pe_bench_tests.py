"""Free-running PE throughput on Verilator: the stream sides are held valid/ready, so Python is
not woken per cycle and the figure is the simulator's own speed."""

import json
import os
import time

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, Timer

from hdl.params import PEParams
from testbench import pe_model


@cocotb.test()
async def free_running_throughput(dut):
    p = PEParams(max_lines=24, read_noise=int(os.environ.get("CIM_BENCH_NOISE", "0")))
    cycles = int(os.environ.get("CIM_BENCH_CYCLES", "2000000"))
    Clock(dut.clk, 10, unit="ns").start()
    dut.rst.value = 1
    await ClockCycles(dut.clk, 2)
    dut.rst.value = 0
    req = pe_model.Request(tuple(range(1, p.cols + 1)), 0, p.max_lines, 3000, 12345, True, True)
    dut.i__payload.value = pe_model.pack_request(p, req)
    dut.i__valid.value = 1
    dut.o__ready.value = 1
    t0 = time.perf_counter()
    await Timer(10 * cycles, unit="ns")
    dt = time.perf_counter() - t0
    slots = int(dut.reads.value) * p.input_bits
    figures = dict(cycles_per_s=cycles / dt, slots_per_s=slots / dt, seconds=dt)
    dut._log.info(f"{figures}")
    with open("bench.json", "w") as fh:
        json.dump(figures, fh)
