"""cocotb tests of a PE's mapped netlist (OSU018 standard cells), against the golden model.

The netlist comes from `cim asic` (cim_flows.asic): the periphery as standard-cell instances,
simulated with the library's own Verilog cell models, and the crossbar macro as its behavioral
model (hdl/verilog/cim_crossbar.v) in place of the black box. The macro has no INIT here (a
real array starts unprogrammed), so the first test writes every cell through the PE's
programming port: that port's gates are checked too. The stimulus file is the one
testbench/test_pe.py writes (CIM_PE_STIMULUS), and the scoreboard is the same golden
computation (pe_model.expected_sums).
"""

from __future__ import annotations

import time

import cocotb
import numpy as np
from cocotb.simtime import get_sim_time

from testbench import pe_model
from testbench.pe_tests import load_stimulus, reset
from testbench.stream import StreamSink, StreamSource


def _program_all(p, g) -> list[int]:
    layout = pe_model.layouts.program_write(p)
    return [pe_model.pack(layout, dict(row=r, col=c, code=int(g[r, c])))
            for r in range(p.rows) for c in range(p.cols)]


@cocotb.test()
async def gate_level_random_vectors_bit_exact(dut):
    """Program the array through the port, then random vectors with random idle cycles on both
    stream sides; every partial sum equals the golden model's."""
    cfg, p, g, reqs, meta = load_stimulus()
    want = pe_model.expected_sums(pe_model.golden_config(cfg, p), p, g, reqs)
    await reset(dut)
    t0 = time.time()
    await StreamSource(dut, "prog").send_all(_program_all(p, g))
    t1, ns1 = time.time(), get_sim_time("ns")
    rng = np.random.default_rng(meta["seed"])
    src = StreamSource(dut, "i", rng, gap=meta["gap"])
    sink = StreamSink(dut, "o", rng, stall=meta["stall"])
    cocotb.start_soon(src.send_all([pe_model.pack_request(p, r) for r in reqs]))
    got = [pe_model.unpack_sums(p, v) for v in await sink.receive(len(want))]
    bad = [i for i, (a, b) in enumerate(zip(got, want, strict=True)) if a != b]
    assert not bad, (f"{len(bad)} of {len(want)} partial sums differ; first #{bad[0]}: "
                     f"gates {got[bad[0]]} golden {want[bad[0]]}")
    assert int(dut.reads.value) == len(reqs)
    # One line the flow parses (cim_flows.asic): what ran and how long each part took.
    dut._log.info(f"GATE-LEVEL vectors={len(reqs)} sums={len(want)} bitexact={len(want)} "
                  f"cells_programmed={p.rows * p.cols} busy_cycles={int(dut.cycles.value)} "
                  f"vector_cycles={round((get_sim_time('ns') - ns1) / 10)} "
                  f"program_s={t1 - t0:.2f} vectors_s={time.time() - t1:.2f}")
