"""The system configuration: one validated, immutable description of the hardware.

Every other module takes a `SystemConfig`; nothing reads globals. The defaults are the
reference system of Yao et al., Nature 2020 (README.md): eight PEs of 128 x 16
1T1R cells, 15-level weights on differential pairs of 8-state cells, 8-bit bit-serial inputs,
8-bit ADCs.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


class ConfigError(ValueError):
    """A configuration value that the hardware cannot have."""


# The supported range of every integer field: (lowest, highest, why the highest). The
# defaults are the paper's system; docs/config.md lists the ranges.
INT_RANGES = {
    "n_pe": (1, 256, "the chip addresses at most 256 PEs"),
    "array_rows": (2, 4096, "arrays of at most 4096 source lines"),
    "array_cols": (1, 4096, "arrays of at most 4096 bit lines"),
    "weight_levels": (3, 511, "pairs of at most 256-state cells"),
    "cell_states": (2, 256, "at most 256 conductance states per cell"),
    "cond_code_bits": (2, 16, "the crossbar's conductance codes are at most 16 bits"),
    "input_bits": (1, 16, "bit-serial inputs of at most 16 bits"),
    "adc_bits": (1, 16, "ADCs of at most 16 bits"),
    "adcs_per_pe": (1, 4096, "at most one ADC per source line of the largest array"),
    "adc_gain_frac_bits": (1, 32, "the ADC gain is a 32-bit fixed-point number"),
    "replication": (1, 256, "at most one replica group per PE"),
    "pulse_cycles": (1, 1024, "a read pulse of at most 1024 cycles"),
    "adc_conv_cycles": (1, 1024, "a conversion of at most 1024 cycles"),
    "act_bits": (1, 16, "activations of at most 16 bits"),
}
# Positive, finite and at most: (highest, why).
FLOAT_RANGES = {
    "g_min_us": (1e6, "conductances of at most 1 S"),
    "g_max_us": (1e6, "conductances of at most 1 S"),
    "g_lsb_us": (1e6, "conductances of at most 1 S"),
    "read_voltage_v": (10.0, "read voltages of at most 10 V"),
    "clock_mhz": (10000.0, "clocks of at most 10 GHz"),
}
MAX_CELLS = 1 << 24


@dataclass(frozen=True)
class SystemConfig:
    # Arrays. Inputs drive the `array_cols` bit lines; outputs are read on the `array_rows`
    # source lines, two per signed weight.
    n_pe: int = 8
    array_rows: int = 128
    array_cols: int = 16
    # Weights: a signed level w in -(cell_states-1)..+(cell_states-1) is the pair
    # (G+, G-) = (g_min + max(w,0) dG, g_min + max(-w,0) dG).
    weight_levels: int = 15
    cell_states: int = 8
    # Conductance window and the integer code unit of the behavioral crossbar.
    g_min_us: float = 2.5
    g_max_us: float = 20.0
    g_lsb_us: float = 0.125
    cond_code_bits: int = 8
    read_voltage_v: float = 0.2
    # Bit-serial inputs and the ADCs.
    input_bits: int = 8
    adc_bits: int = 8
    adcs_per_pe: int = 32
    adc_gain_frac_bits: int = 16
    # Spatial parallelism: how many replicas of the conv kernels.
    replication: int = 1
    # Timing of one read slot.
    clock_mhz: float = 100.0
    pulse_cycles: int = 5
    adc_conv_cycles: int = 1
    # Activations between layers.
    act_bits: int = 8

    extra: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self):
        if self.extra:
            raise ConfigError(f"unknown configuration keys: {sorted(self.extra)}")
        for name, (lo, hi, why) in INT_RANGES.items():
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int):
                raise ConfigError(f"{name} must be an integer, got {v!r}")
            if v < lo:
                raise ConfigError(f"{name} must be at least {lo}, got {v}")
            if v > hi:
                raise ConfigError(f"{name}={v} is beyond the supported {lo}..{hi}: {why}")
        for name, (hi, why) in FLOAT_RANGES.items():
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
                raise ConfigError(f"{name} must be a positive number, got {v!r}")
            if not math.isfinite(v) or v > hi:
                raise ConfigError(f"{name}={v} is beyond the supported range (0, {hi:g}]: "
                                  f"{why}")
        cells = self.n_pe * self.array_rows * self.array_cols
        if cells > MAX_CELLS:
            raise ConfigError(f"n_pe x array_rows x array_cols = {cells:,} cells, more than the "
                              f"{MAX_CELLS:,} supported (a chip state holds about 40 bytes "
                              f"per cell)")
        if self.array_cols * (2 ** self.cond_code_bits - 1) >= 2 ** 29:
            raise ConfigError(f"array_cols={self.array_cols} lines of cond_code_bits="
                              f"{self.cond_code_bits}-bit codes give line currents beyond the "
                              f"datapath's 30 bits")
        if self.array_rows % 2:
            raise ConfigError(f"array_rows must be even (differential pairs), got "
                              f"{self.array_rows}")
        if self.weight_levels != 2 * (self.cell_states - 1) + 1:
            raise ConfigError(
                f"weight_levels={self.weight_levels} cannot be made from differential pairs "
                f"of {self.cell_states}-state cells (they give {2 * (self.cell_states - 1) + 1})")
        if self.g_max_us <= self.g_min_us:
            raise ConfigError(f"g_max_us ({self.g_max_us}) must exceed g_min_us "
                              f"({self.g_min_us})")
        if self.g_max_code >= 2 ** self.cond_code_bits:
            raise ConfigError(
                f"g_max_us={self.g_max_us} is code {self.g_max_code} at g_lsb_us={self.g_lsb_us},"
                f" which does not fit cond_code_bits={self.cond_code_bits}")
        if self.state_step_code < 1:
            raise ConfigError(f"g_lsb_us={self.g_lsb_us} is coarser than one conductance state "
                              f"step ({self.state_step_us:.4g} uS)")
        if self.input_bits > 16:
            raise ConfigError(f"input_bits={self.input_bits}: at most 16 supported")
        if self.adc_bits > 16:
            raise ConfigError(f"adc_bits={self.adc_bits}: at most 16 supported")
        if self.act_bits != self.input_bits:
            raise ConfigError(f"act_bits ({self.act_bits}) must equal input_bits "
                              f"({self.input_bits}): activations feed the next layer's DACs")
        if self.replication > self.n_pe:
            raise ConfigError(f"replication={self.replication} needs more PE groups than "
                              f"n_pe={self.n_pe} PEs can hold")

    # Derived quantities, in the integer code units of docs/datapath.md.
    @property
    def w_max(self) -> int:
        return self.cell_states - 1

    @property
    def state_step_us(self) -> float:
        return (self.g_max_us - self.g_min_us) / (self.cell_states - 1)

    @property
    def g_min_code(self) -> int:
        return round(self.g_min_us / self.g_lsb_us)

    @property
    def g_max_code(self) -> int:
        return round(self.g_max_us / self.g_lsb_us)

    @property
    def state_step_code(self) -> float:
        return self.state_step_us / self.g_lsb_us

    @property
    def code_max(self) -> int:
        return 2 ** self.cond_code_bits - 1

    @property
    def adc_max(self) -> int:
        return 2 ** self.adc_bits - 1

    @property
    def act_max(self) -> int:
        return 2 ** self.act_bits - 1

    def state_code(self, state):
        """Integer conductance code of an ideal cell state (0..cell_states-1)."""
        return round(self.g_min_code + state * self.state_step_code)

    @property
    def current_max(self) -> int:
        """Largest line current in code units: every input line on, every cell at code_max."""
        return self.array_cols * self.code_max

    def with_(self, **changes) -> SystemConfig:
        return dataclasses.replace(self, **changes)

    # TOML I/O
    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name != "extra"}

    @classmethod
    def from_dict(cls, d: dict) -> SystemConfig:
        if not isinstance(d, dict):
            raise ConfigError(f"configuration must be a table, got {type(d).__name__}")
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        known = {k: v for k, v in d.items() if k in names}
        unknown = {k: v for k, v in d.items() if k not in names}
        defaults = cls.__dataclass_fields__
        for k, v in known.items():
            # TOML has no int/float distinction problem for ints, but 100 for a float field is
            # fine; 8.0 for an int field is not.
            if isinstance(defaults[k].default, float) and isinstance(v, int) \
                    and not isinstance(v, bool):
                known[k] = float(v)
        return cls(**known, extra=unknown)

    def to_toml(self) -> str:
        import tomli_w
        return tomli_w.dumps({"system": self.to_dict()})

    def save(self, path: str | Path) -> None:
        from . import files
        files.write_text(path, self.to_toml())

    @classmethod
    def load(cls, path: str | Path) -> SystemConfig:
        path = Path(path)
        doc = read_toml(path, "configuration file")
        if "system" in doc:
            others = sorted(set(doc) - {"system"})
            if others:
                raise ConfigError(f"{path}: unknown tables or keys beside [system]: {others}")
            table = doc["system"]
        else:
            table = doc     # a bare list of fields is read as the [system] table
        try:
            return cls.from_dict(table)
        except (ConfigError, TypeError) as e:
            raise ConfigError(f"{path}: {e}") from None


def read_toml(path: Path, what: str, error: type[ConfigError] = ConfigError) -> dict:
    """A TOML document; a missing, unreadable or malformed file is `error` naming it."""
    if not path.exists():
        raise error(f"{what} {path} does not exist")
    if path.is_dir():
        raise error(f"{what} {path} is a directory, not a TOML file")
    if not path.is_file():
        raise error(f"{what} {path} is not a regular file")
    try:
        if path.stat().st_size > 1 << 20:
            raise error(f"{what} {path} is larger than any configuration (1 MiB)")
        text = path.read_text()
    except UnicodeDecodeError:
        raise error(f"{what} {path} is not text") from None
    except OSError as e:
        raise error(f"{what} {path} cannot be read: {e.strerror or e}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise error(f"{what} {path} is not valid TOML: {e}") from None


PAPER = SystemConfig()
