# amaranth: UnusedElaboratable=no
# (Amaranth's own linter option: the refused components' __init__ raised, so they are never
# elaborated; the warning would come at garbage collection, blamed on a later test.)
"""The update engine as the chip holds it (hdl/chip_engine.py): under amaranth.sim against the
golden engine, with the FC-input words arriving ahead of the logits (the chip's order) and
back-pressure everywhere; the rule's checks; the chip-with-engine harness lints clean."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.sim import Simulator

from cim_spec import program
from cim_spec.config import SystemConfig
from cim_spec.mapping import map_network
from cim_spec.network import Conv, Dense, Network, Pool
from golden.update_engine import EngineParams
from golden.update_engine import UpdateEngine as GoldenEngine
from hdl import build
from hdl.chip import CimChip
from hdl.chip_engine import ChipEngine, EngineRule
from hdl.chip_plan import plan_chip
from hdl.harness import LOADER_SOURCE, SimHarness

from .sim_helpers import put_all
from .test_lint import DENSE_ONLY, TINY, lint

# A last layer reading a pooled map of 4 words x 3 channels: a FIFO deeper than one word.
PERIOD_S = 1e-8
SMALL = Network("small", (1, 6, 6), (Conv("A", 1, 3, 3), Pool("P", 2, 2), Dense("D", 12, 4)))


def plan_of(net):
    cfg = SystemConfig(n_pe=2, array_rows=32, array_cols=16)
    mapping = map_network(cfg, net)
    names = [lm.name for lm in mapping.layers]
    return plan_chip(program.Chip(mapping, np.zeros((2, 32, 16), dtype=np.int64),
                                  program.Digital(
        adc_gain={n: 4000 for n in names}, requant_mult={n: 2 ** 15 for n in names[:-1]},
        requant_shift={n: 18 for n in names[:-1]}, read_noise=5, noise_seed=1)))


@pytest.mark.parametrize("seed", [1, 2])
def test_chip_engine_pairs_words_and_logits_like_golden(seed):
    plan = plan_of(SMALL)
    buf = plan.buffers[plan.layers[-1].src]
    assert (buf.channels, buf.depth) == (3, 4)
    rng = np.random.default_rng(seed)
    rule = EngineRule(threshold=int(rng.integers(20, 200)), margin=int(rng.integers(0, 3)),
                      acc_bits=10)
    p = EngineParams(n_out=4, n_in=12, lanes=3, input_bits=buf.bits,
                     logit_bits=plan.acc_bits, acc_bits=10)
    golden = GoldenEngine(p, rule.threshold, rule.margin)
    n = 40
    logits = rng.integers(-4, 5, size=(n, 4))                   # ties and near-ties
    logits[3] = [-(2 ** (plan.acc_bits - 1)), 2 ** (plan.acc_bits - 1) - 1, 0, 0]
    labels = rng.integers(0, 4, size=n)
    labels[[5, 9]] = [4, 7]                                     # no label: no update
    x = rng.integers(0, 2 ** buf.bits, size=(n, 12))
    x[:, rng.random(12) < 0.2] = 0
    want = [(r.out, r.inp, int(r.down)) for k in range(n)
            for r in golden.image(logits[k], int(labels[k]), x[k])]
    assert len(want) > 30 and any(w[2] for w in want) and not all(w[2] for w in want)
    dut = ChipEngine(plan, rule)

    def word(k, w):     # lane c of word w is input c * depth + w, at bits [c*bits, ...)
        return sum(int(x[k, c * 4 + w]) << (c * buf.bits) for c in range(3))

    done, got = set(), []

    async def features(ctx):
        await put_all(ctx, dut.features, [word(k, w) for k in range(n) for w in range(4)],
                      rng, 0.3)
        done.add("features")

    async def images(ctx):
        for k in range(n):
            ctx.set(dut.label, int(labels[k]))
            await put_all(ctx, dut.logits, [[int(v) for v in logits[k]]], rng, 0.5)
        await ctx.tick().until(dut.updates_done == n)
        assert not ctx.get(dut.busy)
        done.add("images")

    async def requests(ctx):        # takes every request there is, with back-pressure
        while True:
            ready = bool(rng.random() >= 0.4)
            ctx.set(dut.requests.ready, ready)
            _, _, valid, payload = await ctx.tick().sample(dut.requests.valid,
                                                           dut.requests.payload)
            if valid and ready:
                got.append((int(payload.out), int(payload.inp), int(payload.down)))

    sim = Simulator(dut)
    sim.add_clock(PERIOD_S)
    sim.add_testbench(features)
    sim.add_testbench(images)
    sim.add_testbench(requests, background=True)
    # A deadline, not the testbenches' end: an engine that stalls or loses a word fails.
    sim.run_until(PERIOD_S * 200 * n)
    assert done == {"features", "images"}
    assert got == want


@pytest.mark.parametrize("rule, error", [
    (EngineRule(0, 0), "threshold"),
    (EngineRule(2048, 0), "threshold"),            # above 2**(acc_bits-1) - 1
    (EngineRule(True, 0), "threshold"),
    (EngineRule(100, -1), "margin"),
    (EngineRule(100, 2 ** 18), "margin"),          # wider than the chip's 18-bit logits
    (EngineRule(100, 1.5), "margin"),
    (EngineRule(100, 0, acc_bits=9), "acc_bits"),  # below input_bits + 2
])
def test_chip_refuses_a_bad_rule(rule, error):
    plan = plan_of(TINY)
    assert plan.acc_bits == 18
    with pytest.raises(ValueError, match=error):
        CimChip(plan, engine=rule)


def test_chip_engine_needs_a_feature_map_and_a_rule():
    with pytest.raises(ValueError, match="feature map"):
        CimChip(plan_of(DENSE_ONLY), engine=EngineRule(100, 0))
    with pytest.raises(TypeError, match="EngineRule"):
        CimChip(plan_of(TINY), engine=True)
    # The largest rule the chip holds is taken, and gives the chip its engine's ports.
    chip = CimChip(plan_of(TINY), engine=EngineRule(2047, 2 ** 18 - 1))
    plain = CimChip(plan_of(TINY))
    for c in (chip, plain):         # looked at, not built
        c._MustUse__silence = True
    assert {"label", "requests", "updates_done"} <= set(chip.signature.members)
    assert not {"label", "requests"} & set(plain.signature.members)


def test_harness_with_engine_lints_clean(tmp_path):
    """The smallest plan (a one-word map of 2 channels, 2 classes) with the engine: every
    width the engine derives at its smallest."""
    sources = build.generate(SimHarness(plan_of(TINY), engine=EngineRule(3, 1)), "harness",
                             tmp_path)
    res = lint([*sources, LOADER_SOURCE], "harness")
    assert res.returncode == 0 and "%Warning" not in res.stderr, res.stderr[-3000:]
