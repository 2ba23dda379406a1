"""Conductance relaxation over time after programming.

Each cell relaxes with log time towards ``drift_target_us`` and spreads by a random amount:

    G(t) = G0 + L(t) * (drift_rate * (drift_target_us - G0) + drift_sigma_us * z),
    L(t) = log10(1 + t / drift_t0_s)

``z`` is one standard normal per cell, drawn from the seed (not from t), so a cell's path is a
fixed direction scaled by the monotone L(t): every cell moves monotonically in time, and on
average towards the target (high states lose conductance, low states gain). Stuck cells do not
move; the result stays in the device's physical range.
"""

from __future__ import annotations

import math

import numpy as np

from cim_spec.device_params import NOT_STUCK, DeviceError, DeviceParams

DRIFT_STREAM = 0xD21F7  # keeps the drift draws apart from the programming draws of a seed


def log_time(age_s: float, p: DeviceParams) -> float:
    if isinstance(age_s, bool) or not isinstance(age_s, (int, float)) \
            or not math.isfinite(age_s) or age_s < 0:
        raise DeviceError(f"age must be a finite number of seconds >= 0, got {age_s!r}")
    return math.log10(1.0 + age_s / p.drift_t0_s)


def drift_direction(g0_us: np.ndarray, p: DeviceParams, seed: int) -> np.ndarray:
    """The per-decade change of every cell: rate * (target - G0) + sigma * z."""
    z = np.random.default_rng([DRIFT_STREAM, seed]).standard_normal(np.shape(g0_us))
    return p.drift_rate * (p.drift_target_us - np.asarray(g0_us)) + p.drift_sigma_us * z


def relax(g0_us: np.ndarray, stuck: np.ndarray, age_s: float, p: DeviceParams,
          seed: int) -> np.ndarray:
    """Conductances `age_s` seconds after they were programmed to `g0_us`."""
    g0 = np.asarray(g0_us, dtype=np.float64)
    g = g0 + log_time(age_s, p) * drift_direction(g0, p, seed)
    g = np.clip(g, p.g_floor_us, p.g_ceil_us)
    return np.where(np.asarray(stuck) != NOT_STUCK, g0, g)


def aged(state, age_s: float, seed: int | None = None):
    """A copy of a chip state (cim_spec.chipstate.ChipState) `age_s` seconds after it was
    programmed; the drift draws come from `seed` (default: the chip's seed)."""
    seed = state.seed if seed is None else seed
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise DeviceError(f"drift seed must be an integer >= 0, got {seed!r}")
    g = relax(state.g_us, state.stuck, age_s, state.device, seed)
    history = state.history + [{"stage": "aged", "age_s": float(age_s), "drift_seed": seed}]
    return state.with_(g_us=g, history=history)
