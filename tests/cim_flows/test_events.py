"""Event counts of any mapped network (cim_flows.events) against today's mCNN figures and, for a
network with every feature, against a plain loop over the golden model's operations."""

from __future__ import annotations

from dataclasses import asdict, replace

import numpy as np
import pytest

from cim_flows import energy as E
from cim_flows.events import Events, network_events, total
from cim_spec.config import SystemConfig
from cim_spec.mapping import map_network
from cim_spec.network import MCNN, Add, Conv, Dense, Network, Pool, pool_out

# Padding, stride, biases, relu-free layers, an identity shortcut from an activation map (a
# rescale) and a projection shortcut (none), a clipped max pool, a clipped ceil-mode and a
# floor-mode average pool, a 5 x 5 conv whose chunks cut across channels, three dense layers.
EVERY = Network("every", (2, 15, 15), (
    Conv("c1", 2, 4, 3, pad=1, bias=True),
    Pool("p1", 2, 2),                                   # 15 -> 8, the last window clipped
    Conv("c2", 4, 4, 3, pad=1, relu=False),
    Add("a1", other="p1"),
    Conv("c3", 4, 8, 3, stride=2, pad=1, relu=False),
    Conv("proj", 4, 8, 1, stride=2, src="a1", bias=True, relu=False),
    Add("a2", other="proj", src="c3"),
    Pool("p2", 3, 3, mode="avg"),                       # 4 -> 2, windows of 3 and 1
    Conv("c4", 8, 6, 5, pad=2, bias=True),
    Pool("p3", 2, 1, mode="avg", ceil=False),
    Dense("d1", 6, 10, bias=True),
    Dense("d2", 10, 8),
    Dense("fc", 8, 10, bias=True)))


def loop_events(mapping) -> dict[str, Events]:
    """The events counted one operation at a time, walking the network as golden/reference.py
    computes it: every (position, chunk) read, every slot, line and input of it; every pool
    window's elements; every element of an add."""
    net, bits = mapping.network, mapping.config.input_bits
    out, owner = {}, {}
    for i, layer in enumerate(net.layers):
        src = net.source(i)
        shape = net.input_shape if src is None else net.output_shape_of(src)
        if isinstance(layer, (Conv, Dense)):
            owner[layer.name] = layer.name
            ev = out[layer.name] = Events()
            lm, assign = mapping.layer(layer.name), mapping.assign(layer.name)
            last = layer is net.layers[-1]
            for p in range(lm.positions):
                y, x = divmod(p, lm.out_hw[1])
                for c in range(lm.n_chunks):
                    b = mapping.blocks[int(assign[p][c])]
                    for j in range(b.n_in):
                        idx = b.in0 + j
                        inside = True
                        if isinstance(layer, Conv):
                            ch, r = divmod(idx, layer.k * layer.k)
                            dy, dx = divmod(r, layer.k)
                            yy = y * layer.stride + dy - layer.pad
                            xx = x * layer.stride + dx - layer.pad
                            inside = 0 <= yy < shape[1] and 0 <= xx < shape[2]
                        if inside:
                            ev.buffer_bytes += 1
                    for _k in range(bits):
                        ev.slots += 1
                        for j in range(b.n_in):
                            idx = b.in0 + j
                            if isinstance(layer, Conv):
                                ch, r = divmod(idx, layer.k * layer.k)
                                dy, dx = divmod(r, layer.k)
                                yy = y * layer.stride + dy - layer.pad
                                xx = x * layer.stride + dx - layer.pad
                                if not (0 <= yy < shape[1] and 0 <= xx < shape[2]):
                                    continue     # a padded line is never pulsed
                            ev.input_line_slots += 1
                            ev.cell_slots += b.n_rows
                        for _line in range(b.n_rows):
                            ev.output_line_slots += 1
                            ev.conversions += 1
                            ev.shift_adds += 1
                for _o in range(lm.n_out):
                    ev.psum_adds += lm.n_chunks - 1
                    ev.bias_adds += int(layer.bias)
                    ev.macs += lm.n_in
                    if not last:
                        ev.requants += 1
                        ev.buffer_bytes += 1
            continue
        key = owner[src] if src is not None else layer.name
        owner[layer.name] = key
        ev = out.setdefault(key, Events())
        c, h, w = shape
        if isinstance(layer, Pool):
            ho, wo = pool_out(h, layer.k, layer.stride, layer.ceil), \
                pool_out(w, layer.k, layer.stride, layer.ceil)
            for _ch in range(c):
                for oy in range(ho):
                    for ox in range(wo):
                        win = [(yy, xx) for yy in range(oy * layer.stride,
                                                        min(oy * layer.stride + layer.k, h))
                               for xx in range(ox * layer.stride,
                                               min(ox * layer.stride + layer.k, w))]
                        if layer.mode == "max":
                            ev.pool_compares += len(win) - 1
                        else:
                            ev.avg_adds += len(win)        # the sum, then + n // 2
                            ev.avg_mults += 1              # x R >> F
        else:
            for _e in range(c * h * w):
                ev.buffer_bytes += 1
                ev.res_rescales += int(not net.is_signed(layer.other))
                ev.res_adds += 1
    return out


