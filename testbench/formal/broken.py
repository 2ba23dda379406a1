"""Deliberately broken variants of the blocks: each proof must fail on one, or it proves
nothing. Each breaks one property the harnesses check and nothing else."""

from __future__ import annotations

from amaranth import Module, Signal
from amaranth.lib import wiring

from hdl.adc import AdcBank
from hdl.dac import DacDriver
from hdl.merger import Merger
from hdl.pool import PoolWriter
from hdl.shift_add import ShiftAdd


class DroppingDac(DacDriver):
    """Withdraws its slot on every other cycle while the consumer stalls: the stream
    contract's "valid held until ready"."""

    def elaborate(self, platform):
        m = super().elaborate(platform)
        odd = Signal()
        m.d.sync += odd.eq(~odd)
        with m.If(odd & ~self.o.ready):
            m.d.comb += self.o.valid.eq(0)
        return m


class OverwritingAdc(AdcBank):
    """Takes a new sample while its codes still wait at a stalled output: a beat is lost."""

    def elaborate(self, platform):
        m = super().elaborate(platform)
        m.d.comb += self.i.ready.eq(~self.busy | (self.o.valid & ~self.o.ready))
        return m


class UnshiftedShiftAdd(wiring.Component):
    """A shift-add fed slot 0 for every slot (its codes never shifted): the data contract."""

    def __init__(self, p):
        self.inner = ShiftAdd(p)
        super().__init__(self.inner.signature)

    def elaborate(self, platform):
        m = Module()
        m.submodules.inner = inner = self.inner
        wiring.connect(m, wiring.flipped(self.i), inner.i)
        wiring.connect(m, inner.o, wiring.flipped(self.o))
        m.d.comb += [inner.i.payload.ctx.slot.eq(0), self.busy.eq(inner.busy)]
        return m


class LosingPoolWriter(PoolWriter):
    """Takes a word offered on its first input even while an update is under way: the word
    is lost (never pooled)."""

    def elaborate(self, platform):
        m = super().elaborate(platform)
        with m.If(self.busy):
            m.d.comb += self.i[0].ready.eq(self.i[0].valid)
        return m


class ForgetfulMerger(wiring.Component):
    """A merger that counts its second PE's partial sums as zero: it takes them (the
    handshake is right) but merges nothing of them."""

    def __init__(self, plan, group):
        self.inner = Merger(plan, group)
        for name in ("p", "dsts", "layers", "logits_layer"):
            setattr(self, name, getattr(self.inner, name))
        super().__init__(self.inner.signature)

    def elaborate(self, platform):
        m = Module()
        m.submodules.inner = inner = self.inner
        for name in ("start", "layer"):
            m.d.comb += getattr(inner, name).eq(getattr(self, name))
        m.d.comb += self.done.eq(inner.done)
        for k, (outer, port) in enumerate(zip(self.ps, inner.ps, strict=True)):
            wiring.connect(m, wiring.flipped(outer), port)
            if k == 1:
                m.d.comb += port.payload.eq(0)
        for outer, port in zip(self.wr, inner.wr, strict=True):
            wiring.connect(m, port, wiring.flipped(outer))
        if self.logits_layer is not None:
            wiring.connect(m, inner.logits, wiring.flipped(self.logits))
        return m
