"""Formal harnesses of the PE's blocks (hdl/dac.py, crossbar, adc.py, shift_add.py, pe.py) on
a tiny PE, so that every proof takes seconds: 2 bit lines, 2 source lines (one output), 2-bit
inputs and ADC codes, 2-cycle pulses, one ADC for the two lines (two conversion rounds)."""

from __future__ import annotations

from amaranth import Mux, Signal
from amaranth.hdl import Assert, Assume

from hdl.adc import AdcBank
from hdl.crossbar import Crossbar
from hdl.dac import DacDriver
from hdl.params import CrossbarForm, PEParams
from hdl.pe import PE
from hdl.shift_add import ShiftAdd

from .harness import Harness, in_flight, took

TINY = PEParams(rows=4, cols=2, code_bits=2, input_bits=2, adc_bits=2, adcs=1, gain_bits=3,
                gain_frac_bits=1, pulse_cycles=2, adc_conv_cycles=1, max_lines=2,
                max_chunks=2)


def dac(p: PEParams = TINY, cls=DacDriver) -> Harness:
    """Each request leaves as `input_bits` slots, the last flagged `last_slot`: one request
    in flight at most, exactly while the driver is busy."""
    def extra(m, dut):
        in_flight(m, "dac", took(dut.i), took(dut.o) & dut.o.payload.ctx.last_slot,
                  held=dut.busy)
    return Harness(cls(p), extra)


def crossbar(p: PEParams = TINY, cls=Crossbar) -> Harness:
    """The FPGA emulation (block RAM, lanes): each slot taken leaves as one set of currents;
    one slot inside at most, exactly while it is busy."""
    def extra(m, dut):
        in_flight(m, "crossbar", took(dut.i), took(dut.o), held=dut.busy)
    return Harness(cls(p, form=CrossbarForm.AMARANTH), extra)


def adc(p: PEParams = TINY, form: CrossbarForm = CrossbarForm.VERILOG, cls=AdcBank) -> Harness:
    """Each sample taken leaves as one set of codes; one inside at most, exactly while busy."""
    def extra(m, dut):
        in_flight(m, "adc", took(dut.i), took(dut.o), held=dut.busy)
    return Harness(cls(p, form), extra)


def shift_add(p: PEParams = TINY, cls=ShiftAdd, data: bool = True) -> Harness:
    """Each partial sum leaves exactly once (one inside at most, exactly while the output
    is offered). With `data`, the data contract: on well-formed slots (slot k of each read
    in order, `first_read` on the first read of a partial sum, at most `max_chunks` reads),
    every partial sum equals the reference sum over its slots of
    (code[2o] - code[2o+1]) * 2**k, computed here with a multiplication by the slot's
    weight."""
    def extra(m, dut):
        i, o, ctx = dut.i, dut.o, dut.i.payload.ctx
        done = took(i) & ctx.last_slot & ctx.last_read
        in_flight(m, "shift_add", done, took(o), held=o.valid)
        if not data:
            return
        k = Signal(range(p.input_bits))             # the slot expected next
        reads = Signal(range(p.max_chunks + 1))     # reads of the open partial sum so far
        with m.If(i.valid):
            m.d.comb += [Assume(ctx.slot == k), Assume(ctx.first_slot == (k == 0)),
                         Assume(ctx.last_slot == (k == p.input_bits - 1)),
                         Assume(ctx.first_read == (reads == 0))]
            with m.If(reads == p.max_chunks - 1):
                m.d.comb += Assume(ctx.last_read)
        with m.If(took(i)):
            m.d.sync += k.eq(Mux(ctx.last_slot, 0, k + 1))
            with m.If(ctx.last_slot):
                m.d.sync += reads.eq(Mux(ctx.last_read, 0, reads + 1))
        # The reference: a running sum and the value of the last finished partial sum.
        acc = [Signal(o.payload[n].shape(), name=f"ref_acc_{n}") for n in range(p.max_outputs)]
        out = [Signal(o.payload[n].shape(), name=f"ref_out_{n}")
               for n in range(p.max_outputs)]
        weight = Signal(p.input_bits + 1)
        m.d.comb += weight.eq(1 << ctx.slot)
        for n in range(p.max_outputs):
            code = i.payload.code
            # Unsigned codes, signed difference.
            term = (code[2 * n] - code[2 * n + 1]) * weight
            new = Mux(ctx.first_slot & ctx.first_read, 0, acc[n]) + term
            with m.If(took(i)):
                m.d.sync += acc[n].eq(new)
                with m.If(done):
                    m.d.sync += out[n].eq(new)
            with m.If(o.valid):
                m.d.comb += Assert(o.payload[n] == out[n], "shift-add: wrong partial sum")
    return Harness(cls(p), extra)


def pe(p: PEParams = TINY, cls=PE) -> Harness:
    """The whole PE (FPGA crossbar form): the contracts at its ports, and every request
    flagged `last` leaves as exactly one partial sum (none while idle, at most one per
    stage in flight)."""
    def extra(m, dut):
        in_flight(m, "pe", took(dut.i) & dut.i.payload.last, took(dut.o), capacity=4,
                  idle=~dut.busy)
    return Harness(cls(p, form=CrossbarForm.AMARANTH), extra)
