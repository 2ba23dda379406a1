"""The chip regression: bundled MNIST images through the whole chip's RTL on Verilator, every
logit compared with the golden integer model, for replication 1 and 3.

The chip is the bundled network compiled for the configuration, with every cell's code
perturbed by a seeded random error (as programming leaves it) and read noise on, so that the
RTL's conductances, noise keys and schedule all have to agree with the golden model.
"""

from __future__ import annotations

import numpy as np
import pytest

from cim_flows import stages
from cim_flows.stages import perturbed_chip
from cim_spec import program
from cim_spec.config import SystemConfig
from cim_spec.mapping import map_network
from cim_spec.network import Conv, Dense, Network, Pool
from golden import chip_model, compensate, data
from hdl.chip_plan import plan_chip
from testbench import chip_sim as rtl_sim
from testbench.chip_sim import CellWrite, GainWrite
from testbench.random_config import uniform_chip

IMAGES = 24


@pytest.mark.parametrize("replication", [1, 3])
def test_chip_rtl_bit_exact(replication):
    chip = perturbed_chip(replication)
    bundle = data.load_bundled()
    images = bundle.test_images[:IMAGES]
    ids = np.arange(1000, 1000 + IMAGES)
    res = rtl_sim.simulate(chip, images, ids, shards=1, progress=False)
    assert res.bitexact == IMAGES, [
        (mm.index, mm.first_difference) for mm in res.mismatches[:5]]
    # The labels the RTL computes are the argmax of its own logits.
    assert (res.labels_rtl == np.argmax(res.logits, axis=1)).all()
    # Cycles per layer within 15% of the read-slot bound (slots x pulse cycles).
    cfg = chip.config
    for name, cycles in res.cycles_layer.items():
        bound = chip.mapping.slot_bound(name) * cfg.pulse_cycles
        assert bound <= cycles <= 1.15 * bound, (name, cycles, bound)


def test_mismatch_is_located_in_the_first_differing_layer():
    """A golden model whose chip differs in one C3 cell: the RTL (built from the unchanged
    chip) must be reported as differing, first in S4 (pooled C3), not earlier."""
    chip = perturbed_chip(1)
    golden = program.Chip(chip.mapping, chip.conductance.copy(), chip.digital)
    block = next(b for b in chip.mapping.blocks if b.layer == "C3")
    golden.conductance[block.pe, block.row0, :block.n_in] = chip.config.code_max
    bundle = data.load_bundled()
    images, ids = bundle.test_images[:3], np.arange(3)
    res = rtl_sim.simulate(chip, images, ids, progress=False, golden=golden)
    assert res.mismatches, "a changed cell must change some logit"
    where = rtl_sim.locate(chip, images[[m.index for m in res.mismatches]],
                           [m.image_id for m in res.mismatches], golden=golden)
    assert all(w.startswith("S4 (after C3)") for w in where), where


def random_writes(chip: program.Chip, rng, before: int, n: int) -> list[CellWrite]:
    """New random codes for cells the logits layer and the first layer use."""
    blocks = [b for b in chip.mapping.blocks if b.layer in (chip.mapping.layers[0].name,
                                                           chip.mapping.layers[-1].name)]
    out = []
    for _ in range(n):
        b = blocks[int(rng.integers(len(blocks)))]
        code = int(rng.integers(chip.config.code_max + 1))
        out.append(CellWrite(before, b.pe, b.row0 + int(rng.integers(b.n_rows)),
                             int(rng.integers(b.n_in)), code))
    return out


