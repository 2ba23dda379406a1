"""Imported networks' features through the whole chip's RTL on Verilator, every logit against
the golden model: zero padding, stride, biases and average pooling (clipped ceil-mode
windows), then residual adds (identity and projection shortcuts) with layers that read an
earlier layer's map (docs/datapath.md section 4a, docs/chip.md), chains of dense layers, a
three-channel image and overlapping pools.

Each network is small (a Verilator build of a minute or two), on a small system with random
cells, gains, biases and read noise, its requantization calibrated on its own images so that
no layer is all zero or all clamped (testbench/random_config.py)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from cim_spec.config import SystemConfig
from cim_spec.mapping import map_network
from cim_spec.network import Add, Conv, Dense, Network, Pool
from golden import chip_model
from hdl.chip_plan import PoolMode, plan_chip
from testbench import chip_sim, random_config

CFG = SystemConfig(n_pe=8, array_rows=32, array_cols=12, replication=2, adc_bits=6,
                   input_bits=6, act_bits=6, adcs_per_pe=4, pulse_cycles=2)

# Padding and stride (A), a bias (A, D), average pools with clipped windows (P: 6 x 5 into
# 3 x 3, the last column's windows two words; Q: 4 x 4 into 2 x 2 with windows of 9, 3, 3
# and 1 words), a 4 x 4 kernel whose 48-input patch is cut across channels (B).
PADDED = Network("padded", (1, 11, 10), (
    Conv("A", 1, 3, 3, stride=2, pad=1, bias=True), Pool("P", 2, 2, mode="avg"),
    Conv("B", 3, 4, 4, pad=2), Pool("Q", 3, 3, mode="avg"),
    Dense("D", 16, 5, bias=True)))

# Residual blocks: an identity shortcut from a max-pooled map (R1 + M, M rescaled to the
# add's scale), a strided block whose shortcut is a 1 x 1 projection without ReLU that reads
# A1 (SC, signed, run before R2 although it comes after it), an average pool after the add.
RESIDUAL = Network("residual", (1, 10, 10), (
    Conv("S", 1, 4, 3, pad=1), Pool("M", 2, 2),
    Conv("R1", 4, 4, 3, pad=1, bias=True, relu=False), Add("A1", other="M"),
    Conv("R2", 4, 6, 3, stride=2, pad=1, relu=False),
    Conv("SC", 4, 6, 1, stride=2, bias=True, relu=False, src="A1"),
    Add("A2", other="SC", src="R2"), Pool("G", 2, 2, mode="avg"),
    Dense("D", 24, 5, bias=True)))

# A chain of dense layers (docs/chip.md): F1 reads the pooled map, F2 reads F1's outputs (a
# 1 x 1 map of 12 channels, cut into two chunks on 8 bit lines), the logits layer F3 reads
# F2's; biases on F1 and F3, none on F2.
DENSE_CHAIN = Network("chain", (1, 8, 8), (
    Conv("C", 1, 3, 3), Pool("P", 2, 2, mode="avg"),
    Dense("F1", 27, 12, bias=True), Dense("F2", 12, 7), Dense("F3", 7, 5, bias=True)))


# A three-channel (RGB-like) image, written into the image memory plane by plane: the first
# layer's 27-input patch (3 x 3 x 3, padded, stride 2, a bias) is cut into three chunks
# across channels on 12 bit lines, then a max pool and the dense logits layer.
RGB = Network("rgb", (3, 9, 8), (
    Conv("A", 3, 4, 3, stride=2, pad=1, bias=True), Pool("P", 2, 2),
    Dense("F", 24, 5, bias=True)))

# Overlapping pools (window 3, stride 2, as in ResNet stems): a max pool whose last row of
# windows is clipped (P: 14 x 11 into 7 x 5), an average pool with windows of 9, 6 and 4
# words (Q: 6 x 4 into 3 x 2); each conv output goes to up to four pooled words, from both
# replica groups.
OVERLAP = Network("overlap", (1, 14, 11), (
    Conv("A", 1, 3, 3, pad=1, bias=True), Pool("P", 3, 2),
    Conv("B", 3, 4, 2), Pool("Q", 3, 2, mode="avg"),
    Dense("F", 24, 5, bias=True)))


def feature_chip(net, seed, cfg=CFG, n_images=4):
    rng = np.random.default_rng(seed)
    mapping = map_network(cfg, net)
    chip = random_config.draw_chip(rng, mapping)
    images = rng.integers(0, 256, size=(n_images, *net.input_shape)).astype(np.uint8)
    images[rng.random(images.shape) < 0.3] = 0
    ids = rng.integers(0, 2 ** 32, size=n_images, dtype=np.int64)
    return random_config.calibrate(rng, chip, images, ids), images, ids


def check_maps_vary(chip, images, ids):
    """Every stored map of the calibrated chip varies (neither all zero nor all clamped), so
    a wrong padding, rounding or add would show in the logits."""
    trace = chip_model.run(chip, images, image_ids=ids, trace=True).trace
    for lp in plan_chip(chip).layers:
        if lp.trace is not None:
            t = trace[lp.trace]
            assert len(np.unique(t)) > 2, (lp.trace, np.unique(t))


def test_padding_stride_bias_and_average_pooling():
    chip, images, ids = feature_chip(PADDED, 11)
    plan = plan_chip(chip)
    assert plan.buffers["A_out"].pool_mode is PoolMode.AVG
    assert sorted(set(plan.buffers["B_out"].window_sizes().values())) == [1, 3, 9]
    check_maps_vary(chip, images, ids)
    res = chip_sim.simulate(chip, images, ids, progress=False)
    assert res.bitexact == len(images), [str(m) for m in res.mismatches[:3]]
    assert len({tuple(r) for r in res.logits.tolist()}) > 1


def test_residual_adds_and_earlier_sources():
    chip, images, ids = feature_chip(RESIDUAL, 12, replace(CFG, array_rows=64))
    plan = plan_chip(chip)
    assert [lp.name for lp in plan.schedule] == ["S", "R1", "SC", "R2", "D"]
    assert plan.layer("R1").other == "S_out" and plan.layer("R1").add_mult
    assert plan.layer("R2").other == "SC_out" and plan.buffers["SC_out"].signed
    check_maps_vary(chip, images, ids)
    res = chip_sim.simulate(chip, images, ids, progress=False, pauses=2)
    assert res.bitexact == len(images), [str(m) for m in res.mismatches[:3]]
    assert len({tuple(r) for r in res.logits.tolist()}) > 1


def test_dense_chain():
    """Three dense layers after a conv and a pool: every logit against the golden model, the
    hidden dense layers' outputs varying, each stored as a one-word map."""
    cfg = replace(CFG, array_cols=8)
    chip, images, ids = feature_chip(DENSE_CHAIN, 13, cfg)
    plan = plan_chip(chip)
    assert [lp.name for lp in plan.schedule] == ["C", "F1", "F2", "F3"]
    for name, src, n in (("F1", "C_out", 12), ("F2", "F1_out", 7)):
        assert plan.layer(name).src == src
        buf = plan.buffers[plan.layer(name).dst]
        assert (buf.channels, buf.depth) == (n, 1)
    assert plan.layer("F2").n_chunks == 2
    check_maps_vary(chip, images, ids)
    res = chip_sim.simulate(chip, images, ids, progress=False, pauses=3)
    assert res.bitexact == len(images), [str(m) for m in res.mismatches[:3]]
    assert len({tuple(r) for r in res.logits.tolist()}) > 1
    # A golden chip whose F2 requantizes differently: the hidden map F2 is the first that
    # differs (F1's map, stored before it, still agrees).
    dig = chip.digital
    other = replace(chip, digital=replace(dig, requant_mult={
        **dig.requant_mult, "F2": dig.requant_mult["F2"] * 3 // 2}))
    where = chip_sim.locate(chip, images[:1], ids[:1], golden=other)
    assert where[0].startswith("F2 (after F2) channel"), where


def test_three_channel_image():
    """Every logit of a network on 3 x 9 x 8 images against the golden model, under random
    traffic; an image whose channels are rotated gives other logits (the channels are not
    interchangeable), and the RTL agrees on those too."""
    chip, images, ids = feature_chip(RGB, 14)
    plan = plan_chip(chip)
    assert (plan.buffers["img"].channels, plan.layer("A").n_chunks) == (3, 3)
    check_maps_vary(chip, images, ids)
    rotated = np.roll(images[:2], 1, axis=1)
    both = np.concatenate([images, rotated])
    both_ids = np.concatenate([ids, ids[:2]])
    gold = chip_model.run(chip, both, image_ids=both_ids).logits
    assert (gold[:2] != gold[len(images):]).any(axis=1).all()
    res = chip_sim.simulate(chip, both, both_ids, progress=False, pauses=1)
    assert res.bitexact == len(both), [str(m) for m in res.mismatches[:3]]
    assert len({tuple(r) for r in res.logits.tolist()}) > 1


def test_overlapping_pools():
    """Max and average pools of window 3 and stride 2, clipped at the map's edge: every logit
    against the golden model under random traffic."""
    chip, images, ids = feature_chip(OVERLAP, 15)
    plan = plan_chip(chip)
    p, q = plan.buffers["A_out"], plan.buffers["B_out"]
    assert (p.pool, p.stride, p.height, p.width) == (3, 2, 7, 5) and p.overlaps
    assert sorted(set(q.window_sizes().values())) == [4, 6, 9]
    check_maps_vary(chip, images, ids)
    res = chip_sim.simulate(chip, images, ids, progress=False, pauses=2)
    assert res.bitexact == len(images), [str(m) for m in res.mismatches[:3]]
    assert len({tuple(r) for r in res.logits.tolist()}) > 1
