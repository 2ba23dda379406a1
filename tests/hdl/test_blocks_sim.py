"""Each PE block under amaranth.sim against the golden functions it implements."""

import numpy as np
import pytest

from cim_spec import noise
from cim_spec.config import ConfigError, SystemConfig
from golden import chip_model
from hdl.adc import AdcBank
from hdl.crossbar import Crossbar
from hdl.dac import DacDriver
from hdl.params import CrossbarForm, PEParams
from hdl.shift_add import ShiftAdd
from testbench import pe_model

from .sim_helpers import get_n, producer, run

P = PEParams.from_config(SystemConfig(), max_lines=24, read_noise=600, pe_seed=0xC0FFEE)
FEW_ADCS = PEParams.from_config(SystemConfig(adcs_per_pe=5, adc_conv_cycles=3, adc_bits=6),
                                max_lines=12)
# The FPGA crossbar with lane counts that do not divide the 24 lines (the last group is
# partial), and one line per cycle.
LANES_5 = PEParams.from_config(SystemConfig(), max_lines=24, read_noise=600, pe_seed=7, lanes=5)
LANES_1 = PEParams.from_config(SystemConfig(), max_lines=24, lanes=1)
# The FPGA form's shared ADC gain multipliers: not a divisor of 24, and one.
MULTS_5 = PEParams.from_config(SystemConfig(), max_lines=24, gain_mults=5)
MULTS_1 = PEParams.from_config(SystemConfig(), max_lines=24, gain_mults=1)
AMARANTH, VERILOG = CrossbarForm.AMARANTH, CrossbarForm.VERILOG


