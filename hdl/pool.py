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
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from .chip_plan import Buffer


def pool_write(depth: int, word_bits: int) -> data.StructLayout:
    """A word offered to a pooling writer: the pooled position it belongs to and the word."""
    return data.StructLayout({"addr": range(max(depth, 2)), "data": word_bits})


def memory_depth(buf: Buffer) -> int:
    """Words of `buf`'s memory: its depth, but at least two, so that addresses have a bit
    (Amaranth writes a zero-width port as [-1:0], which Verilator refuses)."""
    return max(buf.depth, 2)


def read_port(buf: Buffer) -> memory.ReadPort.Signature:
    """The signature of a read port of `buf`'s memory (as `Memory.read_port` makes it)."""
    return memory.ReadPort.Signature(addr_width=ceil_log2(memory_depth(buf)),
                                     shape=buf.word_bits)


def write_port(buf: Buffer) -> memory.WritePort.Signature:
    """The signature of a write port of `buf`'s memory (as `Memory.write_port` makes it)."""
    return memory.WritePort.Signature(addr_width=ceil_log2(memory_depth(buf)),
                                      shape=buf.word_bits)


class PoolWriter(wiring.Component):
    """Max-pools the words offered on the `i` streams into `buf`'s memory, through a read
    port `rd` and a write port `wr` (connected to the ports of a memory of
    `memory_depth(buf)` words). `clear` starts a
    layer: every word counts as untouched again. `busy` is high while an update is under
    way."""

    def __init__(self, buf: Buffer, n_inputs: int):
        if isinstance(n_inputs, bool) or not isinstance(n_inputs, int) or n_inputs < 1:
            raise ValueError(f"a pooling writer needs at least one input, got {n_inputs!r}")
        self.buf, self.n_inputs = buf, n_inputs
        super().__init__({
            "i": In(stream.Signature(pool_write(buf.depth, buf.word_bits))).array(n_inputs),
            "clear": In(1),
            "busy": Out(1),
            # The memory's port signatures, flipped: this block drives address and data.
            "rd": In(read_port(buf)),
            "wr": In(write_port(buf)),
        })

    def elaborate(self, platform):
        m = Module()
        buf = self.buf
        touched = Signal(buf.depth)
        addr = Signal.like(self.wr.addr)
        word = Signal(buf.word_bits)
        pending = Signal()

        m.d.comb += self.busy.eq(pending)
        with m.If(self.clear):
            m.d.sync += touched.eq(0)

        with m.If(~pending):
            # Take the first offered word; its old value is read this cycle.
            for port in reversed(self.i):
                with m.If(port.valid):
                    m.d.comb += self.rd.addr.eq(port.payload.addr)
            chosen = None
            for port in self.i:
                cond = port.valid if chosen is None else port.valid & ~chosen
                with m.If(cond):
                    m.d.comb += port.ready.eq(1)
                    m.d.sync += [addr.eq(port.payload.addr), word.eq(port.payload.data),
                                 pending.eq(1)]
                chosen = port.valid if chosen is None else chosen | port.valid
        with m.Else():
            seen = touched.bit_select(addr, 1)
            bits = buf.bits
            for c in range(buf.channels):
                old = self.rd.data[c * bits:(c + 1) * bits]
                new = word[c * bits:(c + 1) * bits]
                m.d.comb += self.wr.data[c * bits:(c + 1) * bits].eq(
                    Mux(seen & (old > new), old, new))
            m.d.comb += [self.wr.addr.eq(addr), self.wr.en.eq(1)]
            m.d.sync += [pending.eq(0), touched.bit_select(addr, 1).eq(1)]
        return m
