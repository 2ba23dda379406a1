"""Shift-and-add accumulator with the differential subtraction and chunk partial sums."""

from __future__ import annotations

from amaranth import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from . import checks, layouts
from .params import PEParams


class ShiftAdd(wiring.Component):
    """sum[o] += (code[2o] - code[2o+1]) << slot, over the slots of a read and the reads of a
    partial sum (from a `first_read` to a `last_read`); the integer result equals the
    contract's sum over chunks of (A[2o] - A[2o+1]) because every step is linear."""

    def __init__(self, p: PEParams):
        self.p = p
        super().__init__({
            "i": In(stream.Signature(layouts.codes(p))),
            "o": Out(stream.Signature(layouts.partial_sums(p))),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.p
        acc = Signal(layouts.partial_sums(p))
        pending = Signal()          # a partial sum has started and not been emitted
        c, ctx = self.i.payload.code, self.i.payload.ctx
        fresh = ctx.first_slot & ctx.first_read
        take = self.i.valid & self.i.ready
        m.d.comb += [
            self.i.ready.eq(~self.o.valid | self.o.ready),
            self.busy.eq(pending | self.o.valid),
        ]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(take):
            done = ctx.last_slot & ctx.last_read
            m.d.sync += pending.eq(~done)
            for o in range(p.max_outputs):
                diff = (c[2 * o] - c[2 * o + 1]) << ctx.slot
                new = Mux(fresh, 0, acc[o]) + diff
                m.d.sync += acc[o].eq(new)
                with m.If(done):
                    m.d.sync += self.o.payload[o].eq(new)
            with m.If(done):
                m.d.sync += self.o.valid.eq(1)
        if checks.enabled(platform):
            checks.stream_contract(m, self.o, name="shift_add.o")
        return m
