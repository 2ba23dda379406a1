"""A processing element: DAC driver -> crossbar -> ADC bank -> shift-add, joined by streams."""

from __future__ import annotations

from amaranth import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from . import layouts
from .adc import AdcBank
from .crossbar import Crossbar
from .dac import DacDriver
from .params import CrossbarForm, PEParams
from .shift_add import ShiftAdd


class PE(wiring.Component):
    """Read requests (input vector, output-line group, ADC gain, chunk flags) in; signed
    partial sums out, one per `last` request.

    `busy` is high while any stage holds work; `cycles` counts busy cycles and `reads` the
    requests taken. Programming writes are accepted only while the PE is idle, so a read
    never sees a half-written array.
    """

    def __init__(self, p: PEParams, init=None, form: CrossbarForm = CrossbarForm.VERILOG):
        self.p = p
        self.crossbar = Crossbar(p, init, form)
        super().__init__({
            "i": In(stream.Signature(layouts.read_request(p))),
            "o": Out(stream.Signature(layouts.partial_sums(p))),
            "prog": In(stream.Signature(layouts.program_write(p))),
            "busy": Out(1),
            "cycles": Out(32),
            "reads": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.dac = dac = DacDriver(self.p)
        m.submodules.crossbar = xbar = self.crossbar
        m.submodules.adc = adc = AdcBank(self.p, self.crossbar.form)
        m.submodules.shift_add = sa = ShiftAdd(self.p)

        wiring.connect(m, wiring.flipped(self.i), dac.i)
        wiring.connect(m, dac.o, xbar.i)
        wiring.connect(m, xbar.o, adc.i)
        wiring.connect(m, adc.o, sa.i)
        wiring.connect(m, sa.o, wiring.flipped(self.o))

        busy = dac.busy | xbar.busy | adc.busy | sa.busy
        m.d.comb += [
            self.busy.eq(busy),
            xbar.prog.payload.eq(self.prog.payload),
            xbar.prog.valid.eq(self.prog.valid & ~busy),
            self.prog.ready.eq(xbar.prog.ready & ~busy),
        ]
        with m.If(busy):
            m.d.sync += self.cycles.eq(self.cycles + 1)
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += self.reads.eq(self.reads + 1)
        return m
