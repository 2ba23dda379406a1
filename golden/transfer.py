"""The transfer: program a trained network into non-ideal cells by write-verify.

The quantized network (golden.quantize) gives every cell's target code and the digital
parameters; the device model then programs fresh cells towards those targets, so each cell,
and each replica of the conv kernels, carries its own errors. The read-noise amplitude comes
from the device preset and the noise seed from the chip seed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from cim_spec import device_params
from cim_spec.chipstate import ChipState
from cim_spec.config import ConfigError, SystemConfig
from cim_spec.device_params import DeviceParams
from cim_spec.mapping import Mapping
from cim_spec.program import Program
from golden import device


def check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**63:
        raise ConfigError(f"seed must be an integer in 0..2**63-1, got {seed!r}")
    return int(seed)


def used_cells(mapping: Mapping) -> np.ndarray:
    """Bool mask of the cells some block of the mapping reads."""
    cfg = mapping.config
    used = np.zeros((cfg.n_pe, cfg.array_rows, cfg.array_cols), dtype=bool)
    for b in mapping.blocks:
        used[b.pe, b.row0:b.row0 + b.n_rows, :b.n_in] = True
    return used


def layer_cells(mapping: Mapping, layer: str) -> np.ndarray:
    cfg = mapping.config
    mask = np.zeros((cfg.n_pe, cfg.array_rows, cfg.array_cols), dtype=bool)
    for b in mapping.blocks_of(layer):
        mask[b.pe, b.row0:b.row0 + b.n_rows, :b.n_in] = True
    return mask


def program_chip(mapping: Mapping, program: Program, params: DeviceParams,
                 seed: int) -> ChipState:
    """Write-verify every cell of every PE to its target; unused cells go to state 0."""
    cfg: SystemConfig = mapping.config
    params.check_config(cfg)
    seed = check_seed(seed)
    rng = np.random.default_rng(seed)
    shape = (cfg.n_pe, cfg.array_rows, cfg.array_cols)
    g0, stuck, gain = device.fresh_cells(shape, params, rng)
    res = device.write_verify(g0, program.target * cfg.g_lsb_us, gain, stuck, params, rng)
    g = device.settle(res.g_us, stuck, params, rng)
    digital = replace(program.digital, read_noise=params.read_noise_amplitude,
                      noise_seed=seed % 2**32)
    scales = {"logit_scale": float(program.logit_scale),
              "weight_scales": {k: float(v) for k, v in program.weight_scales.items()},
              "input_scales": {k: float(v) for k, v in program.input_scales.items()}}
    state = ChipState(cfg, mapping, params, seed, g, program.target.copy(), stuck, gain,
                      res.pulses, res.verified, {k: v.copy() for k, v in program.levels.items()},
                      digital, scales, [])
    report = transfer_report(state)
    state.history.append({"stage": "transfer", "seed": seed, "preset": params.name,
                          "pulses": report.pulses, "failed": report.failed})
    return state


@dataclass
class TransferReport:
    cells: int                  # cells programmed (every cell of every PE)
    used: int                   # cells the mapping reads
    pulses: int                 # pulses applied, all cells
    pulses_used: int            # pulses applied to used cells
    failed: int                 # used cells that did not verify within the pulse budget
    stuck_on: int               # used cells stuck on / off
    stuck_off: int
    error_mean_us: float        # programmed - target, over verified used cells
    error_std_us: float
    failed_by_layer: dict[str, int]

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    def text(self) -> str:
        by = ", ".join(f"{k} {v}" for k, v in self.failed_by_layer.items())
        return (f"programmed {self.cells} cells ({self.used} used by the mapping) with "
                f"{self.pulses} pulses ({self.pulses_used} on used cells, "
                f"{self.pulses / max(self.cells, 1):.1f} per cell)\n"
                f"failed to verify: {self.failed} used cells ({by}); stuck on "
                f"{self.stuck_on}, stuck off {self.stuck_off}\n"
                f"programming error of verified cells after relaxation: mean "
                f"{self.error_mean_us:+.3f} uS, std {self.error_std_us:.3f} uS")


def transfer_report(state: ChipState) -> TransferReport:
    cfg = state.config
    used = used_cells(state.mapping)
    ok = used & state.verified
    err = state.g_us[ok] - state.target[ok] * cfg.g_lsb_us
    failed = used & ~state.verified
    return TransferReport(
        cells=int(used.size), used=int(used.sum()), pulses=int(state.pulses.sum()),
        pulses_used=int(state.pulses[used].sum()), failed=int(failed.sum()),
        stuck_on=int((used & (state.stuck == device_params.STUCK_ON)).sum()),
        stuck_off=int((used & (state.stuck == device_params.STUCK_OFF)).sum()),
        error_mean_us=float(err.mean()) if err.size else 0.0,
        error_std_us=float(err.std()) if err.size else 0.0,
        failed_by_layer={lm.name: int((failed & layer_cells(state.mapping, lm.name)).sum())
                         for lm in state.mapping.layers})
