"""The PE under amaranth.sim, with the Amaranth crossbar, against the golden model."""

import numpy as np
import pytest

from cim_spec.config import SystemConfig
from hdl.params import CrossbarForm, PEParams
from hdl.pe import PE
from testbench import pe_model

from .sim_helpers import get_n, put_all, run

SMALL = SystemConfig(array_rows=32, array_cols=8, adc_bits=5, adcs_per_pe=4, input_bits=4,
                     act_bits=4, pulse_cycles=2, adc_conv_cycles=2)


@pytest.mark.parametrize("cfg, noise, lanes, mults", [
    (SystemConfig(), 0, None, None), (SystemConfig(), 900, None, None), (SMALL, 0, None, None),
    (SMALL, 2000, None, None),
    # FPGA crossbar lanes that do not divide the lines (24 = 4 x 7 - 4), and one lane; ADC
    # gain multipliers that do not divide them (24 = 5 x 5 - 1), and one.
    (SystemConfig(), 900, 7, 5), (SMALL, 2000, 1, 1)],
    ids=["paper", "paper-noise", "small", "small-noise", "paper-7-lanes-5-mults",
         "small-1-lane-1-mult"])
def test_pe_matches_golden_with_backpressure(cfg, noise, lanes, mults):
    rng = np.random.default_rng(noise + cfg.array_rows)
    p = PEParams.from_config(cfg, max_lines=min(24, cfg.array_rows), read_noise=noise,
                             pe_seed=int(rng.integers(0, 2 ** 32)), lanes=lanes,
                             gain_mults=mults)
    g = pe_model.random_array(rng, p)
    reqs = pe_model.random_requests(rng, p, 60)
    want = pe_model.expected_sums(pe_model.golden_config(cfg, p), p, g, reqs)
    dut = PE(p, init=g, form=CrossbarForm.AMARANTH)
    got = []

    async def producer(ctx):
        await put_all(ctx, dut.i, [r.fields() for r in reqs], rng, gap=0.2)

    async def consumer(ctx):
        got.extend(await get_n(ctx, dut.o, len(want), rng, stall=0.3))

    run(dut, producer, consumer)
    assert [[int(v) for v in s] for s in got] == want


def test_programming_port_writes_single_cells():
    """Writes through the programming port change exactly the addressed cell (Amaranth form)."""
    cfg = SMALL
    rng = np.random.default_rng(11)
    p = PEParams.from_config(cfg, max_lines=12)
    g = pe_model.random_array(rng, p)
    writes = []
    for _ in range(40):
        r, c = int(rng.integers(0, p.rows)), int(rng.integers(0, p.cols))
        code = int(rng.integers(0, 2 ** p.code_bits))
        g[r, c] = code
        writes.append(dict(row=r, col=c, code=code))
    reqs = pe_model.random_requests(rng, p, 30)
    want = pe_model.expected_sums(pe_model.golden_config(cfg, p), p, g, reqs)
    dut = PE(p, init=pe_model.random_array(np.random.default_rng(11), p),
             form=CrossbarForm.AMARANTH)
    got = []

    async def testbench(ctx):
        await put_all(ctx, dut.prog, writes)
        await put_all(ctx, dut.i, [r.fields() for r in reqs])

    async def consumer(ctx):
        got.extend(await get_n(ctx, dut.o, len(want)))

    run(dut, testbench, consumer)
    assert [[int(v) for v in s] for s in got] == want


@pytest.mark.parametrize("cfg, lanes, mults, lines", [
    (SystemConfig(), None, None, 24), (SystemConfig(), None, None, 8),
    (SystemConfig(), 1, None, 24), (SMALL, None, None, 12), (SMALL, 5, None, 12),
    (SMALL.with_(adcs_per_pe=2), 12, None, 12),
    # One slot per read: between reads only the crossbar itself says it is still busy.
    (SMALL.with_(input_bits=1, act_bits=1, adcs_per_pe=12, adc_conv_cycles=1), 2, None, 12),
    # The shared ADC multipliers set the period (24 lines, one multiplier: 25 + 1 cycles),
    # and fewer than the default, where only the latency grows (5: 6 cycles, period 7).
    (SystemConfig(), None, 1, 24), (SystemConfig(), None, 5, 24), (SystemConfig(), None, 5, 6)],
    ids=["paper", "paper-8-lines", "paper-1-lane", "small", "small-5-lanes", "small-adc-bound",
         "small-1-bit", "paper-1-mult", "paper-5-mults", "paper-5-mults-6-lines"])
def test_busy_cycles_of_the_fpga_crossbar(cfg, lanes, mults, lines):
    """Back-to-back vectors, output always ready: the PE's busy-cycle counter against
    PEParams.busy_cycles(form=AMARANTH) (docs/pe.md)."""
    p = PEParams.from_config(cfg, max_lines=min(24, cfg.array_rows), lanes=lanes,
                             gain_mults=mults)
    rng = np.random.default_rng(12)
    n = 6
    reqs = [r.fields() | dict(row0=0, n_lines=lines, first=1, last=1)
            for r in pe_model.random_requests(rng, p, n)[:n]]
    dut = PE(p, init=pe_model.random_array(rng, p), form=CrossbarForm.AMARANTH)
    res = {}

    async def producer(ctx):
        await put_all(ctx, dut.i, reqs)

    async def consumer(ctx):
        await get_n(ctx, dut.o, n)
        await ctx.tick().repeat(3)
        res["busy"] = ctx.get(dut.cycles)

    run(dut, producer, consumer)
    assert res["busy"] == p.busy_cycles(n, lines, CrossbarForm.AMARANTH)
    if lanes is None and mults is None:
        # The defaults: at most the crossbar's register more per slot (docs/pe.md).
        assert p.slot_cycles(lines, CrossbarForm.AMARANTH) <= p.slot_cycles(lines) + 1
