"""Feature reader: streams out the input map of the chip's last weight layer (for the mCNN the
pooled S4 map, the FC layer's inputs), word by word in address order, once per image.

Hybrid training needs, besides the logits, the inputs the chip's own FC layer saw (docs/device.md
section 4). The map is stable while the last layer runs (nothing writes it then), so the
reader starts with that layer and the layer does not finish until every word has left: a host
that does not take them stalls the chip instead of losing them.
"""

from __future__ import annotations

from amaranth import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .chip_plan import Buffer
from .pool import read_port


class FeatureReader(wiring.Component):
    """Reads the `buf.depth` words of `buf`'s memory through `rd` after `start` and sends
    them on `o`, word 0 first (channel c of a word at bits [c*bits, (c+1)*bits)); `done` is
    high while idle."""

    def __init__(self, buf: Buffer):
        if not isinstance(buf, Buffer) or buf.depth < 1:
            raise ValueError(f"a feature reader needs a buffer of at least one word, got {buf!r}")
        self.buf = buf
        super().__init__({
            "start": In(1),
            "done": Out(1),
            # The memory's read port signature, flipped: this block drives address and enable.
            "rd": In(read_port(buf)),
            "o": Out(stream.Signature(buf.word_bits)),
        })

    def elaborate(self, platform):
        m = Module()
        addr = Signal(range(max(self.buf.depth, 2)))
        # The read port's enable is high unless driven (its init value): drive it low outside
        # FETCH, so the word read stays on rd.data while the stream is stalled.
        m.d.comb += [self.rd.addr.eq(addr), self.rd.en.eq(0), self.o.payload.eq(self.rd.data)]
        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.done.eq(1)
                with m.If(self.start):
                    m.d.sync += addr.eq(0)
                    m.next = "FETCH"
            with m.State("FETCH"):
                # Synchronous read: the word is on rd.data from the next cycle.
                m.d.comb += self.rd.en.eq(1)
                m.next = "SEND"
            with m.State("SEND"):
                m.d.comb += self.o.valid.eq(1)
                with m.If(self.o.ready):
                    with m.If(addr == self.buf.depth - 1):
                        m.next = "IDLE"
                    with m.Else():
                        m.d.sync += addr.eq(addr + 1)
                        m.next = "FETCH"
        return m
