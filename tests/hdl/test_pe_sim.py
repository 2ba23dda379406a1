"""The PE under amaranth.sim, with the Amaranth crossbar, against the golden model."""

import numpy as np
import pytest

from cim_core.config import SystemConfig
from hdl.params import PEParams
from hdl.pe import PE
from testbench import pe_model

from .sim_helpers import get_n, put_all, run

SMALL = SystemConfig(array_rows=32, array_cols=8, adc_bits=5, adcs_per_pe=4, input_bits=4,
                     act_bits=4, pulse_cycles=2, adc_conv_cycles=2)


@pytest.mark.parametrize("cfg, noise", [(SystemConfig(), 0), (SystemConfig(), 900),
                                        (SMALL, 0), (SMALL, 2000)],
                         ids=["paper", "paper-noise", "small", "small-noise"])
def test_pe_matches_golden_with_backpressure(cfg, noise):
    rng = np.random.default_rng(noise + cfg.array_rows)
    p = PEParams.from_config(cfg, max_lines=min(24, cfg.array_rows), read_noise=noise,
                             pe_seed=int(rng.integers(0, 2 ** 32)))
    g = pe_model.random_array(rng, p)
    reqs = pe_model.random_requests(rng, p, 60)
    want = pe_model.expected_sums(pe_model.golden_config(cfg, p), p, g, reqs)
    dut = PE(p, init=g, form="amaranth")
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
    dut = PE(p, init=pe_model.random_array(np.random.default_rng(11), p), form="amaranth")
    got = []

    async def testbench(ctx):
        await put_all(ctx, dut.prog, writes)
        await put_all(ctx, dut.i, [r.fields() for r in reqs])

    async def consumer(ctx):
        got.extend(await get_n(ctx, dut.o, len(want)))

    run(dut, testbench, consumer)
    assert [[int(v) for v in s] for s in got] == want
