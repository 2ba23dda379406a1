"""The checks of a chip-state manifest's fields: every field's type, range and keys, each
failure a :class:`ChipStateError` that names the file and the field (cim_spec.chipstate reads
the files and calls these)."""

from __future__ import annotations

import math

from . import program
from .mapping import Mapping
from .network import Network


class ChipStateError(ValueError):
    """A chip-state file that is missing, damaged, tampered with or inconsistent."""


class _NonFinite:
    """Stands in for NaN/Infinity while the manifest is parsed, so that the field holding one
    can be named."""

    def __init__(self, text: str):
        self.text = text


def _non_finite_path(obj, path: str = "") -> tuple[str, str] | None:
    if isinstance(obj, _NonFinite):
        return path or "(top level)", obj.text
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) \
        if isinstance(obj, list) else ()
    for k, v in items:
        found = _non_finite_path(v, f"{path}[{k}]" if isinstance(k, int) else
                                 f"{path}.{k}" if path else str(k))
        if found:
            return found
    return None


def _need(m: dict, key: str, kind, where: str, prefix: str = ""):
    if key not in m:
        raise ChipStateError(f"{where}: manifest has no {prefix + key!r}")
    v = m[key]
    if not isinstance(v, kind) or isinstance(v, bool) and kind is not bool:
        raise ChipStateError(f"{where}: manifest {prefix + key!r} has the wrong type "
                             f"({type(v).__name__})")
    return v


def _exact_keys(d: dict, keys, where: str, what: str) -> None:
    unknown, missing = sorted(set(d) - set(keys)), sorted(set(keys) - set(d))
    if unknown:
        raise ChipStateError(f"{where}: manifest {what} has unknown fields {unknown}")
    if missing:
        raise ChipStateError(f"{where}: manifest {what} lacks the fields {missing}")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


# Manifest fields with fixed types and ranges: (check, what the value must be).
SEED_MAX = 2 ** 63
_INT0 = (lambda v: _is_int(v) and 0 <= v < SEED_MAX, "an integer in 0..2**63-1")
_INT1 = (lambda v: _is_int(v) and 1 <= v < SEED_MAX, "an integer in 1..2**63-1")
_POS = (lambda v: _is_number(v) and v > 0, "a positive finite number")
_NONNEG = (lambda v: _is_number(v) and v >= 0, "a finite number >= 0")
_NAME = (lambda v: isinstance(v, str) and 0 < len(v) <= 200, "a non-empty string")
_GAINS = (lambda v: isinstance(v, dict) and 0 < len(v) <= 64
          and all(isinstance(k, str) and _is_int(g) and 1 <= g < 2 ** 32 for k, g in v.items()),
          "an object of layer names to integer ADC gains in 1..2**32-1")
HISTORY_FIELDS = {
    "transfer": {"seed": _INT0, "preset": _NAME, "pulses": _INT0, "failed": _INT0},
    "hybrid": {"images": _INT1, "epochs": _INT1, "batch": _INT1, "lr": _POS,
               "threshold_us": _POS, "seed": _INT0, "pulses": _INT0},
    # Training with the update engine's rule (golden.engine_training, `cim hybrid --engine`):
    # the rule's registers, the requests it made, the images that updated, the pulses applied.
    "engine": {"images": _INT1, "epochs": _INT1, "threshold": _INT1, "margin": _INT0,
               "acc_bits": _INT1, "seed": _INT0, "requests": _INT0, "updates": _INT0,
               "pulses": _INT0},
    "aged": {"age_s": _NONNEG, "drift_seed": _INT0},
    # Drift compensation (golden.compensate): the age it was calibrated at, the reference
    # images it read, and the ADC gains it set (also in `digital`, the ones in use).
    "compensated": {"age_s": _NONNEG, "images": _INT1, "gains": _GAINS},
}
# Fields an entry may have: where hybrid training's forward passes ran, when not on the golden
# model (`cim hybrid --on`; the arrays are the same either way, docs/device.md section 4).
OPTIONAL_HISTORY_FIELDS = {
    "hybrid": {"on": (lambda v: v in ("rtl", "board"), "'rtl' or 'board'")},
}
TOP_FIELDS = ("schema", "schema_version", "network", "stage", "seed", "config", "mapping",
              "device", "digital", "scales", "history", "arrays", "checksum")


