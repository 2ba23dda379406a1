"""The memristor cell: device parameters, pulse response, write-verify, defects, read noise.

A cell is an analog conductance ``G`` (uS) inside the device's physical range
``[g_floor_us, g_ceil_us]``. The datapath only ever sees the integer code
``clamp(round(G / g_lsb_us), 0, 2**cond_code_bits - 1)`` (docs/datapath.md, section 1), which
:func:`to_codes` computes; everything here works on the analog value, vectorized over all cells
of a chip, and draws its randomness from a ``np.random.Generator`` that the caller seeds.

Pulse response (one identical 50 ns SET or RESET pulse), with ``x = (G - g_floor) /
(g_ceil - g_floor)``:

    SET:    dG = +set_step_us   * exp(-set_nonlinearity   * x)       * gain * c2c
    RESET:  dG = -reset_step_us * exp(-reset_nonlinearity * (1 - x)) * gain * c2c

so steps shrink towards the end of the range a pulse pushes to (nonlinear), SET and RESET
differ (asymmetric), ``gain`` is a per-cell device-to-device factor and ``c2c`` a per-pulse
cycle-to-cycle factor (both log-normal with mean 1). Stuck cells ignore pulses.

Write-verify (:func:`write_verify`): read the cell (with a relative verify-read noise), stop
when the read value is within ``tolerance_us`` of the target, else apply one SET (below) or
RESET (above) pulse; at most ``max_pulses`` pulses. Then :func:`settle`: the short-term
relaxation that follows programming moves each cell by a random amount the verify loop can no
longer see; this, not the tolerance, dominates the programming error. See docs/device.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cim_spec.device_params import NOT_STUCK, STUCK_OFF, STUCK_ON, DeviceParams

# ---------------------------------------------------------------------------------------------
# Cells.

def fresh_cells(shape, p: DeviceParams, rng: np.random.Generator):
    """Unprogrammed cells: (conductance, stuck marker, step gain), each of `shape`.

    Stuck cells sit at their stuck conductance from the start: no pulse will move them.
    """
    u = rng.random(shape)
    stuck = np.where(u < p.stuck_on_rate, STUCK_ON,
                     np.where(u < p.stuck_on_rate + p.stuck_off_rate, STUCK_OFF, NOT_STUCK))
    stuck = stuck.astype(np.int8)
    g = np.clip(p.init_mean_us + p.init_sigma_us * rng.standard_normal(shape),
                p.g_floor_us, p.g_ceil_us)
    g = np.where(stuck == STUCK_ON, p.stuck_on_us, np.where(stuck == STUCK_OFF, p.stuck_off_us, g))
    gain = _lognormal(rng, p.d2d_sigma, shape)
    return g, stuck, gain


def _lognormal(rng, sigma: float, shape) -> np.ndarray:
    """Log-normal factors with mean 1."""
    return np.exp(sigma * rng.standard_normal(shape) - sigma ** 2 / 2)


def nominal_step(g_us, up, p: DeviceParams) -> np.ndarray:
    """Expected |dG| of one pulse at conductance g (SET where `up`, else RESET), gain 1."""
    x = np.clip((np.asarray(g_us) - p.g_floor_us) / (p.g_ceil_us - p.g_floor_us), 0.0, 1.0)
    return np.where(up, p.set_step_us * np.exp(-p.set_nonlinearity * x),
                    p.reset_step_us * np.exp(-p.reset_nonlinearity * (1.0 - x)))


def pulse(g_us, up, gain, stuck, p: DeviceParams, rng: np.random.Generator) -> np.ndarray:
    """One SET (where `up`) or RESET pulse on each given cell; returns the new conductances."""
    g_us = np.asarray(g_us, dtype=np.float64)
    step = nominal_step(g_us, up, p) * gain * _lognormal(rng, p.c2c_sigma, g_us.shape)
    new = np.clip(g_us + np.where(up, step, -step), p.g_floor_us, p.g_ceil_us)
    return np.where(stuck != NOT_STUCK, g_us, new)


@dataclass
class WriteResult:
    g_us: np.ndarray        # conductance after programming
    pulses: np.ndarray      # pulses applied to each cell
    verified: np.ndarray    # bool: the last verify read was within tolerance


def write_verify(g_us, target_us, gain, stuck, p: DeviceParams, rng: np.random.Generator,
                 mask=None) -> WriteResult:
    """Closed-loop programming of every cell (or those in `mask`) towards `target_us`."""
    g = np.array(g_us, dtype=np.float64)
    target_us = np.broadcast_to(np.asarray(target_us, dtype=np.float64), g.shape)
    pulses = np.zeros(g.shape, dtype=np.int64)
    verified = np.zeros(g.shape, dtype=bool)
    active = np.ones(g.shape, dtype=bool) if mask is None else np.array(mask, dtype=bool)
    flat_g, flat_t = g.reshape(-1), target_us.reshape(-1)
    flat_gain, flat_stuck = np.asarray(gain).reshape(-1), np.asarray(stuck).reshape(-1)
    flat_n, flat_v = pulses.reshape(-1), verified.reshape(-1)
    idx = np.flatnonzero(active)
    for k in range(p.max_pulses + 1):
        if idx.size == 0:
            break
        read = flat_g[idx] * (1.0 + p.verify_read_sigma * rng.standard_normal(idx.size))
        ok = np.abs(read - flat_t[idx]) <= p.tolerance_us
        flat_v[idx[ok]] = True
        if k == p.max_pulses:
            break
        idx, read = idx[~ok], read[~ok]
        up = read < flat_t[idx]
        flat_g[idx] = pulse(flat_g[idx], up, flat_gain[idx], flat_stuck[idx], p, rng)
        flat_n[idx] += 1
    return WriteResult(g, pulses, verified)


def settle(g_us, stuck, p: DeviceParams, rng: np.random.Generator, mask=None) -> np.ndarray:
    """Short-term relaxation of freshly programmed cells (all, or those in `mask`)."""
    g_us = np.asarray(g_us, dtype=np.float64)
    move = p.relax_sigma_us * rng.standard_normal(g_us.shape)
    if mask is not None:
        move = np.where(mask, move, 0.0)
    new = np.clip(g_us + move, p.g_floor_us, p.g_ceil_us)
    return np.where(np.asarray(stuck) != NOT_STUCK, g_us, new)
