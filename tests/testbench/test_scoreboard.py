"""The host side of the chip testbench without a simulator: the scoreboard, the cell writes'
checks, the golden model of a chip re-programmed between images, and the job file."""

from __future__ import annotations

import numpy as np
import pytest

from cim_spec import program
from golden import chip_model, data
from testbench import chip_job, chip_sim
from testbench.chip_sim import CellWrite, GainWrite
from testbench.scoreboard import Scoreboard

from .test_chip import perturbed_chip


@pytest.fixture(scope="module")
def chip():
    return perturbed_chip(1)


def test_scoreboard_compares_in_order_and_refuses_extra_items():
    sb = Scoreboard([[1, 2], [3, 4]], ids=[7, 9])
    assert sb.add([1, 2]) and not sb.add([3, 5])
    assert sb.done and sb.bitexact == 1
    (mm,) = sb.mismatches
    assert (mm.index, mm.image_id, mm.first_difference) == (1, 9, (1, 5, 4))
    with pytest.raises(AssertionError, match="only 2 were expected"):
        sb.add([0, 0])


@pytest.mark.parametrize("field, value, message", [
    ("pe", 8, "pe 8 is outside 0..7"), ("row", -1, "row -1 is outside 0..127"),
    ("code", 256, "code 256 is outside 0..255"), ("before", 4, "before 4 is outside 0..3"),
])
def test_cell_writes_out_of_range_are_refused(chip, field, value, message):
    w = dict(before=1, pe=0, row=0, col=0, code=1)
    w[field] = value
    with pytest.raises(ValueError, match=message):
        chip_sim.check_writes(chip, [CellWrite(**w)], 3)


def test_golden_model_follows_the_writes_image_by_image(chip):
    """Against an independent computation: each image alone on the chip with every write
    before it applied (in order, so a later write to the same cell wins)."""
    rng = np.random.default_rng(4)
    images = data.load_bundled().test_images[:4]
    ids = np.array([5, 6, 7, 8])
    fc = chip.mapping.blocks[-1]
    writes = [CellWrite(b, fc.pe, fc.row0 + int(rng.integers(fc.n_rows)),
                        int(rng.integers(fc.n_in)), int(rng.integers(chip.config.code_max + 1)))
              for b in (3, 1, 1, 3)]
    writes.append(CellWrite(3, writes[0].pe, writes[0].row, writes[0].col, 0))
    got = chip_sim.golden_logits(chip, images, ids, chip_sim.check_writes(chip, writes, 4))
    for i in range(4):
        g = chip.conductance.copy()
        for w in writes:
            if w.before <= i:
                g[w.pe, w.row, w.col] = w.code
        one = chip_model.run(program.Chip(chip.mapping, g, chip.digital), images[i:i + 1],
                             image_ids=ids[i:i + 1]).logits[0]
        assert (got[i] == one).all(), i
    assert (got[1:] != chip_model.run(chip, images[1:], image_ids=ids[1:]).logits).any()


def test_job_file_round_trip(tmp_path):
    job = chip_job.Job(np.zeros((2, 3, 3), np.uint8), np.array([4, 5]),
                       np.arange(20).reshape(2, 10), dict(pauses=3),
                       np.array([0, 1, 1]), np.array([11, 12, 13]),
                       np.array([1, 0]), np.array([21, 22]))
    chip_job.write_job(tmp_path / "job.npz", job)
    back = chip_job.read_job(tmp_path / "job.npz")
    assert back.meta == job.meta and (back.expected == job.expected).all()
    assert back.writes_before(1) == [12, 13] and back.writes_before(2) == []
    assert back.gains_before(0) == [22] and back.gains_before(1) == [21]


@pytest.mark.parametrize("write, message", [
    (GainWrite(0, "S2", 1000), "layer 'S2' is not one of"),
    (GainWrite(0, "C1", 0), "gain 0 is outside 1..131071"),
    (GainWrite(0, "FC", 2 ** 17), "gain 131072 is outside 1..131071"),
    (GainWrite(4, "FC", 1000), "before 4 is outside 0..3"),
])
def test_gain_writes_out_of_range_are_refused(chip, write, message):
    """A gain must name a weight layer and fit the chip's 17-bit gain register (one bit
    above the largest programmed gain, 30,947, and at least 17 bits)."""
    with pytest.raises(ValueError, match=message):
        chip_sim.check_writes(chip, [write], 3)


def test_golden_model_follows_the_gain_writes_image_by_image(chip):
    """Against an independent computation: each image alone on the chip with the ADC gains
    that the gain writes before it left (a later write to the same layer wins), cell writes
    mixed in."""
    images = data.load_bundled().test_images[:4]
    ids = np.array([9, 10, 11, 12])
    fc = chip.mapping.blocks[-1]
    gains = chip.digital.adc_gain
    writes = [GainWrite(1, "C3", gains["C3"] * 5 // 4), GainWrite(2, "FC", gains["FC"] // 2),
              CellWrite(2, fc.pe, fc.row0, 0, 0), GainWrite(3, "C3", 3)]
    got = chip_sim.golden_logits(chip, images, ids, chip_sim.check_writes(chip, writes, 4))
    for i in range(4):
        g, now = chip.conductance.copy(), dict(gains)
        for w in writes:
            if w.before <= i:
                if isinstance(w, GainWrite):
                    now[w.layer] = w.gain
                else:
                    g[w.pe, w.row, w.col] = w.code
        digital = program.Digital(now, chip.digital.requant_mult, chip.digital.requant_shift,
                                  chip.digital.read_noise, chip.digital.noise_seed)
        one = chip_model.run(program.Chip(chip.mapping, g, digital), images[i:i + 1],
                             image_ids=ids[i:i + 1]).logits[0]
        assert (got[i] == one).all(), i
    plain = chip_model.run(chip, images, image_ids=ids).logits
    assert (got[0] == plain[0]).all() and (got[1:] != plain[1:]).any(axis=1).all()
