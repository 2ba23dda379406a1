"""The files of a chip state (cim_spec.chipstate): their names, the arrays' checksum, the
recovery after an interrupted save, and the reading of the manifest and the arrays with every
check that names the file and the problem. The manifest's fields are checked in
cim_spec.manifest_checks; chipstate.load puts the pieces together."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from . import files
from .config import SystemConfig
from .device_params import DeviceParams, to_codes
from .manifest_checks import TOP_FIELDS, ChipStateError, _need, _non_finite_path, _NonFinite
from .mapping import Mapping
from .network import MCNN, Network
from .npzread import read_npz
from .program import target_conductance

SCHEMA = "cim-chip-state"
SCHEMA_VERSION = 2
# Version 1 named the network ("mcnn"), the only one it could hold; version 2 stores the whole
# description, so a chip state holds any network the mapping accepts. Version 1 still loads.
READ_VERSIONS = (1, 2)


def arrays_checksum(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}\0{a.dtype.str}\0{list(a.shape)}\0".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def paths(path: str | Path) -> tuple[Path, Path]:
    """(npz, json) of a chip state given either file or the bare stem."""
    p = Path(path)
    if p.suffix in (".npz", ".json"):
        p = p.with_suffix("")
    return p.with_name(p.name + ".npz"), p.with_name(p.name + ".json")


def prev_path(npz_path: Path) -> Path:
    """Where :func:`save` keeps the old arrays while it replaces a chip state."""
    return npz_path.with_name(f".{npz_path.name}.prev")


def _npz_checksum(npz_path: Path) -> str | None:
    try:
        return arrays_checksum(read_npz(npz_path, ChipStateError, "chip-state array file"))
    except ChipStateError:
        return None


def recover(npz_path: Path, json_path: Path) -> None:
    """After an interrupted save (a kept copy of old arrays is still there): put the old
    arrays back if they are the ones the manifest describes, else drop the copy."""
    prev = prev_path(npz_path)
    if not prev.is_file():
        return
    try:
        want = json.loads(json_path.read_text())["checksum"]["arrays"]
    except (OSError, ValueError, KeyError, TypeError):
        want = None
    if want is not None and _npz_checksum(npz_path) != want and _npz_checksum(prev) == want:
        try:
            os.replace(prev, npz_path)
            return
        except OSError as e:
            raise files.OutputError(f"cannot restore {npz_path} from {prev}: "
                                    f"{e.strerror or e}") from None
    files.remove(prev)


def read_manifest(json_path: Path) -> dict:
    if json_path.is_dir():
        raise ChipStateError(f"{json_path}: is a directory, not a chip-state manifest")
    try:
        if json_path.exists() and json_path.stat().st_size > 64 << 20:
            raise ChipStateError(f"{json_path}: larger than any chip-state manifest")
        text = json_path.read_text()
    except FileNotFoundError:
        raise ChipStateError(f"{json_path}: chip-state manifest does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ChipStateError(f"{json_path}: cannot read the manifest: {e}") from None
    try:
        m = json.loads(text, parse_constant=_NonFinite)
    except (json.JSONDecodeError, RecursionError) as e:
        raise ChipStateError(f"{json_path}: manifest is not valid JSON: {e}") from None
    if not isinstance(m, dict):
        raise ChipStateError(f"{json_path}: manifest must be a JSON object")
    bad = _non_finite_path(m)
    if bad:
        raise ChipStateError(f"{json_path}: manifest field {bad[0]} is {bad[1]}; the format "
                             f"holds finite numbers only")
    if m.get("schema") != SCHEMA:
        raise ChipStateError(f"{json_path}: not a chip-state manifest (schema "
                             f"{m.get('schema')!r}, expected {SCHEMA!r})")
    if m.get("schema_version") not in READ_VERSIONS or isinstance(m.get("schema_version"),
                                                                  bool):
        raise ChipStateError(f"{json_path}: schema version {m.get('schema_version')!r}; this "
                             f"version of cim reads versions {list(READ_VERSIONS)}")
    unknown = sorted(set(m) - set(TOP_FIELDS))
    if unknown:
        raise ChipStateError(f"{json_path}: manifest has unknown fields {unknown}")
    return m


def read_arrays(npz_path: Path, expected: dict, checksum: str, json_name: str
                 ) -> dict[str, np.ndarray]:
    """The arrays of `npz_path`, checked against the expected dtypes and shapes and the
    manifest's checksum; after an interrupted save, the kept old arrays if they are the
    ones the manifest describes."""
    try:
        return _arrays_of(npz_path, expected, checksum, json_name)
    except ChipStateError:
        prev = prev_path(npz_path)
        if prev.is_file():
            try:
                return _arrays_of(prev, expected, checksum, json_name)
            except ChipStateError:
                pass
        raise


def _arrays_of(npz_path: Path, expected: dict, checksum: str, json_name: str
               ) -> dict[str, np.ndarray]:
    if not os.path.lexists(npz_path):
        raise ChipStateError(f"{npz_path}: chip-state array file does not exist")
    arrays = read_npz(npz_path, ChipStateError, "chip-state array file")
    if set(arrays) != set(expected):
        raise ChipStateError(
            f"{npz_path}: arrays {sorted(arrays)} do not match the manifest's "
            f"{sorted(expected)}")
    for name, (dtype, shape) in expected.items():
        a = arrays[name]
        if a.dtype.str != dtype or a.shape != shape:
            raise ChipStateError(f"{npz_path}: array {name!r} has dtype {a.dtype.str} shape "
                                 f"{list(a.shape)}, expected {dtype} {list(shape)}")
    if arrays_checksum(arrays) != checksum:
        raise ChipStateError(f"{npz_path}: checksum mismatch: the arrays are not the ones the "
                             f"manifest {json_name} describes")
    return arrays


def replicated(m: dict):
    """The conv layers the stored mapping replicates (named replication), or None (all)."""
    layers = m.get("mapping", {}).get("layers") if isinstance(m.get("mapping"), dict) else None
    if not isinstance(layers, list) or not all(isinstance(lm, dict) for lm in layers):
        return None     # the comparison with the recomputed mapping reports it
    names = [lm.get("name") for lm in layers if lm.get("kind") == "conv" and lm.get("replicated")]
    return names if all(isinstance(n, str) for n in names) else None


def read_network(m: dict, where: str) -> Network:
    if m["schema_version"] == 1:
        if _need(m, "network", str, where) != MCNN.name:
            raise ChipStateError(f"{where}: network {m['network']!r} is not supported by "
                                 f"version 1 (only {MCNN.name!r})")
        return MCNN
    try:
        return Network.from_dict(_need(m, "network", dict, where))
    except (TypeError, ValueError) as e:
        raise ChipStateError(f"{where}: bad network description: {e}") from None


def check_cells(a: dict, config: SystemConfig, mapping: Mapping, device: DeviceParams,
                 where) -> dict:
    codes = a["codes"].astype(np.int64)
    if codes.min() < 0 or codes.max() > config.code_max:
        raise ChipStateError(f"{where}: conductance codes {codes.min()}..{codes.max()} lie "
                             f"outside 0..{config.code_max}")
    g = a["g_us"]
    if not np.all(np.isfinite(g)) or g.min() < device.g_floor_us or g.max() > device.g_ceil_us:
        raise ChipStateError(f"{where}: conductances lie outside the device range "
                             f"{device.g_floor_us}..{device.g_ceil_us} uS")
    if not np.array_equal(to_codes(g, config), codes):
        raise ChipStateError(f"{where}: codes are not the quantized conductances")
    levels = {}
    for layer in mapping.network.weight_layers():
        lv = a[f"levels.{layer.name}"].astype(np.int64)
        if np.abs(lv).max(initial=0) > config.w_max:
            raise ChipStateError(f"{where}: weight levels of {layer.name} exceed "
                                 f"+-{config.w_max}")
        levels[layer.name] = lv
    target = a["target"].astype(np.int64)
    if not np.array_equal(target, target_conductance(mapping, levels)):
        raise ChipStateError(f"{where}: target codes are not those of the weight levels")
    if not np.isin(a["stuck"], (-1, 0, 1)).all():
        raise ChipStateError(f"{where}: stuck markers must be -1, 0 or 1")
    if not np.all(np.isfinite(a["gain"])) or a["gain"].min() <= 0:
        raise ChipStateError(f"{where}: step gains must be positive")
    if a["pulses"].min() < 0:
        raise ChipStateError(f"{where}: pulse counts must not be negative")
    return {"g_us": g.astype(np.float64), "target": target, "stuck": a["stuck"],
            "gain": a["gain"].astype(np.float64), "pulses": a["pulses"].astype(np.int64),
            "verified": a["verified"], "levels": levels}
