"""Hardware-aware training noise: the errors a device preset leaves in the weights, sampled
inside the forward passes of quantization-aware training (golden.train, `cim train --hwa`).

The programming error is not modelled by a formula but measured on the device model itself:
:meth:`HwaNoise.from_device` programs ``cells`` fresh cells to every target state with the
same write-verify and relaxation as the transfer (golden.device, golden.transfer), stuck
cells included, and keeps the conductance code each one ends at. A weight at level ``q`` is
the pair ``(G+, G-) = (state max(q, 0), state max(-q, 0))``; its effective level on the chip is
``(code+ - code-) / state_step_code``, so each forward pass draws one programmed code per cell
of the pair from the table of its state and adds the difference from the ideal codes,

    e = ((code+ - ideal(s+)) - (code- - ideal(s-))) / state_step_code,

to the weight level (times ``scale``, 1 = the device as it is). The draws are independent per
weight and per step, like the transfer's per-cell errors (tests/golden/test_hwa.py compares the
two).

With ``age_s`` the table's cells also drift for that long (golden.drift) and the common part
of the drift is taken out as the drift compensation does (golden.compensate: every pair's
difference shrinks by ``1 - drift_rate * log10(1 + t / t0)``, which new ADC gains undo), so the
network learns to bear the programming error plus the drift's random spread at that age.

Read noise: the datapath adds a relative error ``read_noise_sigma`` to each line current. The
forward pass adds to each output ``read_sigma * (I+ + I-) / sqrt(2) * N(0, 1)`` where ``I+ +
I-`` is the input times both cells' conductances in state steps (``|q| + 2 * floor_steps``,
floor = the window's lowest state ``g_min``): the noise of a single read of the two lines. The
bit-serial chip reads each bit slot separately and its noise averages a little more, so this
is an upper bound; at 1% it matters much less than the programming error.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cim_spec.config import SystemConfig
from cim_spec.device_params import DeviceParams, to_codes
from golden import device, drift

HWA_STREAM = 0x4A3A  # keeps the table's draws apart from every chip seed's
TABLE_CELLS = 8192   # programmed cells per state: ~6 stuck cells per state with yao2020


@dataclass
class HwaNoise:
    """Sampler of effective weight-level errors and read noise for one device preset."""

    errors: np.ndarray            # (cell_states, cells): programmed code - ideal code (float)
    step_code: float              # codes per state step
    floor_steps: float            # g_min in state steps (every cell's offset)
    read_sigma: float             # relative read-current noise
    scale: float = 1.0            # multiplies the programming error
    preset: str = "custom"
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))
    age_s: float = 0.0            # drift age the table includes (0: right after programming)

    @classmethod
    def from_device(cls, params: DeviceParams, cfg: SystemConfig | None = None, *,
                    scale: float = 1.0, seed: int = 0, cells: int = TABLE_CELLS,
                    age_s: float = 0.0) -> HwaNoise:
        """Program ``cells`` fresh cells per state with the device model and keep their codes
        (after ``age_s`` seconds of compensated drift); ``seed`` also seeds the training-time
        draws."""
        cfg = cfg or SystemConfig()
        params.check_config(cfg)
        if not (np.isfinite(scale) and scale >= 0):
            raise ValueError(f"HWA noise scale must be a finite number >= 0, got {scale!r}")
        rng = np.random.default_rng([HWA_STREAM, seed])
        ideal = np.array([cfg.state_code(s) for s in range(cfg.cell_states)], dtype=np.int64)
        shape = (cfg.cell_states, cells)
        g0, stuck, gain = device.fresh_cells(shape, params, rng)
        target = np.broadcast_to(ideal[:, None] * cfg.g_lsb_us, shape)
        res = device.write_verify(g0, target, gain, stuck, params, rng)
        g = device.settle(res.g_us, stuck, params, rng)
        codes = to_codes(g, cfg).astype(np.float64)
        if age_s:
            shrink = params.drift_rate * drift.log_time(age_s, params)
            aged = to_codes(drift.relax(g, stuck, age_s, params, seed), cfg)
            # the common-mode part cancels in a pair; the gain calibration undoes the shrink
            codes = (aged - shrink * params.drift_target_us / cfg.g_lsb_us) / (1 - shrink)
        errors = codes - ideal[:, None]
        return cls(errors, cfg.state_step_code, cfg.g_min_us / cfg.state_step_us,
                   params.read_noise_sigma, float(scale), params.name,
                   np.random.default_rng([HWA_STREAM, seed, 1]), float(age_s))

    def level_error(self, levels: np.ndarray) -> np.ndarray:
        """One draw of the effective level error of weights at integer ``levels``."""
        q = np.asarray(levels, dtype=np.int64)
        n = self.errors.shape[1]
        pos = self.errors[np.maximum(q, 0), self.rng.integers(0, n, q.shape)]
        neg = self.errors[np.maximum(-q, 0), self.rng.integers(0, n, q.shape)]
        return self.scale * (pos - neg) / self.step_code

    def read_noise(self, x: np.ndarray, levels: np.ndarray, w_scale: float) -> np.ndarray:
        """Output noise of ``x (M, n_in) @ weights (n_out, n_in)`` in the float units of the
        product: ``x`` times both lines' conductances, times ``read_sigma / sqrt(2)``."""
        if not self.read_sigma:
            return np.zeros((x.shape[0], levels.shape[0]), dtype=x.dtype)
        lines = (np.abs(levels) + 2 * self.floor_steps).astype(x.dtype)
        amp = (x @ lines.T) * (w_scale * self.read_sigma / np.sqrt(2))
        return amp * self.rng.standard_normal(amp.shape).astype(x.dtype)

    def describe(self) -> dict:
        """The record of the noise a model was trained with (the model's meta)."""
        e = self.errors / self.step_code
        return {"preset": self.preset, "scale": self.scale, "read_sigma": self.read_sigma,
                "age_s": self.age_s,
                "table_cells": int(self.errors.shape[1]),
                "cell_error_std_states": round(float(e.std()), 6)}
