"""Device parameters: what a memristor cell is, as numbers the device model and the chip-state
format share; the bundled presets; and the analog-to-code rule of docs/datapath.md section 1.

The device model itself (pulse response, write-verify, relaxation, drift) is golden.device;
this module only holds its validated parameters, so that every layer can read and store them.
"""


from __future__ import annotations

import dataclasses
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config import ConfigError, SystemConfig, read_toml
from .noise import read_noise_from_sigma

if sys.version_info >= (3, 11):
    pass
else:  # pragma: no cover
    pass

PRESET_DIR = Path(__file__).resolve().parent / "presets"
DEFAULT_PRESET = "yao2020"

# Stuck-cell markers in the per-cell `stuck` array.
NOT_STUCK, STUCK_ON, STUCK_OFF = 0, 1, -1


class DeviceError(ConfigError):
    """Device parameters that are missing, malformed or physically impossible."""


# The highest supported value of every numeric parameter, and why (all must be finite and not
# negative; docs/config.md lists the ranges).
_US = (1e6, "conductances of at most 1 S")
DEVICE_MAX = {
    "g_floor_us": _US, "g_ceil_us": _US, "init_mean_us": _US, "init_sigma_us": _US,
    "set_step_us": _US, "reset_step_us": _US, "tolerance_us": _US, "relax_sigma_us": _US,
    "stuck_on_us": _US, "stuck_off_us": _US, "drift_sigma_us": _US, "drift_target_us": _US,
    "set_nonlinearity": (100.0, "a step that shrinks by more than e^-100 across the range"),
    "reset_nonlinearity": (100.0, "a step that shrinks by more than e^-100 across the range"),
    "c2c_sigma": (3.0, "log-normal spreads beyond 3 give zero or infinite steps"),
    "d2d_sigma": (3.0, "log-normal spreads beyond 3 give zero or infinite gains"),
    "max_pulses": (100000, "write-verify loops of at most 100,000 pulses"),
    "verify_read_sigma": (1.0, "a relative read noise of at most 100%"),
    "stuck_on_rate": (1.0, "a fraction"),
    "stuck_off_rate": (1.0, "a fraction"),
    "read_noise_sigma": (1.0, "a relative read noise of at most 100%"),
    "drift_t0_s": (3.2e9, "a time constant of at most a century"),
    "drift_rate": (1.0, "more would overshoot the relaxation target in one decade"),
}


