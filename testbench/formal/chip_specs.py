"""Formal harnesses of the chip's blocks (hdl/feeder.py, merger.py, pool.py, image_in.py) and
the board link's transmitter (hdl/link.py), on a plan small enough for bounded proofs: a 3 x 3
image, two 2 x 2 convolutions and a dense layer on three PEs of 8 x 4 cells, 4-bit inputs,
ADCs and activations. The first group has two PEs: layer A alternates positions between them,
layer B adds both PEs' partial sums (so the merger really merges)."""

from __future__ import annotations

import functools
from types import SimpleNamespace

import numpy as np
from amaranth import Module, Mux, Signal
from amaranth.asserts import AnyConst
from amaranth.hdl import Assert, Assume
from amaranth.lib import memory, wiring

from cim_spec import program
from cim_spec.config import SystemConfig
from cim_spec.mapping import map_network
from cim_spec.network import Conv, Dense, Network
from hdl.checks import stream_contract
from hdl.chip_plan import Buffer, ChipPlan, plan_chip
from hdl.feeder import Feeder
from hdl.image_in import ImageInput
from hdl.link import FrameTx
from hdl.merger import Merger
from hdl.pool import PoolWriter, memory_depth

from .harness import Harness, took

NETWORK = Network("formal", (1, 3, 3), (Conv("A", 1, 2, 2), Conv("B", 2, 2, 2), Dense("D", 2, 2)))


@functools.cache
def tiny_plan() -> ChipPlan:
    cfg = SystemConfig(n_pe=3, array_rows=8, array_cols=4, input_bits=4, adc_bits=4, act_bits=4)
    mapping = map_network(cfg, NETWORK)
    names = [lm.name for lm in mapping.layers]
    chip = program.Chip(mapping, np.zeros((3, 8, 4), dtype=np.int64), program.Digital(
        adc_gain={n: 4000 for n in names}, requant_mult={"A": 2 ** 7 + 3, "B": 3},
        requant_shift={"A": 9, "B": 2}, read_noise=0, noise_seed=1))
    return plan_chip(chip)


def feeder(pe: int = 0, cls=Feeder) -> Harness:
    """The read-request stream's contract, whatever the source memories return and whenever
    a layer is started."""
    return Harness(cls(tiny_plan(), pe))


def requantize(v, mult: int, shift: int, bits: int):
    """The reference: clamp((v * M + 2**(S-1)) >> S, 0, 2**A - 1) (docs/datapath.md)."""
    r = (v * mult + (1 << (shift - 1))) >> shift
    return Mux(r < 0, 0, Mux(r > 2 ** bits - 1, 2 ** bits - 1, r))


def merger(group: int = 0, cls=Merger) -> Harness:
    """The merger's data contract: each word written is, channel by channel, the reference
    requantization of the sum of the partial sums taken since the last word (or logits)
    left; the logits are those sums; partial sums are taken one at a time."""
    plan = tiny_plan()

    def extra(m, dut):
        p = dut.p
        shape = dut.ps[0].payload[0].shape()
        ref = [Signal(shape, name=f"ref_sum_{o}") for o in range(p.max_outputs)]
        fresh = Signal(init=1)          # the next partial sum starts a position
        takes = [took(port) for port in dut.ps]
        taken = Signal(range(len(takes) + 1))
        m.d.comb += taken.eq(sum(takes))
        m.d.comb += Assert(taken <= 1, "merger: two partial sums taken at once")
        for t, port in zip(takes, dut.ps, strict=True):
            with m.If(t):
                m.d.sync += fresh.eq(0)
                for o in range(p.max_outputs):
                    m.d.sync += ref[o].eq(Mux(fresh, 0, ref[o]) + port.payload[o])
        for d, name in enumerate(dut.dsts):
            lp = next(lp for lp in dut.layers if lp.dst == name)
            buf, bits = plan.buffers[name], plan.buffers[name].bits
            port = dut.wr[d]
            with m.If(took(port)):
                m.d.sync += fresh.eq(1)
            with m.If(port.valid):
                for c in range(buf.channels):
                    m.d.comb += Assert(port.payload.data[c * bits:(c + 1) * bits] ==
                                       requantize(ref[c], lp.mult, lp.shift, bits),
                                       f"merger: wrong requantized channel {c} of {name}")
        if dut.logits_layer is not None:
            with m.If(took(dut.logits)):
                m.d.sync += fresh.eq(1)
            with m.If(dut.logits.valid):
                for o in range(dut.logits_layer.n_out):
                    m.d.comb += Assert(dut.logits.payload[o] == ref[o], "merger: wrong logit")
    return Harness(cls(plan, group), extra)


