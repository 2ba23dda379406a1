"""The system configuration: one validated, immutable description of the hardware.

Every other module takes a `SystemConfig`; nothing reads globals. The defaults are the
reference system of Yao et al., Nature 2020 (see ARCHITECTURE.md): eight PEs of 128 x 16
1T1R cells, 15-level weights on differential pairs of 8-state cells, 8-bit bit-serial inputs,
8-bit ADCs.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


class ConfigError(ValueError):
    """A configuration value that the hardware cannot have."""


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
        for name in ("n_pe", "array_rows", "array_cols", "weight_levels", "cell_states",
                     "cond_code_bits", "input_bits", "adc_bits", "adcs_per_pe", "replication",
                     "pulse_cycles", "adc_conv_cycles", "act_bits", "adc_gain_frac_bits"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int):
                raise ConfigError(f"{name} must be an integer, got {v!r}")
            if v <= 0:
                raise ConfigError(f"{name} must be at least 1, got {v}")
        for name in ("g_min_us", "g_max_us", "g_lsb_us", "read_voltage_v", "clock_mhz"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
                raise ConfigError(f"{name} must be a positive number, got {v!r}")
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
        Path(path).write_text(self.to_toml())

    @classmethod
    def load(cls, path: str | Path) -> SystemConfig:
        path = Path(path)
        try:
            text = path.read_text()
        except FileNotFoundError:
            raise ConfigError(f"configuration file {path} does not exist") from None
        except UnicodeDecodeError:
            raise ConfigError(f"configuration file {path} is not text") from None
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"configuration file {path} is not valid TOML: {e}") from None
        table = doc.get("system", doc)
        try:
            return cls.from_dict(table)
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from None
        except TypeError as e:
            raise ConfigError(f"{path}: {e}") from None


PAPER = SystemConfig()
