"""The sweep specification of `cim sweep SPEC.toml`: a validated dataclass and its points.

    [sweep]
    sampling = "grid"            # or "random" (then `samples` and `sample_seed`)
    chips = 5                    # chip instances per point: seeds 1..5 (or seeds = [..])
    stages = ["transfer", "hybrid", "aged"]
    ages = [3600, 86400]         # seconds, for the "aged" stage
    images = 1000                # test images (the first N of the data set)
    hybrid_images = 2000         # training images for hybrid training
    preset = "yao2020"           # device preset the device axes change

    [base]                       # fixed changes, like an axis with one value
    "system.array_cols" = 16

    [axes]                       # grid: lists; random: lists (a choice) or {min, max, log}
    "system.adc_bits" = [4, 5, 6, 7, 8]
    "device.relax_sigma_us" = [0.0, 0.3, 0.6, 0.9, 1.2, 1.5]

An axis names a SystemConfig field (cim_spec/config.py) as ``system.FIELD`` or a device
parameter (cim_spec/device_params.py) as ``device.FIELD``. Changing ``system.cell_states``
also sets ``weight_levels`` (the differential pairs tie them). A point is one combination and
one chip seed; every combination is checked (configuration, device, mapping) before any work,
and a bad one is refused like any other bad spec value: the file, the field and the reason.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cim_spec.config import ConfigError, SystemConfig, read_toml
from cim_spec.device_params import DeviceError, DeviceParams, load_preset

STAGES = ("transfer", "hybrid", "aged")
SAMPLING = ("grid", "random")
SWEEP_KEYS = {"sampling", "samples", "sample_seed", "chips", "seeds", "stages", "ages",
              "images", "hybrid_images", "preset"}
MAX_POINTS = 1_000_000


class SpecError(ConfigError):
    """A sweep specification that cannot be run."""


@dataclass(frozen=True)
class Point:
    """One chip instance at one combination of axis values."""

    values: tuple[tuple[str, object], ...]     # (axis, value) in the spec's axis order
    seed: int
    system: SystemConfig
    device: DeviceParams


@dataclass(frozen=True)
class SweepSpec:
    path: str
    axes: dict[str, list]            # grid values, or for random: a list or (lo, hi, log)
    base: dict[str, object] = field(default_factory=dict)
    sampling: str = "grid"
    samples: int = 0
    sample_seed: int = 0
    seeds: tuple[int, ...] = (1,)
    stages: tuple[str, ...] = ("transfer",)
    ages: tuple[float, ...] = ()
    images: int = 1000
    hybrid_images: int = 2000
    preset: str = "yao2020"

    def stage_columns(self) -> list[str]:
        cols = [f"accuracy_{s}" for s in self.stages if s != "aged"]
        if "aged" in self.stages:
            cols += [f"accuracy_aged_{a:g}s" for a in self.ages]
        return cols

    def combinations(self) -> list[dict]:
        names = list(self.axes)
        if self.sampling == "grid":
            return [dict(zip(names, combo, strict=True))
                    for combo in itertools.product(*(self.axes[n] for n in names))]
        out = []
        for i in range(self.samples):
            rng = np.random.default_rng([self.sample_seed, i])
            out.append({n: _sample(self.axes[n], rng) for n in names})
        return out

    def points(self) -> list[Point]:
        """Every point, each combination checked; a bad one is a SpecError."""
        preset = load_preset(self.preset)
        out = []
        for combo in self.combinations():
            changes = {**self.base, **combo}
            system, device = _configure(changes, preset, self.path)
            values = tuple(combo.items())
            out.extend(Point(values, s, system, device) for s in self.seeds)
        return out

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["axes"] = {k: list(v) if isinstance(v, (list, tuple)) else v
                     for k, v in self.axes.items()}
        return d


def _sample(axis, rng: np.random.Generator):
    if isinstance(axis, list):
        return axis[int(rng.integers(len(axis)))]
    lo, hi, log = axis
    u = float(rng.random())
    v = math.exp(math.log(lo) + u * (math.log(hi) - math.log(lo))) if log else lo + u * (hi - lo)
    return int(round(v)) if isinstance(lo, int) and isinstance(hi, int) else v


def _configure(changes: dict, preset: DeviceParams, path: str):
    """SystemConfig and DeviceParams of one combination, checked against each other and
    against the mCNN's mapping."""
    from cim_spec.mapping import map_network
    from cim_spec.network import MCNN
    sys_kw = {k[7:]: v for k, v in changes.items() if k.startswith("system.")}
    dev_kw = {k[7:]: v for k, v in changes.items() if k.startswith("device.")}
    if "cell_states" in sys_kw and "weight_levels" not in sys_kw:
        sys_kw["weight_levels"] = 2 * (sys_kw["cell_states"] - 1) + 1
    where = ", ".join(f"{k}={v!r}" for k, v in changes.items())
    try:
        system = SystemConfig.from_dict({**SystemConfig().to_dict(), **sys_kw})
        device = DeviceParams.from_dict({**preset.to_dict(), **dev_kw}, "device")
        device.check_config(system)
        map_network(system, MCNN)
    except (ConfigError, TypeError) as e:
        raise SpecError(f"{path}: axes/base ({where}): {e}") from None
    return system, device


