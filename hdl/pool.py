"""Pooling writer: max-pools conv outputs into a feature-map buffer as they arrive.

Pooling windows do not overlap (hdl/chip_plan.py refuses others), so every conv output belongs
to exactly one pooled word: the writer reads that word, takes the channel-wise max with the
new one (or stores the new one if the word was not yet touched in this layer), and writes it
back. One update takes two cycles, so two updates of the same word never overlap; several
group mergers share the writer (fixed priority; each offers at most a word every few dozen
cycles).
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .chip_plan import Buffer
from .merger import word_write


class PoolWriter(wiring.Component):
    def __init__(self, buf: Buffer, n_inputs: int):
        self.buf, self.n_inputs = buf, n_inputs
        ports = {f"in_{i}": In(stream.Signature(word_write(buf.depth, buf.word_bits)))
                 for i in range(n_inputs)}
        ports.update({
            "clear": In(1),
            "busy": Out(1),
            "rd_addr": Out(range(max(buf.depth, 2))),
            "rd_data": In(buf.word_bits),
            "wr_addr": Out(range(max(buf.depth, 2))),
            "wr_data": Out(buf.word_bits),
            "wr_en": Out(1),
        })
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        buf = self.buf
        touched = Signal(buf.depth)
        addr = Signal.like(self.wr_addr)
        word = Signal(buf.word_bits)
        pending = Signal()
        inputs = [getattr(self, f"in_{i}") for i in range(self.n_inputs)]

        m.d.comb += self.busy.eq(pending)
        with m.If(self.clear):
            m.d.sync += touched.eq(0)

        with m.If(~pending):
            # Take the first offered word; its old value is read this cycle.
            for port in reversed(inputs):
                with m.If(port.valid):
                    m.d.comb += self.rd_addr.eq(port.payload.addr)
            chosen = None
            for port in inputs:
                cond = port.valid if chosen is None else port.valid & ~chosen
                with m.If(cond):
                    m.d.comb += port.ready.eq(1)
                    m.d.sync += [addr.eq(port.payload.addr), word.eq(port.payload.word),
                                 pending.eq(1)]
                chosen = port.valid if chosen is None else chosen | port.valid
        with m.Else():
            seen = touched.bit_select(addr, 1)
            bits = buf.bits
            for c in range(buf.channels):
                old = self.rd_data[c * bits:(c + 1) * bits]
                new = word[c * bits:(c + 1) * bits]
                m.d.comb += self.wr_data[c * bits:(c + 1) * bits].eq(
                    Mux(seen & (old > new), old, new))
            m.d.comb += [self.wr_addr.eq(addr), self.wr_en.eq(1)]
            m.d.sync += [pending.eq(0), touched.bit_select(addr, 1).eq(1)]
        return m
