"""ADC bank: samples the line currents and converts them, `adcs` lines at a time."""

from __future__ import annotations

from amaranth import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from . import layouts
from .params import PEParams


def convert(current, gain, p: PEParams):
    """min((I * gain) >> F, 2**B - 1): docs/datapath.md section 3, step 4."""
    scaled = (current * gain) >> p.gain_frac_bits
    top = 2 ** p.adc_bits - 1
    return Mux(scaled > top, top, scaled)


class AdcBank(wiring.Component):
    """Sample-and-hold, then ceil(n_lines / adcs) conversion rounds of `adc_conv_cycles`.

    ADC j converts lines j, j + adcs, j + 2*adcs, ... in successive rounds. The bank takes a
    new sample once its codes have been handed on.
    """

    def __init__(self, p: PEParams):
        self.p = p
        super().__init__({
            "i": In(stream.Signature(layouts.currents(p))),
            "o": Out(stream.Signature(layouts.codes(p))),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.p
        held = Signal(layouts.currents(p))
        converting = Signal()
        rounds = p.conversions
        rnd = Signal(range(max(rounds, 2)))
        timer = Signal(range(max(p.adc_conv_cycles, 2)))
        n_adcs = min(p.adcs, p.max_lines)
        n_rounds = Signal(range(rounds + 1))
        m.d.comb += [
            n_rounds.eq((held.ctx.n_lines + p.adcs - 1) // p.adcs),
            self.i.ready.eq(~converting & (~self.o.valid | self.o.ready)),
            self.busy.eq(converting | self.o.valid),
            self.o.payload.ctx.eq(held.ctx),
        ]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(self.i.valid & self.i.ready):
            # Lines that no round will convert this time must not keep older codes.
            m.d.sync += [held.eq(self.i.payload), converting.eq(1), rnd.eq(0), timer.eq(0),
                         self.o.payload.code.eq(0)]

        with m.If(converting):
            m.d.sync += timer.eq(timer + 1)
            with m.If(timer == p.adc_conv_cycles - 1):
                m.d.sync += [timer.eq(0), rnd.eq(rnd + 1)]
                for j in range(n_adcs):
                    for r in range(rounds):
                        line = r * p.adcs + j
                        if line >= p.max_lines:
                            continue
                        with m.If(rnd == r):
                            m.d.sync += self.o.payload.code[line].eq(
                                convert(held.current[line], held.ctx.gain, p))
                with m.If(rnd + 1 >= n_rounds):
                    m.d.sync += [converting.eq(0), self.o.valid.eq(1)]
        return m
