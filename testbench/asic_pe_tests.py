"""cocotb tests of a PE's mapped netlist (OSU018 standard cells), against the golden model.

The netlist comes from `cim asic` (cim_flows.asic): the periphery as standard-cell instances,
simulated with the library's own Verilog cell models, and the crossbar macro as its behavioral
model (hdl/verilog/cim_crossbar.v) in place of the black box. The macro has no INIT here (a
real array starts unprogrammed), so the first test writes every cell through the PE's
programming port: that port's gates are checked too. The stimulus file has the format
tests/testbench/test_pe.py writes (CIM_PE_STIMULUS; testbench/gate_level.py writes it here);
the testbench class, the golden computation and the scoreboard are the RTL regression's
(pe_tests.PETB, pe_model.expected_sums, scoreboard.Scoreboard).
"""

from __future__ import annotations

import time

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.simtime import get_sim_time
from cocotb.triggers import ClockCycles, Timer

from testbench import pe_model
from testbench.pe_tests import PETB, load_stimulus
from testbench.scoreboard import Scoreboard
from testbench.stream import random_pauses


async def reset_first(dut):
    """Reset the netlist before the testbench's drivers start. Its flip-flops have no initial
    values (the RTL's Verilog has them): `o__valid` is X until a reset edge, and the stream
    sink reads valid from its first cycle on. The clock is stopped again for PETB's own."""
    clock = Clock(dut.clk, 10, unit="ns")
    clock.start()
    dut.rst.value = 1
    await ClockCycles(dut.clk, 2)
    clock.stop()
    await Timer(10, unit="ns")


@cocotb.test()
async def gate_level_random_vectors_bit_exact(dut):
    """Program the array through the port, then random vectors with random idle cycles on the
    request side and random back-pressure on the partial sums; every partial sum equals the
    golden model's."""
    cfg, p, g, reqs, meta = load_stimulus()
    want = pe_model.expected_sums(pe_model.golden_config(cfg, p), p, g, reqs)
    await reset_first(dut)
    tb = PETB(dut, p)
    await tb.reset()
    t0 = time.time()
    writes = [(r, c, int(g[r, c])) for r in range(p.rows) for c in range(p.cols)]
    tb.write_cells(writes)
    await tb.prog.wait()
    t1, ns1 = time.time(), get_sim_time("ns")
    rng = np.random.default_rng(meta["seed"])
    tb.set_idle_generator(random_pauses(rng, meta["gap"]))
    tb.set_backpressure_generator(random_pauses(rng, meta["stall"]))
    tb.send_requests(reqs)
    sb = Scoreboard(want, name="gate-level partial sums")
    await tb.receive_into(sb)
    assert not sb.mismatches, sb.summary()
    assert int(tb.reads.value) == len(reqs)
    tb.check_monitors(len(reqs), len(want), len(writes))
    # One line the flow parses (testbench/gate_level.py): what ran and how long it took.
    tb.log.info(f"GATE-LEVEL vectors={len(reqs)} sums={len(want)} bitexact={sb.bitexact} "
                f"cells_programmed={len(writes)} busy_cycles={int(tb.cycles.value)} "
                f"vector_cycles={round((get_sim_time('ns') - ns1) / 10)} "
                f"program_s={t1 - t0:.2f} vectors_s={time.time() - t1:.2f}")
