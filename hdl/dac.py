"""DAC driver: an input vector becomes bit-serial read slots."""

from __future__ import annotations

from amaranth import Cat, Module, Signal
from amaranth.hdl import Assert
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from . import checks, layouts
from .params import PEParams


class DacDriver(wiring.Component):
    """Slot k pulses the bit lines whose input has bit k set, for `pulse_cycles` cycles.

    A slot is offered downstream (sampled) in the last cycle of its pulse; the next slot's
    pulse starts the cycle after it is taken, and the next request is taken together with
    the last slot of the current one, so back-to-back vectors have no gap.
    """

    def __init__(self, p: PEParams):
        self.p = p
        super().__init__({
            "i": In(stream.Signature(layouts.read_request(p))),
            "o": Out(stream.Signature(layouts.slot(p))),
            "bit_lines": Out(p.cols),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.p
        req = Signal(layouts.read_request(p))
        active = Signal()
        k = Signal(p.slot_bits)
        timer = Signal(range(max(p.pulse_cycles, 2)))
        last_slot = k == p.input_bits - 1
        handoff = self.o.valid & self.o.ready

        bits = Signal(p.cols)
        m.d.comb += [
            bits.eq(Cat(req.x[i].bit_select(k, 1) for i in range(p.cols))),
            self.bit_lines.eq(bits & active.replicate(p.cols)),
            self.busy.eq(active),
            self.o.valid.eq(active & (timer == p.pulse_cycles - 1)),
            self.o.payload.bits.eq(bits),
            self.o.payload.row0.eq(req.row0),
            self.o.payload.nonce.eq(req.nonce),
            self.o.payload.ctx.slot.eq(k),
            self.o.payload.ctx.first_slot.eq(k == 0),
            self.o.payload.ctx.last_slot.eq(last_slot),
            self.o.payload.ctx.first_read.eq(req.first),
            self.o.payload.ctx.last_read.eq(req.last),
            self.o.payload.ctx.n_lines.eq(req.n_lines),
            self.o.payload.ctx.gain.eq(req.gain),
            self.i.ready.eq(~active | (handoff & last_slot)),
        ]
        with m.If(active & ~self.o.valid):
            m.d.sync += timer.eq(timer + 1)
        with m.If(handoff):
            m.d.sync += [timer.eq(0), k.eq(k + 1)]
            with m.If(last_slot):
                m.d.sync += [k.eq(0), active.eq(0)]
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [req.eq(self.i.payload), active.eq(1), k.eq(0), timer.eq(0)]
        if checks.enabled(platform):
            checks.stream_contract(m, self.o, name="dac.o")
            m.d.comb += [Assert(k < p.input_bits, "dac: slot index out of range"),
                         Assert(timer < p.pulse_cycles, "dac: pulse timer out of range"),
                         Assert(active | ((k == 0) & (timer == 0)), "dac: idle mid-vector")]
        return m
