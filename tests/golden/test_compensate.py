"""Drift compensation: the fitted factor is the drift's common shrink, a fresh chip is left
alone, and a compensated state is a valid chip-state file with its history entry."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cim_flows import stages
from cim_spec import chipstate
from cim_spec.config import SystemConfig
from cim_spec.device_params import load_preset
from golden import compensate, drift

CFG = SystemConfig()
CAL = stages.calibration_images()[:16]


@pytest.fixture(scope="module")
def ideal_drifting():
    """Every cell on its target, no read noise; drift without random spread: the pairs'
    differences shrink by exactly 1 - rate * log10(1 + t)."""
    p = load_preset("ideal").with_(name="ideal_drift", drift_rate=0.02, drift_sigma_us=0.0)
    return stages.transfer_state(CFG, stages.load_model(), p, 3)


def test_fresh_chip_keeps_its_gains(ideal_drifting):
    chip, comp = compensate.calibrate(ideal_drifting.chip, ideal_drifting.chip, CAL)
    assert comp.gains_after == comp.gains_before == ideal_drifting.digital.adc_gain
    assert all(k == 1.0 for k in comp.factors.values())
    assert chip.digital == ideal_drifting.digital


@pytest.mark.parametrize("age", [86400.0, 3.15e7])
def test_factor_is_the_common_shrink(ideal_drifting, age):
    aged = drift.aged(ideal_drifting, age)
    shrink = 1 - 0.02 * math.log10(1 + age)
    chip, comp = compensate.calibrate(ideal_drifting.chip, aged.chip, CAL)
    for name, k in comp.factors.items():
        # Not exactly the analog factor: the ADC floors and clips each line's code, and the
        # common-mode rise of the low cells (drift pulls them up) changes both.
        # C1 most: its image inputs drive many lines to the ADC's top.
        assert k == pytest.approx(1 / shrink, rel=0.04 if name == "C1" else 0.01), name
        g = comp.gains_after[name]
        assert isinstance(g, int) and g == pytest.approx(comp.gains_before[name] * k,
                                                         rel=0.001)
    # the partial sums of the reference reads come back to the recorded ones
    vec = compensate.reference_vectors(ideal_drifting.chip, CAL)
    ref = compensate._psums(ideal_drifting.chip, vec)
    raw, fixed = compensate._psums(aged.chip, vec), compensate._psums(chip, vec)
    for name in ref:
        err_raw = np.abs(raw[name] - ref[name]).mean()
        # C1 least: its lines clip at the ADC top more often as the low cells rise
        assert np.abs(fixed[name] - ref[name]).mean() < 0.5 * err_raw, name


def test_compensated_state_round_trips(ideal_drifting, tmp_path):
    aged = drift.aged(ideal_drifting, 3600.0)
    state, comp = compensate.compensate_state(ideal_drifting, aged, CAL, 3600.0)
    assert state.stage == "compensated"
    assert state.history[-1] == {"stage": "compensated", "age_s": 3600.0, "images": 16,
                                 "gains": comp.gains_after}
    chipstate.save(state, tmp_path / "c")
    back = chipstate.load(tmp_path / "c")
    assert back.digital.adc_gain == comp.gains_after
    assert [h["stage"] for h in back.history] == ["transfer", "aged", "compensated"]


@pytest.mark.parametrize("gains, message", [
    ({"C1": 0}, "gains must be an object of layer names to integer ADC gains"),
    ({"C1": 1.5}, "gains must be"),
    ([1, 2], "gains must be"),
])
def test_bad_compensated_entry_refused(ideal_drifting, tmp_path, gains, message):
    """A `compensated` history entry whose gains are not integer ADC gains is refused with
    the field named (both checksums fixed, so the field check is what refuses it)."""
    import json

    from cim_spec.manifest_checks import ChipStateError
    state, _ = compensate.compensate_state(ideal_drifting, ideal_drifting, CAL, 0.0)
    npz, js = chipstate.save(state, tmp_path / "c")
    m = json.loads(js.read_text())
    m["history"][-1]["gains"] = gains
    m["checksum"]["manifest"] = chipstate.manifest_checksum(m)
    js.write_text(json.dumps(m))
    with pytest.raises(ChipStateError, match=r"history\[1\]\.gains " + message[6:]):
        chipstate.load(tmp_path / "c")


def test_no_images_refused(ideal_drifting):
    with pytest.raises(ValueError, match="calibration image"):
        compensate.calibrate(ideal_drifting.chip, ideal_drifting.chip, CAL[:0])


def test_recalibrate_is_gains_then_fc_hybrid_training(ideal_drifting):
    """`recalibrate` = the compensated state, then hybrid training on the labelled images:
    the gains are the compensation's, only FC cells move, and the hybrid entry follows the
    compensated one."""
    from golden import data, hybrid
    aged = drift.aged(ideal_drifting, 86400.0)
    d = data.load_bundled()
    images, labels = d.train_images[:100], d.train_labels[:100]
    params = hybrid.HybridParams(epochs=1, threshold_us=0.05)
    new, comp, rep = compensate.recalibrate(ideal_drifting, aged, CAL, 86400.0, images,
                                            labels, params)
    fixed, comp2 = compensate.compensate_state(ideal_drifting, aged, CAL, 86400.0)
    assert comp.gains_after == comp2.gains_after == new.digital.adc_gain
    assert [h["stage"] for h in new.history] == ["transfer", "aged", "compensated", "hybrid"]
    assert rep.images == 100 and rep.pulses > 0
    moved = np.argwhere(new.codes != fixed.codes)
    assert len(moved) and set(moved[:, 0]) <= {b.pe for b in new.mapping.blocks_of("FC")}
