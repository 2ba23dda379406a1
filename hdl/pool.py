"""Pooling writer: max- or average-pools conv outputs into a feature-map buffer as they arrive.

The merger offers each conv output to every pooled word whose window holds it (one, or with
overlapping windows, k > stride, up to ceil(k/stride)**2). Max: the writer reads that word,
takes the channel-wise max with the new one (or stores the new one if the word was not yet
touched in this layer), and writes it back. Average: the writer keeps a running sum and count
per pooled word in a memory of its own; the update that brings the count to the window's size
`n` (clipped at the map's edge, offered with the word) writes floor((sum + n // 2) / n) per
channel into the buffer, the division a constant reciprocal multiply that is exact for every
sum the window can have (hdl/chip_plan.reciprocal). One update takes two cycles, so two
updates of the same word never overlap; several group mergers share the writer (fixed
priority; each offers at most a few words every few dozen cycles)."""

from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from .chip_plan import Buffer, PoolMode, reciprocals


def pool_write(depth: int, word_bits: int, window: int = 1) -> data.StructLayout:
    """A word offered to a pooling writer: the pooled position it belongs to, the size of
    its (clipped) pooling window and the word."""
    return data.StructLayout({"addr": range(max(depth, 2)), "n": range(max(window, 1) + 1),
                              "data": word_bits})


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
            "i": In(stream.Signature(pool_write(buf.depth, buf.word_bits,
                                                buf.pool ** 2))).array(n_inputs),
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
        n = Signal(range(buf.pool ** 2 + 1))
        pending = Signal()
        avg = buf.pool_mode is PoolMode.AVG and buf.pool > 1
        if avg:
            sum_bits = buf.bits + (buf.pool ** 2).bit_length()
            cnt_bits = (buf.pool ** 2).bit_length()
            m.submodules.sums = sums = memory.Memory(
                shape=buf.channels * sum_bits + cnt_bits, depth=memory_depth(buf), init=[])
            sums_rd, sums_wr = sums.read_port(), sums.write_port()

        m.d.comb += self.busy.eq(pending)
        with m.If(self.clear):
            m.d.sync += touched.eq(0)

        with m.If(~pending):
            # Take the first offered word; its old value is read this cycle.
            for port in reversed(self.i):
                with m.If(port.valid):
                    m.d.comb += self.rd.addr.eq(port.payload.addr)
                    if avg:
                        m.d.comb += sums_rd.addr.eq(port.payload.addr)
            chosen = None
            for port in self.i:
                cond = port.valid if chosen is None else port.valid & ~chosen
                with m.If(cond):
                    m.d.comb += port.ready.eq(1)
                    m.d.sync += [addr.eq(port.payload.addr), word.eq(port.payload.data),
                                 n.eq(port.payload.n), pending.eq(1)]
                chosen = port.valid if chosen is None else chosen | port.valid
        if avg:
            with m.Else():
                self._average(m, buf, touched, addr, word, n, sums_rd, sums_wr, sum_bits,
                              cnt_bits)
                m.d.sync += [pending.eq(0), touched.bit_select(addr, 1).eq(1)]
            return m
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

    def _average(self, m, buf, touched, addr, word, n, sums_rd, sums_wr, sum_bits, cnt_bits):
        """Add the word to its running sum (zero if untouched in this layer); when the
        window is complete, its rounded mean goes to the buffer."""
        seen = touched.bit_select(addr, 1)
        bits = buf.bits
        old = Mux(seen, sums_rd.data, 0)
        cnt = old[-cnt_bits:] + 1
        new_sums = []
        for c in range(buf.channels):
            s = old[c * sum_bits:(c + 1) * sum_bits] + word[c * bits:(c + 1) * bits]
            new_sums.append(s[:sum_bits])
        m.d.comb += [sums_wr.addr.eq(addr), sums_wr.en.eq(1),
                     sums_wr.data.eq(Cat(*new_sums, cnt[:cnt_bits]))]
        # The division by each window size the map has: x * R >> F, exact below `below`.
        below = buf.pool ** 2 * (2 ** bits) + buf.pool ** 2
        f, recips = reciprocals(sorted(set(buf.window_sizes().values())), below)
        with m.If(cnt == n):
            m.d.comb += [self.wr.addr.eq(addr), self.wr.en.eq(1)]
            with m.Switch(n):
                for size, r in recips.items():
                    with m.Case(size):
                        for c, s in enumerate(new_sums):
                            q = ((s + size // 2) * r) >> f
                            m.d.comb += self.wr.data[c * bits:(c + 1) * bits].eq(q[:bits])