# ---------------------------------------------------------------------------------------------
# Loading and checking

def load(path: str | Path) -> SweepSpec:
    path = Path(path)
    doc = read_toml(path, "sweep spec", SpecError)
    p = str(path)
    unknown = sorted(set(doc) - {"sweep", "axes", "base"})
    if unknown:
        raise SpecError(f"{p}: unknown tables or keys {unknown} (expected [sweep], [axes], "
                        f"[base])")
    sw = _table(doc, "sweep", p)
    bad = sorted(set(sw) - SWEEP_KEYS)
    if bad:
        raise SpecError(f"{p}: sweep.{bad[0]}: unknown key (known: "
                        f"{', '.join(sorted(SWEEP_KEYS))})")
    kw: dict = {"path": p}
    kw["sampling"] = sw.get("sampling", "grid")
    if kw["sampling"] not in SAMPLING:
        raise SpecError(f"{p}: sweep.sampling: must be one of {', '.join(SAMPLING)}, got "
                        f"{kw['sampling']!r}")
    random = kw["sampling"] == "random"
    if random:
        kw["samples"] = _int(sw, "samples", p, 1, MAX_POINTS, required=True)
        kw["sample_seed"] = _int(sw, "sample_seed", p, 0, 2 ** 63 - 1, default=0)
    elif "samples" in sw or "sample_seed" in sw:
        raise SpecError(f"{p}: sweep.samples: only for sampling = \"random\"")
    if "seeds" in sw and "chips" in sw:
        raise SpecError(f"{p}: sweep.seeds: give either chips or seeds, not both")
    if "seeds" in sw:
        seeds = sw["seeds"]
        if not isinstance(seeds, list) or not seeds or not all(
                isinstance(s, int) and not isinstance(s, bool) and 0 <= s < 2 ** 63
                for s in seeds) or len(set(seeds)) != len(seeds):
            raise SpecError(f"{p}: sweep.seeds: must be a non-empty list of distinct integers "
                            f"in 0..2**63-1, got {seeds!r}")
        kw["seeds"] = tuple(seeds)
    else:
        kw["seeds"] = tuple(range(1, _int(sw, "chips", p, 1, 100_000, default=1) + 1))
    stages = sw.get("stages", ["transfer"])
    if not isinstance(stages, list) or not stages or any(s not in STAGES for s in stages) \
            or len(set(stages)) != len(stages):
        raise SpecError(f"{p}: sweep.stages: must be a non-empty list of distinct stages from "
                        f"{', '.join(STAGES)}, got {stages!r}")
    kw["stages"] = tuple(s for s in STAGES if s in stages)
    ages = sw.get("ages", [])
    if not isinstance(ages, list) or not all(
            isinstance(a, (int, float)) and not isinstance(a, bool) and math.isfinite(a)
            and 0 <= a <= 3.2e11 for a in ages):
        raise SpecError(f"{p}: sweep.ages: must be a list of ages in seconds (0..3.2e11), got "
                        f"{ages!r}")
    if ("aged" in stages) != bool(ages):
        raise SpecError(f"{p}: sweep.ages: the \"aged\" stage needs ages and ages need the "
                        f"\"aged\" stage")
    kw["ages"] = tuple(float(a) for a in ages)
    kw["images"] = _int(sw, "images", p, 1, 10 ** 7, default=1000)
    kw["hybrid_images"] = _int(sw, "hybrid_images", p, 1, 10 ** 7, default=2000)
    preset = sw.get("preset", "yao2020")
    if not isinstance(preset, str):
        raise SpecError(f"{p}: sweep.preset: must be a preset name or a TOML path")
    try:
        load_preset(preset)
    except DeviceError as e:
        raise SpecError(f"{p}: sweep.preset: {e}") from None
    kw["preset"] = preset
    kw["base"] = {k: _value(k, v, p, "base") for k, v in _table(doc, "base", p).items()}
    axes = _table(doc, "axes", p)
    if not axes:
        raise SpecError(f"{p}: axes: no axes (give at least one, e.g. \"system.adc_bits\" = "
                        f"[6, 8])")
    kw["axes"] = {k: _axis(k, v, p, random) for k, v in axes.items()}
    both = sorted(set(kw["axes"]) & set(kw["base"]))
    if both:
        raise SpecError(f"{p}: axes.{both[0]}: also fixed in [base]")
    spec = SweepSpec(**kw)
    n = (math.prod(len(v) for v in spec.axes.values()) if not random else spec.samples) \
        * len(spec.seeds)
    if n > MAX_POINTS:
        raise SpecError(f"{p}: axes: {n:,} points, more than the {MAX_POINTS:,} supported")
    return spec