@pytest.mark.parametrize("overrides,replicate", [
    (dict(n_pe=24), None),
    (dict(n_pe=40, replication=2), ["c1", "c3"]),
    (dict(n_pe=40, array_cols=12, input_bits=5, act_bits=5, adc_bits=6), None),
], ids=["paper", "r2-some", "narrow"])
def test_every_feature_counts_match_a_loop_over_the_operations(overrides, replicate):
    mapping = map_network(SystemConfig(**overrides), EVERY, replicate)
    fast, slow = network_events(mapping), loop_events(mapping)
    assert list(fast) == list(slow) == ["c1", "c2", "c3", "proj", "c4", "d1", "d2", "fc"]
    for name in slow:
        assert asdict(fast[name]) == asdict(slow[name]), name
    ev = total(fast)
    # Every feature left its mark (a count that stayed 0 would test nothing).
    for f in ("pool_compares", "avg_adds", "avg_mults", "res_rescales", "res_adds",
              "bias_adds", "psum_adds", "requants"):
        assert getattr(ev, f) > 0, f
    assert fast["c4"].psum_adds > 0 and fast["d1"].requants == 10 and fast["fc"].requants == 0


def test_padding_drives_fewer_lines_in_closed_form():
    mapping = map_network(SystemConfig(n_pe=24), EVERY)
    ev = network_events(mapping)
    # c1: 3 x 3, pad 1 on 15 x 15: 13 positions per axis see 3 rows, 2 edge ones see 2.
    inside = (13 * 3 + 2 * 2) ** 2                  # inputs inside the map, per channel
    assert ev["c1"].input_line_slots == 2 * inside * 8
    assert ev["c1"].input_line_slots < 225 * 18 * 8
    # ...but every read samples and converts all its lines in every slot:
    assert ev["c1"].conversions == 225 * 2 * 8 * 8      # 2 chunks (a channel each), 8 lines
    # a1 rescales its activation shortcut, a2's projection shortcut is on its scale already.
    assert ev["c2"].res_rescales == 4 * 8 * 8 and ev["c3"].res_rescales == 0
    assert ev["c3"].res_adds == 8 * 4 * 4
    # p2: 3 x 3 windows at stride 3 on 4 x 4 are 9, 3, 3 and 1 elements; p3 has one of 4.
    assert ev["c3"].avg_adds == 8 * 16 and ev["c3"].avg_mults == 8 * 4
    assert ev["c4"].avg_adds == 6 * 4 and ev["c4"].avg_mults == 6


def test_mcnn_gives_todays_figures():
    """The general count gives the mCNN's figures of the model it replaced (docs/energy.md
    section 2), event for event and to the last digit of the energy."""
    today = dict(slots=8640, cell_slots=1486848, input_line_slots=78432,
                 output_line_slots=163712, conversions=163712, shift_adds=163712,
                 psum_adds=4226, requants=5996, pool_compares=5156, buffer_bytes=15800,
                 macs=92928)
    for r, cycles in ((1, 21600), (3, 7480)):
        s = E.system(SystemConfig(replication=r))
        ev = s["events"]
        assert {k: ev[k] for k in today} == today
        assert all(v == 0 for k, v in ev.items() if k not in today and k != "ops")
        assert s["energy_total_pj"] == pytest.approx(625829.7245370371, rel=1e-12)
        assert s["gops_per_w"] == pytest.approx(296.9753476274854, rel=1e-12)
        assert s["cycles_per_image"] == cycles and s["cycles_bound"] == cycles
    per = network_events(map_network(SystemConfig(), MCNN))
    assert per["C1"].buffer_bytes == 11492 and per["C3"].cell_slots == 677376
    assert per["FC"].psum_adds == 110 and per["C3"].pool_compares == 396


def test_any_network_has_figures_and_a_breakdown():
    s = E.system(SystemConfig(n_pe=24), network=EVERY)
    assert s["network"] == "every" and s["used_pes"] <= 24
    parts = s["energy_breakdown_pj"]
    assert set(parts) == {"array", "dac", "readout", "adc", "shift_add", "digital", "buffer"}
    assert sum(parts.values()) == pytest.approx(s["energy_total_pj"], rel=1e-12)
    assert s["energy_per_image_uj"] == pytest.approx(s["energy_total_pj"] * 1e-6)
    assert sum(s["energy_per_layer_pj"].values()) == pytest.approx(s["energy_total_pj"])
    # The residual adds and average pools are priced, not only counted.
    e = s["energy_pj"]
    assert e["residual"] > 0 and e["bias"] > 0
    ev = Events(**{k: v for k, v in s["events"].items() if k != "ops"})
    no_avg = E.energy(replace(ev, avg_adds=0, avg_mults=0), cfg=SystemConfig(n_pe=24))
    assert no_avg["pool"] < e["pool"]
    # Replicating more conv layers shortens the bound, not the energy.
    r2 = E.system(SystemConfig(n_pe=40, replication=2), network=EVERY)
    assert r2["cycles_bound"] < s["cycles_bound"]
    assert r2["energy_total_pj"] == pytest.approx(s["energy_total_pj"])
    assert np.isfinite(r2["gops_per_mm2"])
