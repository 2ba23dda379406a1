"""The chip's logit argmax (hdl.chip.argmax_first) against numpy's first-maximum rule, ties
included, for every count of logits a network could have up to 17 (odd and even trees)."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth import Module, Signal, signed
from amaranth.sim import Simulator

from hdl.chip import argmax_first


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 10, 17])
def test_first_maximum_wins(n):
    values = [Signal(signed(6), name=f"v{i}") for i in range(n)]
    out = Signal(range(max(n, 2)))
    m = Module()
    m.d.comb += out.eq(argmax_first(values))
    rng = np.random.default_rng(n)
    # Few distinct values, so that most vectors have tied maxima.
    cases = rng.integers(-4, 4, size=(300, n))

    async def bench(ctx):
        for row in cases:
            for s, v in zip(values, row, strict=True):
                ctx.set(s, int(v))
            assert ctx.get(out) == int(np.argmax(row)), row

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