def _table(doc: dict, name: str, p: str) -> dict:
    t = doc.get(name, {})
    if not isinstance(t, dict):
        raise SpecError(f"{p}: {name}: must be a table")
    return t


def _int(t: dict, key: str, p: str, lo: int, hi: int, default: int | None = None,
         required: bool = False) -> int:
    if key not in t:
        if required:
            raise SpecError(f"{p}: sweep.{key}: missing")
        return default
    v = t[key]
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise SpecError(f"{p}: sweep.{key}: must be an integer in {lo}..{hi}, got {v!r}")
    return v


_SYSTEM = {f.name: f for f in dataclasses.fields(SystemConfig) if f.name != "extra"}
_DEVICE = {f.name: f for f in dataclasses.fields(DeviceParams)
           if f.name not in ("name", "description")}


def _value(name: str, v, p: str, table: str):
    """A value of a system or device field: its type is the field's (an int is fine where a
    float is expected)."""
    kind, _, fname = name.partition(".")
    fields = {"system": _SYSTEM, "device": _DEVICE}.get(kind)
    if fields is None or fname not in fields:
        raise SpecError(f"{p}: {table}.{name}: not a field; axes are system.FIELD "
                        f"(cim_spec/config.py) or device.FIELD (cim_spec/device_params.py)")
    want = type(fields[fname].default)
    ok = (isinstance(v, want) or (want is float and isinstance(v, int))) \
        and not isinstance(v, bool)
    if not ok:
        raise SpecError(f"{p}: {table}.{name}: must be {want.__name__} values, got {v!r}")
    return float(v) if want is float else v


def _axis(name: str, v, p: str, random: bool):
    if isinstance(v, list):
        if not v:
            raise SpecError(f"{p}: axes.{name}: an empty list")
        vals = [_value(name, x, p, "axes") for x in v]
        if len(set(vals)) != len(vals):
            raise SpecError(f"{p}: axes.{name}: repeated values {v!r}")
        return vals
    if random and isinstance(v, dict):
        bad = sorted(set(v) - {"min", "max", "log"})
        if bad or "min" not in v or "max" not in v:
            raise SpecError(f"{p}: axes.{name}: a range is {{min = .., max = .., log = "
                            f"false}}, got {v!r}")
        lo, hi = _value(name, v["min"], p, "axes"), _value(name, v["max"], p, "axes")
        log = v.get("log", False)
        if not isinstance(log, bool) or not lo <= hi or (log and lo <= 0):
            raise SpecError(f"{p}: axes.{name}: needs min <= max (and min > 0 with log = "
                            f"true), got {v!r}")
        return (lo, hi, log)
    raise SpecError(f"{p}: axes.{name}: must be a list of values"
                    + (" or a {min, max} range" if random else "") + f", got {v!r}")