def _check_history(history: list, where: str) -> None:
    for i, entry in enumerate(history):
        at = f"history[{i}]"
        if not isinstance(entry, dict):
            raise ChipStateError(f"{where}: manifest {at} must be an object, got "
                                 f"{type(entry).__name__}")
        stage = entry.get("stage")
        if not isinstance(stage, str) or stage not in HISTORY_FIELDS:   # a list is unhashable
            raise ChipStateError(f"{where}: manifest {at}.stage is {stage!r}, not one of "
                                 f"{sorted(HISTORY_FIELDS)}")
        fields = HISTORY_FIELDS[stage]
        optional = OPTIONAL_HISTORY_FIELDS.get(stage, {})
        _exact_keys({k: v for k, v in entry.items() if k not in optional},
                    ["stage", *fields], where, at)
        for k, (ok, what) in [*fields.items(), *optional.items()]:
            if k in entry and not ok(entry[k]):
                raise ChipStateError(f"{where}: manifest {at}.{k} must be {what}, got "
                                     f"{entry[k]!r}")


def _check_scales(scales: dict, network: Network, where: str) -> None:
    layers = [layer.name for layer in network.weight_layers()]
    _exact_keys(scales, ["logit_scale", "weight_scales", "input_scales"], where, "scales")
    if not _POS[0](scales["logit_scale"]):
        raise ChipStateError(f"{where}: manifest scales.logit_scale must be a positive finite "
                             f"number, got {scales['logit_scale']!r}")
    for part in ("weight_scales", "input_scales"):
        d = scales[part]
        if not isinstance(d, dict):
            raise ChipStateError(f"{where}: manifest scales.{part} must be an object")
        _exact_keys(d, layers, where, f"scales.{part}")
        for k, v in d.items():
            if not _POS[0](v):
                raise ChipStateError(f"{where}: manifest scales.{part}.{k} must be a positive "
                                     f"finite number, got {v!r}")


def _read_digital(dg: dict, mapping: Mapping, where: str) -> program.Digital:
    layers = [lm.name for lm in mapping.layers]
    rq = program.requant_layers(mapping.network)
    keys = ["adc_gain", "requant_mult", "requant_shift", "read_noise", "noise_seed"]
    _exact_keys(dg, keys + (["bias"] if "bias" in dg else []), where, "digital")
    bias = dg.get("bias", {})
    if not isinstance(bias, dict) or not all(
            isinstance(b, list) and all(_is_int(v) for v in b) for b in bias.values()):
        raise ChipStateError(f"{where}: manifest digital.bias must map layers to lists of "
                             f"integers")
    for part, names in (("adc_gain", layers), ("requant_mult", rq),
                        ("requant_shift", rq)):
        d = dg[part]
        if not isinstance(d, dict):
            raise ChipStateError(f"{where}: manifest digital.{part} must be an object")
        _exact_keys(d, names, where, f"digital.{part}")
        for k, v in d.items():
            if not _is_int(v):
                raise ChipStateError(f"{where}: manifest digital.{part}.{k} must be an "
                                     f"integer, got {v!r}")
    for k in ("read_noise", "noise_seed"):
        if not _is_int(dg[k]):
            raise ChipStateError(f"{where}: manifest digital.{k} must be an integer, got "
                                 f"{dg[k]!r}")
    digital = program.Digital(adc_gain=dict(dg["adc_gain"]),
                              requant_mult=dict(dg["requant_mult"]),
                              requant_shift=dict(dg["requant_shift"]),
                              read_noise=dg["read_noise"], noise_seed=dg["noise_seed"],
                              bias={k: tuple(b) for k, b in bias.items()})
    try:
        digital.check(mapping)
    except ValueError as e:
        raise ChipStateError(f"{where}: bad digital parameters: {e}") from None
    return digital
