# amaranth: UnusedElaboratable=no
# (Amaranth's own linter option: the refused components' __init__ raised, so they are never
# elaborated; the warning would come at garbage collection, blamed on a later test.)
"""The RTL's plan runs padding, stride, biases, residual adds, average pooling
(docs/datapath.md section 4a), chains of dense layers, multi-channel images and overlapping
pools, and refuses, in one line, what its schedule cannot run yet: pools whose windows skip
positions (k < stride), a map read both pooled and unpooled, a pool of a pool, and conv
layers outside the replica groups (named replication); the board's link refuses
multi-channel images."""

import numpy as np
import pytest

from cim_spec import program
from cim_spec.config import SystemConfig
from cim_spec.mapping import map_network
from cim_spec.network import MCNN, Add, Conv, Dense, Network, Pool, pool_out
from hdl.board_chip import ChipHost
from hdl.chip import CimChip
from hdl.chip_plan import Buffer, ChipPlanError, plan_chip


def chip(net, cfg, replicate=None):
    mapping = map_network(cfg, net, replicate)
    rq = program.requant_layers(net)
    names = [lm.name for lm in mapping.layers]
    bias = {la.name: (0,) * (la.out_ch if isinstance(la, Conv) else la.n_out)
            for la in net.weight_layers() if la.bias}
    g = np.zeros((cfg.n_pe, cfg.array_rows, cfg.array_cols), np.int64)
    dig = program.Digital({n: 1000 for n in names}, {n: 1 << 15 for n in rq},
                          {n: 20 for n in rq}, bias=bias)
    return program.Chip(mapping, g, dig)


@pytest.mark.parametrize("net", [
    Network("pad", (1, 8, 8), (Conv("A", 1, 2, 3, pad=1), Pool("P", 2, 2), Dense("F", 32, 3))),
    Network("stride", (1, 9, 9), (Conv("A", 1, 2, 3, stride=2, bias=True),
                                  Dense("F", 32, 3, bias=True))),
    Network("avg", (1, 8, 8), (Conv("A", 1, 2, 3), Pool("P", 2, 2, mode="avg", ceil=False),
                               Dense("F", 18, 3))),
    Network("res", (1, 6, 6), (Conv("A", 1, 2, 3), Conv("B", 2, 2, 1, relu=False),
                               Add("R", other="A"), Dense("F", 32, 3))),
    Network("overlap", (1, 8, 8), (Conv("A", 1, 2, 3), Pool("P", 3, 2, mode="avg"),
                                   Dense("F", 18, 3))),
    Network("dense2", (1, 4, 4), (Dense("E", 16, 8), Dense("F", 8, 3))),
    Network("dense3", (1, 8, 8), (Conv("A", 1, 2, 3), Pool("P", 2, 2), Dense("E", 18, 8),
                                  Dense("G", 8, 6, bias=True), Dense("F", 6, 3))),
], ids=lambda n: n.name)
def test_padding_stride_bias_average_pools_and_adds_plan(net):
    """What the RTL gained (docs/datapath.md 4a, chains of dense layers) is no longer
    refused; a hidden dense layer's outputs are a one-word map that the next one reads."""
    plan = plan_chip(chip(net, SystemConfig()))
    assert [lp.name for lp in plan.schedule] == [la.name for la in net.weight_layers()]
    for layer, nxt in zip(net.layers, net.layers[1:], strict=False):
        if isinstance(layer, Dense):
            buf = plan.buffers[plan.layer(layer.name).dst]
            assert (buf.channels, buf.height, buf.width) == (layer.n_out, 1, 1)
            assert plan.layer(nxt.name).src == buf.name
            assert plan.layer(nxt.name).words == (0,)


@pytest.mark.parametrize("net, why", [
    (Network("gaps", (1, 8, 8), (Conv("A", 1, 2, 3), Pool("P", 2, 3, ceil=False),
                                 Dense("F", 8, 3))), r"windows that cover the map \(k >= "),
    (Network("twice", (1, 8, 8), (Conv("A", 1, 2, 3), Pool("P", 1, 1),
                                  Conv("B", 2, 2, 1, relu=False), Add("R", other="A"),
                                  Dense("F", 72, 3))),
     r"pool must be the only reader of A \(also read by \['R'\]\)"),
    (Network("pools", (1, 9, 9), (Conv("A", 1, 2, 2), Pool("P", 2, 2), Pool("Q", 2, 2),
                                  Dense("F", 8, 3))), "layer Q: the RTL runs a pool only"),
], ids=lambda v: v.name if isinstance(v, Network) else "")
def test_networks_beyond_the_rtl_are_refused(net, why):
    with pytest.raises(ChipPlanError, match=why):
        plan_chip(chip(net, SystemConfig()))


def test_multi_channel_images_plan_and_the_board_link_refuses_them():
    """The image memory holds a word of C pixels per position, as a feature map does; the
    first layer gathers (window word, channel) as from any map, and a dense layer reading
    the image flattens it (C, H, W) as the golden model does. The board's IMAGE frame is one
    plane, so its host refuses such a chip in one line."""
    net = Network("rgb", (3, 5, 4), (Conv("A", 3, 2, 3, pad=1), Dense("F", 40, 3)))
    plan = plan_chip(chip(net, SystemConfig()))
    img = plan.buffers["img"]
    assert (img.channels, img.height, img.width, img.word_bits) == (3, 5, 4, 3 * img.bits)
    gathers = [g for pe in plan.pes for en in pe.entries if en.layer == "A"
               for g in en.gather]
    assert sorted(gathers) == [(w, c) for w in range(9) for c in range(3)]
    dense = Network("rgbd", (3, 2, 2), (Dense("F", 12, 3),))
    gathers = [g for pe in plan_chip(chip(dense, SystemConfig())).pes for en in pe.entries
               for g in en.gather]
    assert sorted(gathers) == [(w, c) for w in range(4) for c in range(3)]
    with pytest.raises(ValueError, match="single-channel images; the network has 3 input"):
        ChipHost(CimChip(plan), 4)


def test_overlapping_windows_by_row_and_size():
    """`Buffer.pooled` (which pooled rows a source row goes to) and `window_sizes` (the
    clipped windows' sizes) against counting every window's rows, for windows of 1-4 and
    strides up to the window, ceil and floor mode."""
    for h in range(1, 12):
        for k in range(1, 5):
            for s in range(1, k + 1):
                for ceil in (True, False):
                    ho = pool_out(h, k, s, ceil)
                    b = Buffer("x", 1, ho, ho, 8, pool=k, pool_stride=s, src_hw=(h, h))
                    rows = {i: [p for p in range(ho) if p * s <= i < p * s + k]
                            for i in range(h)}
                    for i, want in rows.items():
                        lo, n = b.pooled(i, ho)
                        assert list(range(lo, lo + n)) == want, (h, k, s, ceil, i)
                    size = [sum(p in r for r in rows.values()) for p in range(ho)]
                    for (lr, lc), n in b.window_sizes().items():
                        if ho > 1 or (lr and lc):      # one pooled row is the last
                            assert n == size[-1 if lr else 0] * size[-1 if lc else 0]


def test_shared_conv_layers_are_refused_and_the_mcnn_still_plans():
    with pytest.raises(ChipPlanError, match=r"\['C3'\] are outside the replica groups"):
        plan_chip(chip(MCNN, SystemConfig(replication=3), replicate=["C1"]))
    assert plan_chip(chip(MCNN, SystemConfig(replication=3))).layers
