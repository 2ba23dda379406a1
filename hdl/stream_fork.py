"""A stream fork: one stream to two consumers, each of which takes every payload once. The
chip's logits go to the host's `result` port and to the update engine, and its FC inputs to
the `features` port and to the engine's buffer: neither consumer may miss one or see one twice,
whatever the other's back-pressure."""

from __future__ import annotations

from amaranth import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out


class StreamFork(wiring.Component):
    """`i` to `o[0]` and `o[1]`: the payload is offered to both; a consumer that took it is
    not offered it again; `i` is taken once both have it (in the same cycle at the earliest,
    so an unstalled fork adds no cycle)."""

    def __init__(self, shape):
        super().__init__({
            "i": In(stream.Signature(shape)),
            "o": Out(stream.Signature(shape)).array(2),
        })

    def elaborate(self, platform):
        m = Module()
        taken = [Signal(name=f"taken{k}") for k in range(2)]
        have = [Signal(name=f"have{k}") for k in range(2)]
        for k, o in enumerate(self.o):
            m.d.comb += [o.payload.eq(self.i.payload), o.valid.eq(self.i.valid & ~taken[k]),
                         have[k].eq(taken[k] | o.ready)]
        m.d.comb += self.i.ready.eq(have[0] & have[1])
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [t.eq(0) for t in taken]
        with m.Else():
            for k, o in enumerate(self.o):
                with m.If(o.valid & o.ready):
                    m.d.sync += taken[k].eq(1)
        return m
