"""cocotb tests of one PE's generated Verilog, against the golden integer model.

The pytest runner (testbench/test_pe.py) writes the stimulus file named by CIM_PE_STIMULUS:
the array's codes, the requests, and the configuration, so this module needs nothing else.
"""

from __future__ import annotations

import json
import os

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge

from cim_spec.config import SystemConfig
from hdl.params import CrossbarForm, PEParams
from testbench import pe_model
from testbench.stream import StreamSink, StreamSource


def load_stimulus():
    with np.load(os.environ["CIM_PE_STIMULUS"], allow_pickle=False) as f:
        meta = json.loads(str(f["meta"]))
        g = f["g"]
        reqs = [pe_model.Request(tuple(int(v) for v in x), int(r0), int(nl), int(gn), int(nc),
                                 bool(fi), bool(la))
                for x, r0, nl, gn, nc, fi, la in zip(f["x"], f["row0"], f["n_lines"], f["gain"],
                                                     f["nonce"], f["first"], f["last"],
                                                     strict=True)]
    cfg = SystemConfig.from_dict(meta["config"])
    p = PEParams(**meta["params"])
    return cfg, p, g, reqs, meta


async def reset(dut):
    Clock(dut.clk, 10, unit="ns").start()
    dut.rst.value = 1
    dut.i__valid.value = 0
    dut.o__ready.value = 0
    dut.prog__valid.value = 0
    await ClockCycles(dut.clk, 2)
    dut.rst.value = 0
    await RisingEdge(dut.clk)


@cocotb.test()
async def random_vectors_bit_exact(dut):
    """Random arrays and vectors, random idle cycles on both stream sides."""
    cfg, p, g, reqs, meta = load_stimulus()
    want = pe_model.expected_sums(pe_model.golden_config(cfg, p), p, g, reqs)
    await reset(dut)
    rng = np.random.default_rng(meta["seed"])
    src = StreamSource(dut, "i", rng, gap=meta["gap"])
    sink = StreamSink(dut, "o", rng, stall=meta["stall"])
    cocotb.start_soon(src.send_all([pe_model.pack_request(p, r) for r in reqs]))
    got = [pe_model.unpack_sums(p, v) for v in await sink.receive(len(want))]
    bad = [i for i, (a, b) in enumerate(zip(got, want, strict=True)) if a != b]
    assert not bad, (f"{len(bad)} of {len(want)} partial sums differ; first #{bad[0]}: "
                     f"rtl {got[bad[0]]} golden {want[bad[0]]}")
    assert int(dut.reads.value) == len(reqs)
    dut._log.info(f"{len(reqs)} vectors, {len(want)} partial sums bit-exact; "
                  f"{int(dut.cycles.value)} busy cycles")


@cocotb.test()
async def programming_port_rewrites_cells(dut):
    """Cells written through the programming port are what later reads use."""
    cfg, p, g, reqs, meta = load_stimulus()
    await reset(dut)
    rng = np.random.default_rng(meta["seed"] + 1)
    g = g.copy()
    writes = []
    for _ in range(64):
        r, c = int(rng.integers(0, p.rows)), int(rng.integers(0, p.cols))
        code = int(rng.integers(0, 2 ** p.code_bits))
        g[r, c] = code
        writes.append(pe_model.pack(pe_model.layouts.program_write(p),
                                    dict(row=r, col=c, code=code)))
    await StreamSource(dut, "prog").send_all(writes)
    reqs = reqs[:40]
    while not reqs[-1].last:
        reqs.pop()
    want = pe_model.expected_sums(pe_model.golden_config(cfg, p), p, g, reqs)
    cocotb.start_soon(StreamSource(dut, "i").send_all(
        [pe_model.pack_request(p, r) for r in reqs]))
    got = [pe_model.unpack_sums(p, v) for v in await StreamSink(dut, "o").receive(len(want))]
    assert got == want


@cocotb.test()
async def cycles_per_vector_match_formula(dut):
    """Back-to-back vectors with no stalls: the busy-cycle counter against docs/pe.md."""
    cfg, p, g, reqs, meta = load_stimulus()
    await reset(dut)
    base = int(dut.cycles.value)
    n, lines = 25, p.max_lines
    same = [pe_model.Request(r.x, 0, lines, r.gain, r.nonce, True, True) for r in reqs[:n]]
    cocotb.start_soon(StreamSource(dut, "i").send_all(
        [pe_model.pack_request(p, r) for r in same]))
    await StreamSink(dut, "o").receive(n)
    await ClockCycles(dut.clk, 2)
    busy = int(dut.cycles.value) - base
    want = p.busy_cycles(n, lines, CrossbarForm(meta["form"]))
    assert busy == want, (f"{busy} busy cycles for {n} vectors, formula says {want} "
                          f"(crossbar form {meta['form']})")
