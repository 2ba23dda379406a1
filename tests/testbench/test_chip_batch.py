"""The free-running regression path (testbench/chip_batch.py): the load beats it writes are the
cocotb driver's beats, and the chip run through it answers exactly as through the cocotb
testbench (logits, labels, features, cycles) and its scoreboard catches a wrong logit."""

from __future__ import annotations

import numpy as np
import pytest

from cim_spec import program
from testbench import chip_batch, chip_job
from testbench import chip_sim as rtl_sim

from .test_chip import other_chip


@pytest.mark.parametrize("bits", [8, 6, 1])
def test_beats_hex_are_the_drivers_beats(bits):
    """All images at once in numpy against pack_beats's one integer per beat, with edge
    pixels (0, the top code), a last beat that is padded, and ids up to 2**32 - 1."""
    rng = np.random.default_rng(bits)
    images = rng.integers(0, 2 ** bits, size=(5, 11, 9))
    images[0] = 2 ** bits - 1
    images[1] = 0
    ids = np.array([0, 2 ** 32 - 1, 7, 2 ** 31, 12345])
    got = chip_batch.beats_hex(images, ids, 64, bits)
    want = [b for img, i in zip(images, ids, strict=True)
            for b in chip_job.pack_beats(img, int(i), 64, bits)]
    assert [int(h, 16) for h in got] == want
    assert len(got) == 5 * -(-99 // 64)
    with pytest.raises(ValueError, match="do not fit"):
        chip_batch.beats_hex(images + 2 ** bits, ids, 64, bits)


def test_batch_run_matches_the_cocotb_testbench():
    """The small chip of test_chip (another network and configuration), two shards, through
    the batch top and through cocotb: the same answer in every field the host reads; and a
    golden chip with one cell changed is reported as a mismatch."""
    chip, images = other_chip()
    ids = np.arange(500, 512)
    ref = rtl_sim.simulate(chip, images, ids, shards=2, progress=False)
    res = rtl_sim.simulate(chip, images, ids, shards=2, progress=False, batch=True)
    assert res.build_dir != ref.build_dir and res.build_dir.name.endswith("_batch")
    assert res.bitexact == len(images) == ref.bitexact
    for name in ("logits", "labels_rtl", "features"):
        np.testing.assert_array_equal(getattr(res, name), getattr(ref, name), err_msg=name)
    assert (res.cycles_image, res.cycles_layer, res.cycles_per_image) == (
        ref.cycles_image, ref.cycles_layer, ref.cycles_per_image)
    golden = program.Chip(chip.mapping, chip.conductance.copy(), chip.digital)
    last = chip.mapping.blocks[-1]
    golden.conductance[last.pe, last.row0, 0] = (chip.conductance[last.pe, last.row0, 0] + 7) \
        % (chip.config.code_max + 1)
    bad = rtl_sim.simulate(chip, images, ids, shards=2, progress=False, batch=True,
                           golden=golden)
    assert bad.mismatches, "a changed cell in the golden chip must show as a mismatch"
    for mm in bad.mismatches:
        assert mm.rtl == res.logits[mm.index].tolist() and mm.rtl != mm.golden
