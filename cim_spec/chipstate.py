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
from .chipstate_files import (  # noqa: F401 (the format's names, public here too)
    READ_VERSIONS,
    SCHEMA,
    SCHEMA_VERSION,
    arrays_checksum,
    check_cells,
    paths,
    prev_path,
    read_arrays,
    read_manifest,
    read_network,
    recover,
    replicated,
)
from .config import ConfigError, SystemConfig
from .device_params import DeviceParams, to_codes
from .manifest_checks import (
    SEED_MAX,
    ChipStateError,
    _check_history,
    _check_scales,
    _exact_keys,
    _need,
    _read_digital,
)
from .mapping import Mapping, map_network
from .network import Network, weight_shape

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
    recover(npz_path, json_path)
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


def load(path: str | Path) -> ChipState:
    """Read and check a chip state (``stem``, ``stem.npz`` or ``stem.json``)."""
    npz_path, json_path = paths(path)
    where = str(json_path)
    m = read_manifest(json_path)
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
    network = read_network(m, where)
    try:
        mapping = map_network(config, network, replicated(m))
    except ConfigError as e:
        raise ChipStateError(f"{where}: the configuration cannot map the network: {e}") from None
    if _need(m, "mapping", dict, where) != _jsonable(mapping.to_dict()):
        raise ChipStateError(f"{where}: the stored mapping is not the one the configuration "
                             f"gives (a file from another mapping version or edited)")
    dev = _need(m, "device", dict, where)
    _exact_keys(dev, ["preset", "params"], where, "device")
    try:
        device = DeviceParams.from_dict(dev.get("params"), f"{where}: device")
    except ConfigError as e:
        raise ChipStateError(str(e)) from None
    try:
        device.check_config(config)
    except ConfigError as e:
        # The device's own message does not know the file (a configuration edited so that
        # the stored device no longer fits it).
        raise ChipStateError(f"{where}: {e}") from None
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
    arrays = read_arrays(npz_path, expected, checksum["arrays"], json_path.name)
    state = check_cells(arrays, config, mapping, device, npz_path)
    return ChipState(config, mapping, device, seed, state["g_us"], state["target"],
                     state["stuck"], state["gain"], state["pulses"], state["verified"],
                     state["levels"], digital, scales, history)


