"""The chip regression: bundled MNIST images through the whole chip's RTL on Verilator, every
logit compared with the golden integer model, for replication 1 and 3.

The chip is the bundled network compiled for the configuration, with every cell's code
perturbed by a seeded random error (as programming leaves it) and read noise on, so that the
RTL's conductances, noise keys and schedule all have to agree with the golden model.
"""

from __future__ import annotations

import numpy as np
import pytest

from cim_core import rtl_sim, stages
from cim_core.config import SystemConfig
from golden import chip_model, data

IMAGES = 24


def perturbed_chip(replication: int, seed: int = 2020) -> chip_model.Chip:
    cfg = SystemConfig(replication=replication)
    mapping, prog = stages.ideal_program(cfg, stages.load_model())
    rng = np.random.default_rng(seed)
    g = np.clip(prog.target + rng.integers(-4, 5, size=prog.target.shape), 0, cfg.code_max)
    d = prog.digital
    return chip_model.Chip(mapping, g, chip_model.Digital(
        d.adc_gain, d.requant_mult, d.requant_shift, read_noise=119, noise_seed=seed))


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
    golden = chip_model.Chip(chip.mapping, chip.conductance.copy(), chip.digital)
    block = next(b for b in chip.mapping.blocks if b.layer == "C3")
    golden.conductance[block.pe, block.row0, :block.n_in] = chip.config.code_max
    bundle = data.load_bundled()
    images, ids = bundle.test_images[:3], np.arange(3)
    res = rtl_sim.simulate(chip, images, ids, progress=False, golden=golden)
    assert res.mismatches, "a changed cell must change some logit"
    where = rtl_sim.locate(chip, images[[m.index for m in res.mismatches]],
                           [m.image_id for m in res.mismatches], golden=golden)
    assert all(w.startswith("S4 (after C3)") for w in where), where
