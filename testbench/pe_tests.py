"""cocotb tests of one PE's generated Verilog, against the golden integer model.

The pytest runner (tests/testbench/test_pe.py) writes the stimulus file named by
CIM_PE_STIMULUS: the array's codes, the requests, and the configuration, so this module needs
nothing else.
"""

from __future__ import annotations

import json
import logging
import os

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge

from cim_spec.config import SystemConfig
from hdl.params import CrossbarForm, PEParams
from testbench import pe_model
from testbench.scoreboard import Scoreboard
from testbench.stream import (
    StreamBus,
    StreamMonitor,
    StreamSink,
    StreamSource,
    random_pauses,
)


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


class PETB:
    """One PE: read requests in (`i`), partial sums out (`o`), cell writes in (`prog`), with
    a passive monitor on each stream. Every name of the PE's ports that the testbench uses
    is in this constructor."""

    def __init__(self, dut, p: PEParams):
        self.dut, self.p = dut, p
        self.log = logging.getLogger("cocotb.tb")
        self.clk, self.rst = dut.clk, dut.rst
        self.reads, self.cycles = dut.reads, dut.cycles
        buses = {n: StreamBus.from_prefix(dut, n) for n in ("i", "o", "prog")}
        Clock(self.clk, 10, unit="ns").start()
        self.source = StreamSource(buses["i"], self.clk)
        self.sink = StreamSink(buses["o"], self.clk)
        self.prog = StreamSource(buses["prog"], self.clk)
        self.monitors = {n: StreamMonitor(b, self.clk, n) for n, b in buses.items()}

    def set_idle_generator(self, generator=None):
        self.source.set_pause_generator(generator)

    def set_backpressure_generator(self, generator=None):
        self.sink.set_pause_generator(generator)

    async def reset(self):
        self.rst.value = 1
        await ClockCycles(self.clk, 2)
        self.rst.value = 0
        await RisingEdge(self.clk)

    def send_requests(self, reqs):
        for r in reqs:
            self.source.send_nowait(pe_model.pack_request(self.p, r))

    def write_cells(self, writes):
        """(row, col, code) triples through the programming port."""
        layout = pe_model.layouts.program_write(self.p)
        for r, c, code in writes:
            self.prog.send_nowait(pe_model.pack(layout, dict(row=r, col=c, code=code)))

    async def receive_into(self, sb: Scoreboard):
        while not sb.done:
            sb.add(pe_model.unpack_sums(self.p, (await self.sink.recv()).payload))

    def check_monitors(self, requests: int, sums: int, writes: int = 0):
        """The passive monitors saw exactly the transfers the drivers made."""
        seen = {n: len(m.transfers) for n, m in self.monitors.items()}
        want = dict(i=requests, o=sums, prog=writes)
        assert seen == want, f"monitors saw {seen} transfers, the drivers made {want}"


@cocotb.test()
async def random_vectors_bit_exact(dut):
    """Random arrays and vectors, random idle cycles on the request side and random
    back-pressure on the partial sums."""
    cfg, p, g, reqs, meta = load_stimulus()
    want = pe_model.expected_sums(pe_model.golden_config(cfg, p), p, g, reqs)
    tb = PETB(dut, p)
    await tb.reset()
    rng = np.random.default_rng(meta["seed"])
    tb.set_idle_generator(random_pauses(rng, meta["gap"]))
    tb.set_backpressure_generator(random_pauses(rng, meta["stall"]))
    tb.send_requests(reqs)
    sb = Scoreboard(want, name="partial sums")
    await tb.receive_into(sb)
    assert not sb.mismatches, sb.summary()
    assert int(tb.reads.value) == len(reqs)
    tb.check_monitors(len(reqs), len(want))
    stalled = tb.monitors["o"].stalls
    assert stalled, "the back-pressure never stalled a partial sum"
    tb.log.info(f"{sb.summary()}; {stalled} partial sums waited for ready; "
                f"{int(tb.cycles.value)} busy cycles")


@cocotb.test()
async def programming_port_rewrites_cells(dut):
    """Cells written through the programming port are what later reads use."""
    cfg, p, g, reqs, meta = load_stimulus()
    tb = PETB(dut, p)
    await tb.reset()
    rng = np.random.default_rng(meta["seed"] + 1)
    g = g.copy()
    writes = []
    for _ in range(64):
        r, c = int(rng.integers(0, p.rows)), int(rng.integers(0, p.cols))
        code = int(rng.integers(0, 2 ** p.code_bits))
        g[r, c] = code
        writes.append((r, c, code))
    tb.write_cells(writes)
    await tb.prog.wait()
    reqs = reqs[:40]
    while not reqs[-1].last:
        reqs.pop()
    want = pe_model.expected_sums(pe_model.golden_config(cfg, p), p, g, reqs)
    tb.send_requests(reqs)
    sb = Scoreboard(want, name="partial sums after programming")
    await tb.receive_into(sb)
    assert not sb.mismatches, sb.summary()
    tb.check_monitors(len(reqs), len(want), len(writes))


@cocotb.test()
async def cycles_per_vector_match_formula(dut):
    """Back-to-back vectors with no stalls: the busy-cycle counter against docs/pe.md."""
    cfg, p, g, reqs, meta = load_stimulus()
    tb = PETB(dut, p)
    await tb.reset()
    base = int(tb.cycles.value)
    n, lines = 25, p.max_lines
    same = [pe_model.Request(r.x, 0, lines, r.gain, r.nonce, True, True) for r in reqs[:n]]
    tb.send_requests(same)
    for _ in range(n):
        await tb.sink.recv()
    await ClockCycles(tb.clk, 2)
    busy = int(tb.cycles.value) - base
    want = p.busy_cycles(n, lines, CrossbarForm(meta["form"]))
    assert busy == want, (f"{busy} busy cycles for {n} vectors, formula says {want} "
                          f"(crossbar form {meta['form']})")
    assert tb.monitors["o"].stalls == 0, "no back-pressure was asked for"