def test_dac_emits_bit_serial_slots():
    rng = np.random.default_rng(1)
    reqs = pe_model.random_requests(rng, P, 12)
    dut = DacDriver(P)
    got = []

    async def consumer(ctx):
        got.extend(await get_n(ctx, dut.o, len(reqs) * P.input_bits, rng, stall=0.3))

    run(dut, producer(dut.i, [r.fields() for r in reqs], rng, 0.3), consumer)
    for i, slot in enumerate(got):
        r, k = reqs[i // P.input_bits], i % P.input_bits
        want_bits = sum(((x >> k) & 1) << c for c, x in enumerate(r.x))
        assert slot.bits == want_bits
        assert (slot.ctx.slot, slot.ctx.first_slot, slot.ctx.last_slot) == (
            k, k == 0, k == P.input_bits - 1)
        assert (slot.row0, slot.nonce, slot.ctx.n_lines, slot.ctx.gain) == (
            r.row0, r.nonce, r.n_lines, r.gain)
        assert (slot.ctx.first_read, slot.ctx.last_read) == (r.first, r.last)


def test_dac_holds_each_pulse_for_pulse_cycles():
    """With the output always ready, slot k+1 is offered exactly pulse_cycles after slot k."""
    rng = np.random.default_rng(2)
    reqs = pe_model.random_requests(rng, P, 3)
    dut = DacDriver(P)
    times = []

    async def consumer(ctx):
        ctx.set(dut.o.ready, 1)
        t = 0
        while len(times) < len(reqs) * P.input_bits:
            _, _, valid = await ctx.tick().sample(dut.o.valid)
            if valid:
                times.append(t)
            t += 1

    run(dut, producer(dut.i, [r.fields() for r in reqs]), consumer)
    assert set(np.diff(times)) == {P.pulse_cycles}


def test_default_lanes_cost_at_most_one_cycle_per_slot():
    """The default lanes fit the groups and the RAM read in the modelled slot; the register
    before the adder trees is the one cycle more."""
    assert P.lanes == 6
    assert P.crossbar_cycles(24, CrossbarForm.AMARANTH) == 6 == P.pulse_cycles + 1
    assert P.crossbar_cycles(18, CrossbarForm.AMARANTH) == 5 == P.pulse_cycles
    assert FEW_ADCS.lanes == 3 and LANES_5.lanes == 5 and LANES_1.lanes == 1
    for p in (P, FEW_ADCS, PEParams(pulse_cycles=1, max_lines=6)):
        for lines in range(2, p.max_lines + 1, 2):
            assert p.crossbar_cycles(lines, CrossbarForm.AMARANTH) <= p.slot_cycles(lines) + 1
    assert LANES_1.slot_cycles(24, CrossbarForm.AMARANTH) == 26
    with pytest.raises(ConfigError, match="lanes"):
        PEParams(max_lines=24, lanes=25)
    with pytest.raises(ConfigError, match="lanes"):
        PEParams(lanes=0)


@pytest.mark.parametrize("p", [P, FEW_ADCS, LANES_5, LANES_1],
                         ids=["noise", "few-adcs", "5-lanes-noise", "1-lane"])
def test_crossbar_currents_match_golden(p):
    rng = np.random.default_rng(3)
    g = pe_model.random_array(rng, p)
    slots = []
    for _ in range(40):
        n_lines = 2 * int(rng.integers(1, p.max_outputs + 1))
        slots.append(dict(bits=int(rng.integers(0, 2 ** p.cols)),
                          row0=int(rng.integers(0, p.rows - n_lines + 1)),
                          nonce=int(rng.integers(0, 2 ** 32)),
                          ctx=dict(slot=int(rng.integers(0, p.input_bits)), n_lines=n_lines)))
    dut = Crossbar(p, init=g, form=CrossbarForm.AMARANTH)
    got = []

    async def consumer(ctx):
        got.extend(await get_n(ctx, dut.o, len(slots), rng, stall=0.3))

    run(dut, producer(dut.i, slots, rng, 0.2), consumer)
    for s, out in zip(slots, got, strict=True):
        bits = np.array([(s["bits"] >> c) & 1 for c in range(p.cols)])
        rows = s["row0"] + np.arange(s["ctx"]["n_lines"])
        want = g[rows] @ bits
        if p.read_noise:
            h = noise.line_hash(p.pe_seed, s["nonce"], s["ctx"]["slot"], rows)
            want = noise.apply_read_noise(want, noise.byte_sum(h), p.read_noise)
        want = np.concatenate([want, np.zeros(p.max_lines - len(want), dtype=np.int64)])
        assert [int(v) for v in out.current] == want.tolist()


@pytest.mark.parametrize("p", [P, LANES_5, LANES_1], ids=["6-lanes", "5-lanes", "1-lane"])
def test_crossbar_latency_and_period(p):
    """With the output always ready, each slot's currents appear crossbar_cycles after it is
    sampled, and the next slot is taken in the cycle they are handed on."""
    rng = np.random.default_rng(6)
    g = pe_model.random_array(rng, p)
    lines = [24, 2, 10, 12, 0, 24]
    slots = [dict(bits=int(rng.integers(0, 2 ** p.cols)), row0=int(rng.integers(0, 100)),
                  ctx=dict(n_lines=n)) for n in lines]
    dut = Crossbar(p, init=g, form=CrossbarForm.AMARANTH)
    taken, done = [], []

    async def bench(ctx):
        ctx.set(dut.o.ready, 1)
        ctx.set(dut.i.valid, 1)
        t = 0
        while len(done) < len(slots):
            if len(taken) < len(slots):
                ctx.set(dut.i.payload, slots[len(taken)])
            ctx.set(dut.i.valid, len(taken) < len(slots))
            _, _, iv, ir, ov = await ctx.tick().sample(dut.i.valid, dut.i.ready, dut.o.valid)
            if iv and ir:
                taken.append(t)
            if ov:
                done.append(t)
            t += 1

    run(dut, bench)
    assert [d - s for s, d in zip(taken, done, strict=True)] == [
        p.crossbar_cycles(n, CrossbarForm.AMARANTH) for n in lines]
    assert taken[1:] == done[:-1]


@pytest.mark.parametrize("p, form", [
    (P, VERILOG), (FEW_ADCS, VERILOG), (P, AMARANTH), (FEW_ADCS, AMARANTH), (MULTS_5, AMARANTH),
    (MULTS_1, AMARANTH)],
    ids=["32-adcs", "5-adcs", "8-mults", "5-adcs-shared", "5-mults", "1-mult"])
def test_adc_codes_match_golden(p, form):
    rng = np.random.default_rng(4)
    cfg = SystemConfig(adc_bits=p.adc_bits)
    top = 2 ** p.current_bits - 1
    samples = []
    for _ in range(30):
        n_lines = 2 * int(rng.integers(1, p.max_outputs + 1))
        cur = rng.integers(0, top + 1, size=p.max_lines)
        cur[rng.random(p.max_lines) < 0.1] = top
        cur[n_lines:] = 0   # the crossbar reads unselected lines as 0
        samples.append(dict(current=cur.tolist(),
                            ctx=dict(n_lines=n_lines, gain=int(rng.integers(1, 2 ** 18)))))
    dut = AdcBank(p, form)
    got = []

    async def consumer(ctx):
        got.extend(await get_n(ctx, dut.o, len(samples), rng, stall=0.3))

    run(dut, producer(dut.i, samples, rng, 0.2), consumer)
    for s, out in zip(samples, got, strict=True):
        want = chip_model.adc_convert(s["current"], s["ctx"]["gain"], cfg)
        assert [int(v) for v in out.code] == want.tolist()


def test_default_gain_mults_keep_the_slot_period():
    """The fewest shared multipliers that fit the slot; the macros' ADC timing is unchanged."""
    assert P.gain_mults == 8 and P.adc_cycles(24, AMARANTH) == 4 and P.adc_cycles(24) == 1
    assert FEW_ADCS.gain_mults == 2           # 12 lines, period 3 x 3 + 1: 6 + 1 cycles fit
    assert FEW_ADCS.adc_cycles(12, AMARANTH) == FEW_ADCS.adc_cycles(12) == 9
    for p in (P, FEW_ADCS, PEParams(pulse_cycles=3, max_lines=6), PEParams(max_lines=2)):
        for lines in range(2, p.max_lines + 1, 2):
            assert p.adc_cycles(lines, AMARANTH) + 1 <= p.slot_cycles(lines)
    assert MULTS_1.slot_cycles(24, AMARANTH) == 26 and MULTS_5.slot_cycles(24, AMARANTH) == 7
    with pytest.raises(ConfigError, match="gain_mults"):
        PEParams(max_lines=24, gain_mults=25)
    with pytest.raises(ConfigError, match="gain_mults"):
        PEParams(gain_mults=0)


@pytest.mark.parametrize("p, form", [(P, VERILOG), (FEW_ADCS, VERILOG), (P, AMARANTH),
                                     (FEW_ADCS, AMARANTH), (MULTS_5, AMARANTH)],
                         ids=["32-adcs", "5-adcs", "8-mults", "5-adcs-shared", "5-mults"])
def test_adc_latency_and_period(p, form):
    """With the output always ready, each sample's codes appear adc_cycles + 1 (the output
    register) after it is taken, and the next sample is taken as they are handed on."""
    lines = [24, 2, 10, 12, 6, 24, 8]
    lines = [min(n, p.max_lines) for n in lines]
    samples = [dict(current=[7] * p.max_lines, ctx=dict(n_lines=n, gain=3 << 16))
               for n in lines]
    dut = AdcBank(p, form)
    taken, done = [], []

    async def bench(ctx):
        ctx.set(dut.o.ready, 1)
        t = 0
        while len(done) < len(samples):
            if len(taken) < len(samples):
                ctx.set(dut.i.payload, samples[len(taken)])
            ctx.set(dut.i.valid, len(taken) < len(samples))
            _, _, iv, ir, ov = await ctx.tick().sample(dut.i.valid, dut.i.ready, dut.o.valid)
            if iv and ir:
                taken.append(t)
            if ov:
                done.append(t)
            t += 1

    run(dut, bench)
    assert [d - s for s, d in zip(taken, done, strict=True)] == [
        p.adc_cycles(n, form) + 1 for n in lines]
    assert taken[1:] == done[:-1]


def test_shift_add_accumulates_differential_chunks():
    rng = np.random.default_rng(5)
    p = P
    beats, want = [], []
    for _ in range(15):
        chunks = int(rng.integers(1, 4))
        total = np.zeros(p.max_outputs, dtype=np.int64)
        for c in range(chunks):
            for k in range(p.input_bits):
                code = rng.integers(0, 2 ** p.adc_bits, size=p.max_lines)
                if rng.random() < 0.1:
                    code[0::2], code[1::2] = 2 ** p.adc_bits - 1, 0   # largest positive
                total += (code[0::2] - code[1::2]) << k
                beats.append(dict(code=code.tolist(), ctx=dict(
                    slot=k, first_slot=k == 0, last_slot=k == p.input_bits - 1,
                    first_read=c == 0, last_read=c == chunks - 1)))
        want.append(total.tolist())
    dut = ShiftAdd(p)
    got = []

    async def consumer(ctx):
        got.extend(await get_n(ctx, dut.o, len(want), rng, stall=0.4))

    run(dut, producer(dut.i, beats, rng, 0.2), consumer)
    assert [[int(v) for v in s] for s in got] == want