@pytest.mark.parametrize("replication", [1, 3])
def test_random_traffic_and_programming_between_images(replication):
    """Random idle cycles between load beats, random gaps between images, back-pressure
    bursts on the result port, random image ids, and cells re-programmed through the chip's
    programming port twice between images: every logit against the golden model of the chip
    as re-programmed at that point, every handshake checked by the testbench's monitors."""
    chip = perturbed_chip(replication)            # the builds of the test above
    rng = np.random.default_rng(12 + replication)
    n = 6
    images = data.load_bundled().test_images[IMAGES:IMAGES + n]
    ids = rng.choice(2 ** 31, size=n, replace=False)
    writes = random_writes(chip, rng, 2, 16) + random_writes(chip, rng, 4, 16)
    res = rtl_sim.simulate(chip, images, ids, progress=False, pauses=3, writes=writes)
    assert res.bitexact == n, [(mm.index, mm.first_difference) for mm in res.mismatches[:3]]
    # The writes matter: every image after them differs from the unchanged chip's answer.
    plain = chip_model.run(chip, images, image_ids=ids).logits
    assert (plain[:2] == res.golden_logits[:2]).all()
    assert (plain[2:] != res.golden_logits[2:]).any(axis=1).all()
    # The FC inputs the chip streamed out (its `features` port, stalled whenever a result
    # was held back): the golden model's S4 map of each image on the chip as it was then.
    net = chip.mapping.network
    s4 = net.layers[net.layers.index(net.weight_layers()[-1]) - 1].name
    g = chip.conductance.copy()
    for k in range(n):
        for w in writes:
            if w.before == k:
                g[w.pe, w.row, w.col] = w.code
        want = chip_model.run(program.Chip(chip.mapping, g.copy(), chip.digital), images[k:k + 1],
                              image_ids=ids[k:k + 1], trace=True).trace[s4].reshape(-1)
        np.testing.assert_array_equal(res.features[k], want)
    t = res.traffic
    beats = -(-images[0].size // rtl_sim.PIXELS_PER_BEAT)
    assert (t["load_transfers"], t["result_transfers"], t["prog_transfers"]) == (
        n * beats, n, len(writes))
    assert t["result_stalls"] >= 1 and t["result_stalled_cycles"] > 100, t
    assert t["gap_cycles"] > 0, t


def test_gain_registers_written_between_images():
    """Drift compensation at run time: the host writes new ADC gains into the chip's gain
    registers through its gain port, between images, and the RTL follows them bit for bit.

    The RTL holds the conductances of an aged chip; the gains are what the golden model's
    calibration (golden.compensate) finds for it against its younger self (every code 10%
    further from the drift target), then edge cases: gain 1 (C1's lines read almost 0) and
    the largest value the register holds (FC's ADCs clip)."""
    aged = perturbed_chip(1)                      # the replication-1 build of the test above
    cfg = aged.config
    centre = round(10.0 / cfg.g_lsb_us)           # the drift target, in codes
    young = program.Chip(aged.mapping, np.clip(
        np.rint(centre + (aged.conductance - centre) / 0.9), 0, cfg.code_max).astype(
        aged.conductance.dtype), aged.digital)
    cal = stages.calibration_images()[:8]
    fixed, comp = compensate.calibrate(young, aged, cal)
    assert all(comp.gains_after[k] > 1.05 * comp.gains_before[k] for k in comp.gains_after)
    top = 2 ** plan_chip(aged).pes[0].params.gain_bits - 1
    n = 6
    images = data.load_bundled().test_images[IMAGES:IMAGES + n]
    ids = np.arange(500, 500 + n)
    writes = [GainWrite(2, k, v) for k, v in comp.gains_after.items()]
    writes += [GainWrite(4, "C1", 1), GainWrite(4, "FC", top)]
    res = rtl_sim.simulate(aged, images, ids, progress=False, writes=writes)
    assert res.bitexact == n, [(mm.index, mm.first_difference) for mm in res.mismatches[:3]]
    # The golden side is independent of the write path: the compensated chip's own run.
    assert (res.golden_logits[2:4] == chip_model.run(fixed, images[2:4],
                                                     image_ids=ids[2:4]).logits).all()
    plain = chip_model.run(aged, images, image_ids=ids).logits
    assert (plain[:2] == res.golden_logits[:2]).all()
    assert (plain[2:] != res.golden_logits[2:]).any(axis=1).all()
    assert res.traffic["gain_transfers"] == len(writes)
    with pytest.raises(ValueError, match="gain register"):
        rtl_sim.check_writes(aged, [GainWrite(0, "C1", top + 1)], n)


OTHER = Network("other", (1, 10, 10), (
    Conv("A", 1, 3, 3), Pool("P", 2, 2), Conv("B", 3, 4, 2), Pool("Q", 2, 2),
    Dense("D", 16, 5)))


def other_chip():
    """A different network on a different system (12 x 32 arrays, 6 PEs, replication 2,
    6-bit inputs and ADCs, 4 ADCs per PE, 2-cycle pulses), random cells and gains, read
    noise on; and 12 random images."""
    cfg = SystemConfig(n_pe=6, array_rows=32, array_cols=12, replication=2, adc_bits=6,
                       input_bits=6, act_bits=6, adcs_per_pe=4, pulse_cycles=2)
    rng = np.random.default_rng(5)
    chip = uniform_chip(map_network(cfg, OTHER), rng)
    # 8-bit pixels into 6-bit DACs: the host sends their top 6 bits (docs/datapath.md 0).
    images = rng.integers(0, 256, size=(12, 10, 10)).astype(np.uint8)
    return chip, images


def test_another_network_and_configuration():
    """The chip is built from the mapping, not from the mCNN's shape; then the same chip
    under random traffic (gaps, back-pressure, cell writes between images, random ids)."""
    chip, images = other_chip()
    res = rtl_sim.simulate(chip, images, np.arange(12), progress=False)
    assert res.bitexact == 12, [(m.index, m.first_difference) for m in res.mismatches[:3]]
    assert len(set(map(tuple, res.logits.tolist()))) > 1   # not a constant answer
    rng = np.random.default_rng(8)
    ids = rng.integers(0, 2 ** 32, size=5, dtype=np.int64)
    writes = random_writes(chip, rng, 2, 6)
    res = rtl_sim.simulate(chip, images[:5], ids, progress=False, pauses=4, writes=writes)
    assert res.bitexact == 5, [(m.index, m.first_difference) for m in res.mismatches[:3]]
    assert res.traffic["prog_transfers"] == len(writes) and res.traffic["result_stalls"] >= 1