POOL_BUF = Buffer("formal", channels=2, height=2, width=2, bits=3)


class PooledMemory(wiring.Component):
    """A pooling writer on its memory, with a third, asynchronous read port for the proof."""

    def __init__(self, buf: Buffer, n_inputs: int, cls=PoolWriter):
        self.pool = cls(buf, n_inputs)
        self.mem = memory.Memory(shape=buf.word_bits, depth=memory_depth(buf), init=[])
        self.peek = self.mem.read_port(domain="comb")
        members = self.pool.signature.members
        super().__init__({"i": members["i"], "clear": members["clear"],
                          "busy": members["busy"]})

    def elaborate(self, platform):
        m = Module()
        m.submodules.pool, m.submodules.mem = self.pool, self.mem
        wiring.connect(m, self.pool.rd, self.mem.read_port())
        wiring.connect(m, self.pool.wr, self.mem.write_port())
        for outer, inner in zip(self.i, self.pool.i, strict=True):
            wiring.connect(m, wiring.flipped(outer), inner)
        m.d.comb += [self.pool.clear.eq(self.clear), self.busy.eq(self.pool.busy)]
        return m


def pool_writer(n_inputs: int = 2, cls=PoolWriter) -> Harness:
    """The pooling writer's data contract on one word chosen by the solver (any address):
    once written in a layer it holds the channel-wise maximum of every word offered to it in
    that layer, and after `clear` the next word offered replaces it; one input taken at a
    time. `clear` comes, as from the sequencer, only while no update is under way or
    offered."""
    buf = POOL_BUF

    def extra(m, dut):
        addr = Signal(range(buf.depth))
        m.d.comb += addr.eq(AnyConst(addr.shape()))
        ref = Signal(buf.word_bits)
        touched = Signal()
        with m.If(dut.clear):
            m.d.comb += Assume(~dut.busy)
            for port in dut.i:
                m.d.comb += Assume(~port.valid)
            m.d.sync += touched.eq(0)
        takes = [took(port) for port in dut.i]
        count = Signal(range(len(takes) + 1))
        m.d.comb += [count.eq(sum(takes)),
                     Assert(count <= 1, "pool: two words taken at once")]
        for t, port in zip(takes, dut.i, strict=True):
            with m.If(t & (port.payload.addr == addr)):
                m.d.sync += touched.eq(1)
                for c in range(buf.channels):
                    new = port.payload.data[c * buf.bits:(c + 1) * buf.bits]
                    old = ref[c * buf.bits:(c + 1) * buf.bits]
                    m.d.sync += ref[c * buf.bits:(c + 1) * buf.bits].eq(
                        Mux(touched & (old > new), old, new))
        # The memory holds the reference once the writer has finished its update.
        peek = Signal(buf.word_bits)
        m.d.comb += [dut.peek.addr.eq(addr), peek.eq(dut.peek.data)]
        with m.If(touched & ~dut.busy):
            m.d.comb += Assert(peek == ref, "pool: the word is not the channel-wise max")
    return Harness(PooledMemory(buf, n_inputs, cls), extra)


IMAGE_BUF = Buffer("img", channels=1, height=1, width=3, bits=2)


def image_input(cls=ImageInput) -> Harness:
    """Every pixel taken is written to the image memory, at the next address of the bank
    being filled; a bank is released only while an image is available."""
    def extra(m, dut):
        taken = took(dut.pixels)
        m.d.comb += [Assert(dut.wr.en == taken, "image input: a pixel taken but not written"),
                     Assert(dut.wr.data == dut.pixels.payload, "image input: wrong pixel")]
        with m.If(dut.release):
            m.d.comb += Assume(dut.avail)
    return Harness(cls(IMAGE_BUF), extra)


def frame_tx(cls=FrameTx) -> Harness:
    """The transmitter's byte stream to the UART (`data`, `valid`, `ready`) keeps the stream
    contract, given a user whose payload byte depends only on the index asked for."""
    def extra(m, dut):
        index, byte = Signal.like(dut.index), Signal.like(dut.byte)
        m.d.sync += [index.eq(dut.index), byte.eq(dut.byte)]
        with m.If(dut.index == index):
            m.d.comb += Assume(dut.byte == byte)
        stream_contract(m, SimpleNamespace(valid=dut.valid, ready=dut.ready, payload=dut.data),
                        Assert, name="frame_tx")
    return Harness(cls(), extra)
