"""ADC bank: samples the line currents and converts them, `adcs` lines at a time.

In the crossbar's AMARANTH form (the FPGA emulation) the bank converts with `gain_mults`
shared gain multipliers instead of one per line, `gain_mults` lines per cycle through a
pipeline register, and still waits for the modelled rounds: the codes are the same, and the
cycles are `PEParams.adc_cycles` (docs/pe.md, "Timing").
"""

from __future__ import annotations

from amaranth import Array, Module, Mux, Signal
from amaranth.hdl import Assert
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from . import checks, layouts
from .params import CrossbarForm, PEParams, check_form


def convert(current, gain, p: PEParams):
    """min((I * gain) >> F, 2**B - 1): docs/datapath.md section 3, step 4."""
    return clamp(current * gain, p)


def clamp(product, p: PEParams):
    """The code of a product I * gain: min(product >> F, 2**B - 1)."""
    scaled = product >> p.gain_frac_bits
    top = 2 ** p.adc_bits - 1
    return Mux(scaled > top, top, scaled)


class AdcBank(wiring.Component):
    """Sample-and-hold, then ceil(n_lines / adcs) conversion rounds of `adc_conv_cycles`.

    ADC j converts lines j, j + adcs, j + 2*adcs, ... in successive rounds. The bank takes a
    new sample once its codes have been handed on.
    """

    def __init__(self, p: PEParams, form: CrossbarForm = CrossbarForm.VERILOG):
        self.p, self.form = p, check_form(form)
        super().__init__({
            "i": In(stream.Signature(layouts.currents(p))),
            "o": Out(stream.Signature(layouts.codes(p))),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        if self.form is CrossbarForm.AMARANTH:
            return self.elaborate_shared(platform)
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
        if checks.enabled(platform):
            checks.stream_contract(m, self.o, name="adc.o")
            m.d.comb += [Assert(~(converting & self.o.valid), "adc: codes overwritten"),
                         Assert(timer < p.adc_conv_cycles, "adc: timer out of range")]
            with m.If(converting):
                m.d.comb += Assert((rnd < n_rounds) | (rnd == 0), "adc: round out of range")
            with m.If(self.i.valid):
                m.d.comb += checks.on_input(platform)(
                    self.i.payload.ctx.n_lines <= p.max_lines, "adc: more lines than max_lines")
        return m

    def elaborate_shared(self, platform=None):
        """The FPGA form: `gain_mults` multipliers; on cycle t of a conversion multiplier j
        takes line t*gain_mults + j into its product register, whose code is written the
        next cycle. The codes are handed on after max(modelled rounds, groups + 1) cycles."""
        m = Module()
        p = self.p
        g = p.gain_mults
        groups = -(-p.max_lines // g)
        rounds = p.conversions * p.adc_conv_cycles
        held = Signal(layouts.currents(p))
        converting = Signal()
        t = Signal(range(max(rounds, groups + 1) + 1))      # cycles since the sample
        need = Signal.like(t)                               # cycles this conversion takes
        n_groups = Signal(range(groups + 1))
        n_lines = self.i.payload.ctx.n_lines
        m.d.comb += [
            self.i.ready.eq(~converting & (~self.o.valid | self.o.ready)),
            self.busy.eq(converting | self.o.valid),
            self.o.payload.ctx.eq(held.ctx),
        ]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(self.i.valid & self.i.ready):
            modelled = (n_lines + p.adcs - 1) // p.adcs * p.adc_conv_cycles
            shared = Mux(n_lines > g, (n_lines + g - 1) // g, 1) + 1
            m.d.sync += [held.eq(self.i.payload), converting.eq(1), t.eq(0),
                         need.eq(Mux(modelled > shared, modelled, shared)),
                         n_groups.eq(shared - 1), self.o.payload.code.eq(0)]

        # Multiplier j's operand on cycle t: line t*g + j (0 past the array's lines).
        products = []
        for j in range(g):
            lines = [held.current[k * g + j] if k * g + j < p.max_lines else 0
                     for k in range(groups)]
            operand = Signal(p.current_bits, name=f"operand_{j}")
            m.d.comb += operand.eq(Array(lines)[t] if groups > 1 else lines[0])
            product = Signal(p.current_bits + p.gain_bits, name=f"product_{j}")
            m.d.sync += product.eq(operand * held.ctx.gain)
            products.append(product)

        with m.If(converting):
            m.d.sync += t.eq(t + 1)
            # The products taken on cycle t - 1 (group t - 1) become codes now.
            with m.Switch(t):
                for k in range(groups):
                    with m.Case(k + 1):
                        with m.If(k < n_groups):
                            for j in range(g):
                                line = k * g + j
                                if line < p.max_lines:
                                    m.d.sync += self.o.payload.code[line].eq(
                                        clamp(products[j], p))
            with m.If(t + 1 >= need):
                m.d.sync += [converting.eq(0), self.o.valid.eq(1)]
        if checks.enabled(platform):
            checks.stream_contract(m, self.o, name="adc.o")
            m.d.comb += Assert(~(converting & self.o.valid), "adc: codes overwritten")
            with m.If(self.i.valid):
                m.d.comb += checks.on_input(platform)(
                    n_lines <= p.max_lines, "adc: more lines than max_lines")
            with m.If(converting):
                m.d.comb += Assert(t < need, "adc: conversion overran")
        return m
