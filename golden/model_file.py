"""Save and load trained models as ``.npz`` files (no pickle).

Layout of the file, for a network with weight layers ``L``:

* ``<L>.weight``        float32, :func:`cim_spec.network.weight_shape` of the layer;
* ``<L>.weight_scale``  0-d float64, the fake-quantization weight scale ``s_w`` (> 0);
* ``<L>.act_scale``     0-d float64, for each layer whose output is an activation map (every
  weight layer followed by ReLU, and every residual add) (> 0);
* ``<L>.bias``          float32 (n_out,), for each weight layer with a bias;
* ``network``           0-d unicode, the network name;
* ``network_json``      0-d unicode, optional: the network description
  (:meth:`cim_spec.network.Network.to_dict`), which imported networks carry;
* ``meta``              0-d unicode, a JSON object (seed, epochs, accuracies, date, and for an
  imported network where it came from and what its activation scales were calibrated on).

The quantized weights are ``clip(round(weight / weight_scale), -7, 7)``, the quantized
activations ``clip(round(a / act_scale), 0, 255)`` (see :mod:`golden.float_model`).
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cim_spec import files as cim_files
from cim_spec.network import Network, weight_shape
from cim_spec.npzread import read_npz

BUNDLED_WEIGHTS = Path(__file__).resolve().parent / "data" / "mcnn_weights.npz"


class ModelFileError(ValueError):
    """A missing, malformed or mismatching model file."""


@dataclass
class TrainedModel:
    """Float weights plus the fake-quantization scales of a trained network."""

    network: str
    weights: dict[str, np.ndarray]
    weight_scales: dict[str, float]
    act_scales: dict[str, float]
    meta: dict = field(default_factory=dict)
    biases: dict[str, np.ndarray] = field(default_factory=dict)
    # The network the model was loaded for (set by load; not stored apart from network_json).
    net: Network | None = field(default=None, compare=False, repr=False)

    def quant_spec(self):
        """The :class:`golden.float_model.QuantSpec` of this model (frozen scales)."""
        from golden.float_model import QuantSpec

        return QuantSpec(dict(self.weight_scales), dict(self.act_scales))

    def quantized_weights(self) -> dict[str, np.ndarray]:
        """Integer weight levels (int8, -7..7) per layer."""
        from golden.float_model import quantize_weight

        return {name: quantize_weight(w, self.weight_scales[name])
                for name, w in self.weights.items()}


def _relu_layers(net: Network) -> list[str]:
    return net.act_layers()


def validate(model: TrainedModel, net: Network, where: str = "model") -> None:
    """Raise :class:`ModelFileError` unless ``model`` fits ``net`` and is finite/positive."""
    if model.network != net.name:
        raise ModelFileError(f"{where}: is for network {model.network!r}, not {net.name!r}")
    expected = {layer.name: weight_shape(layer) for layer in net.weight_layers()}
    extra = set(model.weights) - set(expected)
    if extra:
        raise ModelFileError(f"{where}: weights for unknown layers {sorted(extra)}")
    for name, shape in expected.items():
        if name not in model.weights:
            raise ModelFileError(f"{where}: missing weights of layer {name!r}")
        w = np.asarray(model.weights[name])
        if w.shape != shape:
            raise ModelFileError(f"{where}: layer {name!r} weight has shape {w.shape}, "
                                 f"the network needs {shape}")
        if not np.all(np.isfinite(w)):
            raise ModelFileError(f"{where}: layer {name!r} weight has non-finite values")
        _check_scale(model.weight_scales, name, "weight scale", where)
    for layer in net.weight_layers():
        want = (weight_shape(layer)[0],) if layer.bias else None
        b = model.biases.get(layer.name)
        if want is None and b is not None:
            raise ModelFileError(f"{where}: layer {layer.name!r} has a bias the network does "
                                 f"not have")
        if want is not None and (b is None or np.shape(b) != want
                                 or not np.all(np.isfinite(b))):
            raise ModelFileError(f"{where}: layer {layer.name!r} needs a finite bias of shape "
                                 f"{want}")
    for name in _relu_layers(net):
        _check_scale(model.act_scales, name, "activation scale", where)


def _check_scale(scales: dict, name: str, what: str, where: str) -> None:
    if name not in scales:
        raise ModelFileError(f"{where}: missing {what} of layer {name!r}")
    v = float(scales[name])
    if not math.isfinite(v):
        raise ModelFileError(f"{where}: {what} of layer {name!r} is non-finite ({v})")
    if v <= 0:
        raise ModelFileError(f"{where}: {what} of layer {name!r} must be positive, got {v}")


def save(model: TrainedModel, path: str | Path, net: Network | None = None,
         describe: bool = False) -> None:
    """Write ``model`` as a compressed npz (validated against ``net`` when given; with
    ``describe`` the file also carries ``net``'s description, as imported networks do)."""
    if net is not None:
        validate(model, net)
    arrays: dict[str, np.ndarray] = {}
    if describe:
        arrays["network_json"] = np.array(json.dumps(net.to_dict(), sort_keys=True),
                                          dtype=np.str_)
    for name, b in model.biases.items():
        arrays[f"{name}.bias"] = np.asarray(b, dtype=np.float32)
    for name, w in model.weights.items():
        arrays[f"{name}.weight"] = np.asarray(w, dtype=np.float32)
        arrays[f"{name}.weight_scale"] = np.array(float(model.weight_scales[name]))
    for name, s in model.act_scales.items():
        arrays[f"{name}.act_scale"] = np.array(float(s))
    arrays["network"] = np.array(model.network, dtype=np.str_)
    arrays["meta"] = np.array(json.dumps(model.meta, sort_keys=True), dtype=np.str_)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    cim_files.write_bytes(path, buf.getvalue())


def load(path: str | Path, net: Network) -> TrainedModel:
    """Read a model file written by :func:`save` and check it against ``net``."""
    path = Path(path)
    npz = read_npz(path, ModelFileError, "model file")
    files = set(npz)
    def get(key: str) -> np.ndarray:
        if key not in files:
            raise ModelFileError(f"{path}: missing array {key!r}")
        return npz[key]

    def scalar(key: str) -> float:
        a = get(key)
        if a.shape != () or a.dtype.kind not in "fiu":
            raise ModelFileError(f"{path}: array {key!r} must be a 0-d number, got "
                                 f"{a.dtype} {a.shape}")
        return float(a)

    def text(key: str) -> str:
        a = get(key)
        if a.shape != () or a.dtype.kind != "U":
            raise ModelFileError(f"{path}: array {key!r} must be a 0-d string")
        return str(a)

    weights, wscales, ascales = {}, {}, {}
    for layer in net.weight_layers():
        w = get(f"{layer.name}.weight")
        if w.dtype.kind != "f":
            raise ModelFileError(f"{path}: array '{layer.name}.weight' has dtype "
                                 f"{w.dtype}, expected float")
        weights[layer.name] = w.astype(np.float32)
        wscales[layer.name] = scalar(f"{layer.name}.weight_scale")
    for name in _relu_layers(net):
        ascales[name] = scalar(f"{name}.act_scale")
    biases = {}
    for layer in net.weight_layers():
        if layer.bias:
            b = get(f"{layer.name}.bias")
            if b.dtype.kind != "f":
                raise ModelFileError(f"{path}: array '{layer.name}.bias' has dtype {b.dtype}, "
                                     f"expected float")
            biases[layer.name] = b.astype(np.float32)
    network = text("network")
    try:
        meta = json.loads(text("meta"))
    except json.JSONDecodeError as e:
        raise ModelFileError(f"{path}: array 'meta' is not valid JSON: {e}") from e
    if not isinstance(meta, dict):
        raise ModelFileError(f"{path}: array 'meta' must hold a JSON object")
    known = {f"{n}.{kind}" for n in weights for kind in ("weight", "weight_scale")}
    known |= {f"{n}.act_scale" for n in ascales} | {"network", "meta", "network_json"}
    known |= {f"{n}.bias" for n in biases}
    unknown = files - known
    if unknown:
        raise ModelFileError(f"{path}: unexpected arrays {sorted(unknown)} (a model of "
                             f"another network?)")
    model = TrainedModel(network, weights, wscales, ascales, meta, biases, net)
    validate(model, net, str(path))
    return model


def network_of(path: str | Path) -> Network:
    """The network a model file is for: its stored description (imported networks), else the
    mCNN (the files `cim train` writes)."""
    from cim_spec.network import MCNN
    path = Path(path)
    npz = read_npz(path, ModelFileError, "model file")
    if "network_json" not in npz:
        return MCNN
    a = npz["network_json"]
    if a.shape != () or a.dtype.kind != "U":
        raise ModelFileError(f"{path}: array 'network_json' must be a 0-d string")
    try:
        return Network.from_dict(json.loads(str(a)))
    except (json.JSONDecodeError, ValueError, TypeError) as e:
        raise ModelFileError(f"{path}: bad network description: {e}") from None


def load_any(path: str | Path) -> tuple[Network, TrainedModel]:
    """(network, model) of a model file of any network."""
    net = network_of(path)
    return net, load(path, net)


def load_bundled(net: Network | None = None) -> TrainedModel:
    """The bundled trained mCNN (``golden/data/mcnn_weights.npz``)."""
    if net is None:
        from cim_spec.network import MCNN

        net = MCNN
    return load(BUNDLED_WEIGHTS, net)
