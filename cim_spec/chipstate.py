"""Chip-state files: every cell of a programmed chip, and all that is needed to run it.

A chip state is two files with one stem: ``name.npz`` holds the arrays (numpy format, no
pickle), ``name.json`` the manifest (configuration, mapping, device, seed, digital parameters,
scales, history, array table, checksums). Either path, or the bare stem, loads the pair.
The format is documented in docs/device.md; :func:`load` checks every part and raises
:class:`ChipStateError` naming the first problem it finds.

Files are byte-for-byte reproducible: the zip members carry a fixed date and the manifest is
written with sorted keys, so the same seed gives the same files.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from . import files, program
from .config import ConfigError, SystemConfig
from .device_params import DeviceParams, to_codes
from .manifest_checks import (
    SEED_MAX,
    TOP_FIELDS,
    ChipStateError,
    _check_history,
    _check_scales,
    _exact_keys,
    _need,
    _non_finite_path,
    _NonFinite,
    _read_digital,
)
from .mapping import Mapping, map_network
from .network import MCNN, Network, weight_shape
from .npzread import read_npz
from .program import target_conductance

SCHEMA = "cim-chip-state"
SCHEMA_VERSION = 2
# Version 1 named the network ("mcnn"), the only one it could hold; version 2 stores the whole
# description, so a chip state holds any network the mapping accepts. Version 1 still loads.
READ_VERSIONS = (1, 2)
ZIP_DATE = (1980, 1, 1, 0, 0, 0)


@dataclass
class ChipState:
    """A programmed chip. `g_us` is the analog truth; `codes` is what the datapath uses."""

    config: SystemConfig
    mapping: Mapping
    device: DeviceParams
    seed: int
    g_us: np.ndarray                  # (n_pe, rows, cols) float64 conductance, uS
    target: np.ndarray                # (n_pe, rows, cols) ideal target codes
    stuck: np.ndarray                 # (n_pe, rows, cols) int8: 0, +1 stuck-on, -1 stuck-off
    gain: np.ndarray                  # (n_pe, rows, cols) device-to-device step gain
    pulses: np.ndarray                # (n_pe, rows, cols) programming pulses received so far
    verified: np.ndarray              # (n_pe, rows, cols) bool: verified at transfer
    levels: dict[str, np.ndarray]     # ex-situ weight levels per layer, (n_out, n_in)
    digital: program.Digital
    scales: dict                      # logit_scale, weight_scales, input_scales
    history: list[dict] = field(default_factory=list)

    @property
    def codes(self) -> np.ndarray:
        return to_codes(self.g_us, self.config)

    @property
    def chip(self) -> program.Chip:
        return program.Chip(self.mapping, self.codes, self.digital)

    @property
    def stage(self) -> str:
        return self.history[-1]["stage"] if self.history else "unprogrammed"

    @property
    def logit_scale(self) -> float:
        return float(self.scales["logit_scale"])

    @property
    def manifest(self) -> dict:
        return _manifest(self)

    def with_(self, **changes) -> ChipState:
        return replace(self, **changes)


def _cells_arrays(state: ChipState) -> dict[str, np.ndarray]:
    arrays = {
        "codes": state.codes.astype("<i4"),
        "target": np.asarray(state.target).astype("<i4"),
        "g_us": np.asarray(state.g_us).astype("<f8"),
        "stuck": np.asarray(state.stuck).astype("i1"),
        "gain": np.asarray(state.gain).astype("<f8"),
        "pulses": np.asarray(state.pulses).astype("<i8"),
        "verified": np.asarray(state.verified).astype("?"),
    }
    for name, lv in state.levels.items():
        arrays[f"levels.{name}"] = np.asarray(lv).astype("i1")
    return arrays


def _expected_arrays(config: SystemConfig, network: Network) -> dict[str, tuple[str, tuple]]:
    cells = (config.n_pe, config.array_rows, config.array_cols)
    out = {"codes": ("<i4", cells), "target": ("<i4", cells), "g_us": ("<f8", cells),
           "stuck": ("|i1", cells), "gain": ("<f8", cells), "pulses": ("<i8", cells),
           "verified": ("|b1", cells)}
    for layer in network.weight_layers():
        shape = weight_shape(layer)
        out[f"levels.{layer.name}"] = ("|i1", (shape[0], int(np.prod(shape[1:]))))
    return out


def arrays_checksum(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}\0{a.dtype.str}\0{list(a.shape)}\0".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _canonical(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)


def manifest_checksum(manifest: dict) -> str:
    body = {k: v for k, v in manifest.items() if k != "checksum"}
    body["arrays_sha256"] = manifest.get("checksum", {}).get("arrays")
    return hashlib.sha256(_canonical(body).encode()).hexdigest()


def _digital_dict(d: program.Digital) -> dict:
    out = {"adc_gain": {k: int(v) for k, v in d.adc_gain.items()},
           "requant_mult": {k: int(v) for k, v in d.requant_mult.items()},
           "requant_shift": {k: int(v) for k, v in d.requant_shift.items()},
           "read_noise": int(d.read_noise), "noise_seed": int(d.noise_seed)}
    if d.bias:   # only networks with biases have the member (the mCNN's manifest is unchanged)
        out["bias"] = {k: [int(v) for v in b] for k, b in d.bias.items()}
    return out


def _jsonable(obj):
    # JSON round trip normalizes tuples to lists, so stored and recomputed dicts compare equal.
    return json.loads(json.dumps(obj))


def _manifest(state: ChipState, arrays: dict[str, np.ndarray] | None = None) -> dict:
    arrays = _cells_arrays(state) if arrays is None else arrays
    m = {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "network": state.mapping.network.to_dict(),
        "stage": state.stage,
        "seed": int(state.seed),
        "config": state.config.to_dict(),
        "mapping": _jsonable(state.mapping.to_dict()),
        "device": {"preset": state.device.name, "params": state.device.to_dict()},
        "digital": _digital_dict(state.digital),
        "scales": _jsonable(state.scales),
        "history": _jsonable(state.history),
        "arrays": {k: {"dtype": a.dtype.str, "shape": list(a.shape)} for k, a in arrays.items()},
        "checksum": {"algorithm": "sha256", "arrays": arrays_checksum(arrays)},
    }
    m["checksum"]["manifest"] = manifest_checksum(m)
    return m


def paths(path: str | Path) -> tuple[Path, Path]:
    """(npz, json) of a chip state given either file or the bare stem."""
    p = Path(path)
    if p.suffix in (".npz", ".json"):
        p = p.with_suffix("")
    return p.with_name(p.name + ".npz"), p.with_name(p.name + ".json")


def prev_path(npz_path: Path) -> Path:
    """Where :func:`save` keeps the old arrays while it replaces a chip state."""
    return npz_path.with_name(f".{npz_path.name}.prev")


def check_output(path: str | Path, force: bool = False, inputs=(), chips=()
                 ) -> tuple[Path, Path]:
    """Refuse an output chip state that exists (without `force`), that is one of the input
    files `inputs` or a file of the input chip states `chips`, or whose files are of another
    kind; see cim_spec.files."""
    npz_path, json_path = paths(path)
    ins = [Path(i) for i in inputs if i is not None]
    for c in chips:
        if c is not None:
            ins += [*paths(c), Path(c)]
    files.check_output(npz_path, {files.CHIP_ARRAYS}, force, ins)
    files.check_output(json_path, {files.CHIP_MANIFEST}, force, ins)
    return npz_path, json_path


def save(state: ChipState, path: str | Path) -> tuple[Path, Path]:
    """Write ``stem.npz`` and ``stem.json``; returns their paths.

    The pair is committed so that a reader sees the whole old state or the whole new one:
    both files are written to temporaries first; the old npz gets a second name
    (``.stem.npz.prev``); then the new npz is renamed into place and the new manifest last.
    Between those two renames the old manifest describes the kept old arrays, and
    :func:`load` finds them by the manifest's checksum; after the last rename the kept copy
    is removed. A failure before the end restores the old state."""
    npz_path, json_path = paths(path)
    arrays = _cells_arrays(state)
    manifest = _manifest(state, arrays)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(arrays):
            info = zipfile.ZipInfo(f"{name}.npy", date_time=ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            with zf.open(info, "w") as f:
                np.lib.format.write_array(f, arrays[name], allow_pickle=False)
    text = json.dumps(manifest, sort_keys=True, indent=1) + "\n"
    prev = prev_path(npz_path)
    _recover(npz_path, json_path)
    had_old = npz_path.is_file()
    kept = []

    def keep():
        files.keep_copy(npz_path, prev)
        kept.append(prev)

    try:
        files.commit([(npz_path, buf.getvalue()), (json_path, text.encode())],
                     steps=[keep] if had_old else [])
    except BaseException:
        # Put the old arrays back beside the old manifest (or take away an orphan npz).
        try:
            if kept:
                os.replace(prev, npz_path)
            elif not had_old and not json_path.exists():
                files.remove(npz_path)
        except OSError:
            pass        # load() still finds the kept copy by its checksum
        raise
    try:
        files.remove(prev)
    except files.OutputError:
        pass    # committed; the copy no longer matches the manifest and the next save drops it
    return npz_path, json_path


def _npz_checksum(npz_path: Path) -> str | None:
    try:
        return arrays_checksum(read_npz(npz_path, ChipStateError, "chip-state array file"))
    except ChipStateError:
        return None


def _recover(npz_path: Path, json_path: Path) -> None:
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


# ---------------------------------------------------------------------------------------------
# Loading: every check names the file and the problem.

def _read_manifest(json_path: Path) -> dict:
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


def _read_arrays(npz_path: Path, expected: dict, checksum: str, json_name: str
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


def load(path: str | Path) -> ChipState:
    """Read and check a chip state (``stem``, ``stem.npz`` or ``stem.json``)."""
    npz_path, json_path = paths(path)
    where = str(json_path)
    m = _read_manifest(json_path)
    checksum = _need(m, "checksum", dict, where)
    _exact_keys(checksum, ["algorithm", "arrays", "manifest"], where, "checksum")
    if checksum["algorithm"] != "sha256" or not all(
            isinstance(checksum[k], str) for k in ("arrays", "manifest")):
        raise ChipStateError(f"{where}: manifest checksum must be sha256 digests")
    if manifest_checksum(m) != checksum.get("manifest"):
        raise ChipStateError(f"{where}: manifest checksum mismatch (the manifest was edited "
                             f"or damaged)")
    try:
        config = SystemConfig.from_dict(_need(m, "config", dict, where))
    except (ConfigError, TypeError) as e:
        raise ChipStateError(f"{where}: bad configuration: {e}") from None
    network = _read_network(m, where)
    try:
        mapping = map_network(config, network, _replicated(m))
    except ConfigError as e:
        raise ChipStateError(f"{where}: the configuration cannot map the network: {e}") from None
    if _need(m, "mapping", dict, where) != _jsonable(mapping.to_dict()):
        raise ChipStateError(f"{where}: the stored mapping is not the one the configuration "
                             f"gives (a file from another mapping version or edited)")
    dev = _need(m, "device", dict, where)
    _exact_keys(dev, ["preset", "params"], where, "device")
    try:
        device = DeviceParams.from_dict(dev.get("params"), f"{where}: device")
        device.check_config(config)
    except ConfigError as e:
        raise ChipStateError(str(e)) from None
    if dev["preset"] != device.name:
        raise ChipStateError(f"{where}: manifest device.preset {dev['preset']!r} is not the "
                             f"name of its parameters ({device.name!r})")
    digital = _read_digital(_need(m, "digital", dict, where), mapping, where)
    seed = _need(m, "seed", int, where)
    if not 0 <= seed < SEED_MAX:
        raise ChipStateError(f"{where}: manifest seed must be an integer in 0..2**63-1, got "
                             f"{seed}")
    if digital.noise_seed != seed % 2 ** 32:
        raise ChipStateError(f"{where}: manifest digital.noise_seed {digital.noise_seed} is "
                             f"not the seed mod 2**32 ({seed % 2 ** 32})")
    scales = _need(m, "scales", dict, where)
    _check_scales(scales, network, where)
    history = _need(m, "history", list, where)
    _check_history(history, where)
    stage = history[-1]["stage"] if history else "unprogrammed"
    if m.get("stage") != stage:
        raise ChipStateError(f"{where}: manifest stage {m.get('stage')!r} is not the last "
                             f"stage of its history ({stage!r})")

    declared = _need(m, "arrays", dict, where)
    expected = _expected_arrays(config, network)
    for name, (dtype, shape) in expected.items():
        d = declared.get(name)
        if not isinstance(d, dict) or d.get("dtype") != dtype or d.get("shape") != list(shape):
            have = f"dtype {d.get('dtype')} shape {d.get('shape')}" if isinstance(d, dict) \
                else "missing"
            raise ChipStateError(f"{where}: array {name!r} is declared as {have}, the "
                                 f"configuration needs dtype {dtype} shape {list(shape)}")
    extra = sorted(set(declared) - set(expected))
    if extra:
        raise ChipStateError(f"{where}: manifest declares arrays {extra} that the "
                             f"configuration does not have")
    arrays = _read_arrays(npz_path, expected, checksum["arrays"], json_path.name)
    state = _check_cells(arrays, config, mapping, device, npz_path)
    return ChipState(config, mapping, device, seed, state["g_us"], state["target"],
                     state["stuck"], state["gain"], state["pulses"], state["verified"],
                     state["levels"], digital, scales, history)


def _replicated(m: dict):
    """The conv layers the stored mapping replicates (named replication), or None (all)."""
    layers = m.get("mapping", {}).get("layers") if isinstance(m.get("mapping"), dict) else None
    if not isinstance(layers, list) or not all(isinstance(lm, dict) for lm in layers):
        return None     # the comparison with the recomputed mapping reports it
    names = [lm.get("name") for lm in layers if lm.get("kind") == "conv" and lm.get("replicated")]
    return names if all(isinstance(n, str) for n in names) else None


def _read_network(m: dict, where: str) -> Network:
    if m["schema_version"] == 1:
        if _need(m, "network", str, where) != MCNN.name:
            raise ChipStateError(f"{where}: network {m['network']!r} is not supported by "
                                 f"version 1 (only {MCNN.name!r})")
        return MCNN
    try:
        return Network.from_dict(_need(m, "network", dict, where))
    except (TypeError, ValueError) as e:
        raise ChipStateError(f"{where}: bad network description: {e}") from None


def _check_cells(a: dict, config: SystemConfig, mapping: Mapping, device: DeviceParams,
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
