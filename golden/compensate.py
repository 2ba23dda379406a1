"""Drift compensation: a calibration the host runs on an aged chip, from reference reads.

Drift (golden.drift) pulls every cell towards ``drift_target_us`` by the same fraction
``drift_rate * log10(1 + t / t0)``: the two cells of a pair move by that fraction of their
difference towards each other, so every weight shrinks by one common factor (plus each cell's
random spread, which no calibration of the periphery can undo). The calibration measures that
shrink per layer and scales the layer's ADC gain back:

1. right after programming, the host drives each weight layer's blocks with a few stored
   reference input vectors (the layer's inputs for ``n`` calibration images on the fresh
   chip, each read with its own read-noise id) and records the partial sums;
2. later it drives the same vectors again and fits, per layer, the factor ``k`` that maps the
   new partial sums onto the recorded ones (least squares, ``sum(ref * now) / sum(now^2)``);
3. the layer's ADC gain becomes ``round(gain * k)``, an integer in the range Digital allows.
   Two passes: the ADC floors and clips, so the first new gain is refined once with the
   partial sums it gives.

The reference is the chip state as stored (its last programming: transfer or hybrid), which
is what the host recorded then; the calibration reads use ids of their own
(``CALIB_ID_BASE``) so their read noise is neither a test image's nor a training image's.
The FC layer's gain is calibrated like the others: its scale does not change the argmax, but
its ADC resolution and clipping do.

The gains undo the common shrink only; the cells' random drift moves each weight on its own.
:func:`recalibrate` adds the paper's in-situ method as a periodic recalibration: after the new
gains, a short run of hybrid training (golden.hybrid) on a few labelled images
(``RECAL_IMAGES``, ``RECAL_PARAMS``) re-tunes the FC cells with programming pulses to the chip
as it has drifted, conv layers included.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from cim_spec.chipstate import ChipState
from cim_spec.program import Chip
from golden import chip_model, hybrid
from golden.quantize import layer_inputs

CALIB_ID_BASE = 1 << 25   # read-noise ids of calibration reads (test: 0.., hybrid: 2**24..)
CALIB_IMAGES = 64
GAIN_MAX = 2 ** 32 - 1
RECAL_IMAGES = 1000        # labelled images of a recalibration (1/6 of a hybrid training's)
RECAL_SEED = 7             # their stratified draw from the training set (hybrid's is 0)
RECAL_PARAMS = hybrid.HybridParams(epochs=3)


@dataclass
class Compensation:
    """What a calibration found and set."""

    factors: dict[str, float]     # fitted k per layer (1 = no drift)
    gains_before: dict[str, int]
    gains_after: dict[str, int]
    images: int

    def to_dict(self) -> dict:
        return {"factors": {k: round(v, 6) for k, v in self.factors.items()},
                "gains_before": dict(self.gains_before), "gains_after": dict(self.gains_after),
                "images": self.images}


def reference_vectors(chip: Chip, images: np.ndarray) -> dict[str, np.ndarray]:
    """Every weight layer's input vectors (N, P, n_in) for `images` on the fresh `chip`."""
    names = [layer.name for layer in chip.mapping.network.weight_layers()]
    return {name: layer_inputs(chip, images, li) for li, name in enumerate(names)}


def _psums(chip: Chip, vectors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    out = {}
    for li, (name, x) in enumerate(vectors.items()):
        ids = CALIB_ID_BASE + np.arange(len(x), dtype=np.int64)
        out[name] = chip_model.layer_psums(chip, li, name, x, ids).astype(np.float64)
    return out


def _fit(ref: np.ndarray, now: np.ndarray) -> float:
    den = float(np.sum(now * now))
    return float(np.sum(ref * now)) / den if den > 0 else 1.0


def calibrate(fresh: Chip, aged: Chip, images: np.ndarray, passes: int = 2
              ) -> tuple[Chip, Compensation]:
    """New ADC gains for `aged` from reference reads recorded on `fresh` (same cells at
    programming time); returns the compensated chip and what was found."""
    images = chip_model.check_images(images, fresh.mapping.network.input_shape)
    if len(images) == 0:
        raise ValueError("drift compensation needs at least one calibration image")
    vectors = reference_vectors(fresh, images)
    ref = _psums(fresh, vectors)
    before = {k: int(v) for k, v in aged.digital.adc_gain.items()}
    gains = dict(before)
    factors = dict.fromkeys(gains, 1.0)
    chip = aged
    for _ in range(passes):
        now = _psums(chip, vectors)
        for name in gains:
            k = _fit(ref[name], now[name])
            factors[name] *= k
            gains[name] = int(min(max(round(gains[name] * k), 1), GAIN_MAX))
        chip = Chip(aged.mapping, aged.conductance, replace(aged.digital, adc_gain=dict(gains)))
    return chip, Compensation(factors, before, gains, len(images))


def compensate_state(fresh: ChipState, aged: ChipState, images: np.ndarray,
                     age_s: float) -> tuple[ChipState, Compensation]:
    """`calibrate` on chip states: the aged state with its new gains and a `compensated`
    history entry."""
    chip, comp = calibrate(fresh.chip, aged.chip, images)
    history = aged.history + [{"stage": "compensated", "age_s": float(age_s),
                               "images": comp.images,
                               "gains": {k: int(v) for k, v in comp.gains_after.items()}}]
    return aged.with_(digital=chip.digital, history=history), comp


def recalibrate(fresh: ChipState, aged: ChipState, cal_images: np.ndarray, age_s: float,
                images: np.ndarray, labels: np.ndarray,
                params: hybrid.HybridParams = RECAL_PARAMS
                ) -> tuple[ChipState, Compensation, hybrid.HybridReport]:
    """New ADC gains from reference reads (`compensate_state`), then a short hybrid training
    of the FC cells on `images`/`labels` on the compensated chip."""
    state, comp = compensate_state(fresh, aged, cal_images, age_s)
    new, rep = hybrid.train(state, images, labels, params, progress=False)
    return new, comp, rep