@dataclass(frozen=True)
class DeviceParams:
    name: str = "custom"
    description: str = ""
    # Physical conductance range of a cell (uS); the programming window of SystemConfig
    # (g_min_us..g_max_us) must lie inside it.
    g_floor_us: float = 0.5
    g_ceil_us: float = 30.0
    # State of a fresh (formed, reset) cell before programming: normal(mean, sigma), clipped.
    init_mean_us: float = 2.0
    init_sigma_us: float = 0.5
    # Pulse response.
    set_step_us: float = 0.6
    reset_step_us: float = 0.8
    set_nonlinearity: float = 1.0
    reset_nonlinearity: float = 1.0
    c2c_sigma: float = 0.3          # log-normal sigma of each pulse's step
    d2d_sigma: float = 0.2          # log-normal sigma of each cell's step gain
    # Write-verify.
    tolerance_us: float = 0.5
    max_pulses: int = 100
    verify_read_sigma: float = 0.01  # relative noise of a verify read
    # Short-term relaxation right after write-verify, too late for the verify reads to see:
    # each programmed cell moves by normal(0, relax_sigma_us).
    relax_sigma_us: float = 0.5
    # Defects: fraction of cells stuck, and where they sit.
    stuck_on_rate: float = 0.001
    stuck_off_rate: float = 0.001
    stuck_on_us: float = 25.0
    stuck_off_us: float = 1.0
    # Relative sigma of the read current (becomes Digital.read_noise).
    read_noise_sigma: float = 0.01
    # Relaxation: G(t) = G0 + log10(1 + t/t0) * (rate * (target - G0) + sigma * z).
    drift_t0_s: float = 1.0
    drift_rate: float = 0.01        # fraction of the distance to drift_target_us per decade
    drift_sigma_us: float = 0.05    # spread per decade
    drift_target_us: float = 10.0

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise DeviceError(f"device name must be a non-empty string, got {self.name!r}")
        if not isinstance(self.description, str):
            raise DeviceError("device description must be a string")
        for f in dataclasses.fields(self):
            if f.name in ("name", "description"):
                continue
            v = getattr(self, f.name)
            hi, why = DEVICE_MAX[f.name]
            if f.name == "max_pulses":
                if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                    raise DeviceError(f"max_pulses must be an integer >= 1, got {v!r}")
                if v > hi:
                    raise DeviceError(f"max_pulses={v} is beyond the supported 1..{hi}: {why}")
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise DeviceError(f"{f.name} must be a finite number, got {v!r}")
            if v < 0:
                raise DeviceError(f"{f.name} must not be negative, got {v}")
            if v > hi:
                raise DeviceError(f"{f.name}={v} is beyond the supported 0..{hi:g}: {why}")
        for name in ("g_ceil_us", "set_step_us", "reset_step_us", "tolerance_us", "drift_t0_s"):
            if not getattr(self, name) > 0:
                raise DeviceError(f"{name} must be positive, got {getattr(self, name)}")
        if self.g_ceil_us <= self.g_floor_us:
            raise DeviceError(f"g_ceil_us ({self.g_ceil_us}) must exceed g_floor_us "
                              f"({self.g_floor_us})")
        for name in ("stuck_on_rate", "stuck_off_rate"):
            if not getattr(self, name) < 1:
                raise DeviceError(f"{name} must be a fraction below 1, got {getattr(self, name)}")
        if self.stuck_on_rate + self.stuck_off_rate >= 1:
            raise DeviceError("stuck_on_rate + stuck_off_rate must be below 1")
        for name in ("init_mean_us", "stuck_on_us", "stuck_off_us", "drift_target_us"):
            v = getattr(self, name)
            if not self.g_floor_us <= v <= self.g_ceil_us:
                raise DeviceError(f"{name}={v} lies outside the device range "
                                  f"g_floor_us..g_ceil_us = {self.g_floor_us}..{self.g_ceil_us}")
        if self.read_noise_amplitude >= 2 ** 13:
            raise DeviceError(f"read_noise_sigma={self.read_noise_sigma} is beyond what the "
                              f"datapath supports (read_noise < 8192, sigma below ~29%)")

    @property
    def read_noise_amplitude(self) -> int:
        """The integer Digital.read_noise of docs/datapath.md section 6."""
        return read_noise_from_sigma(self.read_noise_sigma)

    def check_config(self, cfg: SystemConfig) -> None:
        """Refuse a device that cannot hold the configuration's programming window."""
        if cfg.g_min_us < self.g_floor_us or cfg.g_max_us > self.g_ceil_us:
            raise DeviceError(
                f"device {self.name!r}: the window g_min_us..g_max_us = {cfg.g_min_us}.."
                f"{cfg.g_max_us} does not fit the device range {self.g_floor_us}.."
                f"{self.g_ceil_us} uS")
        if self.tolerance_us >= cfg.state_step_us / 2:
            raise DeviceError(
                f"device {self.name!r}: tolerance_us={self.tolerance_us} is not below half a "
                f"state step ({cfg.state_step_us / 2:.4g} uS): the states would overlap")

    def with_(self, **changes) -> DeviceParams:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict, where: str = "device parameters") -> DeviceParams:
        if not isinstance(d, dict):
            raise DeviceError(f"{where}: must be a table, got {type(d).__name__}")
        names = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - set(names))
        if unknown:
            raise DeviceError(f"{where}: unknown device parameters {unknown}")
        kw = {}
        for k, v in d.items():
            # TOML writes 1 for 1.0; an int is fine where a float is expected, not vice versa.
            if isinstance(names[k].default, float) and isinstance(v, int) \
                    and not isinstance(v, bool):
                v = float(v)
            kw[k] = v
        try:
            return cls(**kw)
        except DeviceError as e:
            raise DeviceError(f"{where}: {e}") from None


def available_presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.toml"))


def load_preset(name_or_path: str | Path = DEFAULT_PRESET) -> DeviceParams:
    """A bundled preset by name (``yao2020``) or a user's TOML file by path."""
    s = str(name_or_path)
    path = Path(s)
    if not (s.endswith(".toml") or path.is_file()):
        if s not in available_presets():
            raise DeviceError(f"unknown device preset {s!r}; bundled presets: "
                              f"{', '.join(available_presets())} (or give a TOML file path)")
        path = PRESET_DIR / f"{s}.toml"
    doc = read_toml(path, "device file", DeviceError)
    if "device" in doc:
        others = sorted(set(doc) - {"device"})
        if others:
            raise DeviceError(f"{path}: unknown tables or keys beside [device]: {others}")
    table = doc.get("device", doc)
    if not isinstance(table, dict):
        raise DeviceError(f"{path}: [device] must be a table")
    if "name" not in table:
        table = {**table, "name": path.stem}
    return DeviceParams.from_dict(table, str(path))


def to_codes(g_us: np.ndarray, cfg: SystemConfig) -> np.ndarray:
    """Analog conductance -> the datapath's integer codes (docs/datapath.md section 1)."""
    return np.clip(np.rint(np.asarray(g_us) / cfg.g_lsb_us), 0, cfg.code_max).astype(np.int64)
