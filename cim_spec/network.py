"""The network as a list of layers, and the shape arithmetic every other module shares.

Conventions, fixed here once for the float model, the integer model, the mapping and the RTL:

* Feature maps are (channels, height, width), "CHW"; a batch adds a leading axis.
* A conv patch vector for input channel ``c`` is its 3x3 window in row-major (dy, dx) order;
  a multi-channel patch is the concatenation over channels (channel-major).
* The flatten before a dense layer is CHW order, so a 16-wide input chunk of the FC layer is
  one 4x4 channel of S4.
* Pooling is max- or average-pooling, in ceil mode by default: the last window of a row or
  column may be clipped (``ceil=False``: floor mode, windows past the edge are dropped).
* A conv has a stride and zero padding (``pad`` rows/columns of code 0 on every side). A weight
  layer's optional bias is digital: an integer added to its partial sums (a memristor column
  computes a pure dot product). Weight layers are followed by ReLU unless ``relu=False``; the
  last dense layer's outputs are the logits.
* A layer reads the previous layer's output unless ``src`` names another layer. A residual
  ``Add`` adds the map of layer ``other`` to its input, which must come from a weight layer
  with ``relu=False``, then applies ReLU (docs/datapath.md section 4).

Fields at their defaults are left out of :meth:`Network.to_dict`, so the description of a
network without the newer fields (the mCNN) is what it always was, and old files still load.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class Conv:
    name: str
    in_ch: int
    out_ch: int
    k: int = 3
    stride: int = 1
    pad: int = 0
    bias: bool = False
    relu: bool = True
    src: str | None = None

    def __post_init__(self):
        _positive(self, "in_ch", "out_ch", "k", "stride")
        _natural(self, "pad")
        _flags(self, "bias", "relu")
        _src(self)


@dataclass(frozen=True)
class Pool:
    name: str
    k: int
    stride: int
    mode: str = "max"
    ceil: bool = True
    src: str | None = None

    def __post_init__(self):
        _positive(self, "k", "stride")
        if self.mode not in ("max", "avg"):
            raise ValueError(f"layer {self.name!r}: mode must be 'max' or 'avg', got "
                             f"{self.mode!r}")
        _flags(self, "ceil")
        _src(self)


@dataclass(frozen=True)
class Dense:
    name: str
    n_in: int
    n_out: int
    bias: bool = False
    relu: bool = True
    src: str | None = None

    def __post_init__(self):
        _positive(self, "n_in", "n_out")
        _flags(self, "bias", "relu")
        _src(self)


@dataclass(frozen=True)
class Add:
    """Residual add: ReLU(input + output of layer `other`), both maps of the same shape."""

    name: str
    other: str
    src: str | None = None

    def __post_init__(self):
        if not isinstance(self.other, str) or not self.other:
            raise ValueError(f"layer {self.name!r}: other must be a layer name, got "
                             f"{self.other!r}")
        _src(self)


Layer = Conv | Pool | Dense | Add


def _positive(layer, *fields):
    for f in fields:
        v = getattr(layer, f)
        if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
            raise ValueError(f"layer {layer.name!r}: {f} must be a positive integer, got {v!r}")


def _natural(layer, *fields):
    for f in fields:
        v = getattr(layer, f)
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise ValueError(f"layer {layer.name!r}: {f} must be an integer >= 0, got {v!r}")


def _flags(layer, *fields):
    for f in fields:
        if not isinstance(getattr(layer, f), bool):
            raise ValueError(f"layer {layer.name!r}: {f} must be true or false, got "
                             f"{getattr(layer, f)!r}")


def _src(layer):
    if layer.src is not None and (not isinstance(layer.src, str) or not layer.src):
        raise ValueError(f"layer {layer.name!r}: src must be a layer name, got {layer.src!r}")


def conv_out(size: int, k: int, stride: int, pad: int) -> int:
    """Output size of a convolution: floor((size + 2*pad - k) / stride) + 1."""
    return (size + 2 * pad - k) // stride + 1


def pool_out(size: int, k: int, stride: int, ceil: bool = True) -> int:
    """Output size of a pool. Ceil mode: every input row is covered by some window (the last
    may be clipped); floor mode: only whole windows."""
    if size <= k:
        return 1
    return (-(-(size - k) // stride) if ceil else (size - k) // stride) + 1


@dataclass(frozen=True)
class Network:
    """A feed-forward network: an input shape (C, H, W) and a tuple of layers, run in order."""

    name: str
    input_shape: tuple[int, int, int]
    layers: tuple[Layer, ...]

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"network name must be a non-empty string, got {self.name!r}")
        if not isinstance(self.layers, tuple) or not self.layers:
            raise ValueError(f"network {self.name!r}: layers must be a non-empty tuple")
        for layer in self.layers:
            if not isinstance(layer, (Conv, Pool, Dense, Add)):
                raise ValueError(f"network {self.name!r}: unknown layer {layer!r}")
            if not isinstance(layer.name, str) or not layer.name:
                raise ValueError(f"network {self.name!r}: a layer name must be a non-empty "
                                 f"string, got {layer.name!r}")
        names = [layer.name for layer in self.layers]
        if len(set(names)) != len(names):
            raise ValueError(f"network {self.name!r}: layer names must be unique, got {names}")
        self.shapes()  # raises on an inconsistent layer list

    def source(self, i: int) -> str | None:
        """Name of the layer whose output layer `i` reads (None: the network's input)."""
        layer = self.layers[i]
        if layer.src is not None:
            return layer.src
        return self.layers[i - 1].name if i else None

    def consumers(self, name: str) -> list[str]:
        """Layers that read the output of layer `name` (as input or as an Add's other)."""
        return [layer.name for i, layer in enumerate(self.layers)
                if self.source(i) == name or (isinstance(layer, Add) and layer.other == name)]

    def shapes(self) -> list[tuple[int, ...]]:
        """Output shape of every layer, (C, H, W) for maps and (N,) for dense outputs."""
        seen: dict[str, tuple[int, ...]] = {}
        out = []
        for i, layer in enumerate(self.layers):
            src = self.source(i)
            if src is not None and src not in seen:
                raise ValueError(f"layer {layer.name!r} reads {src!r}, which is not an earlier "
                                 f"layer")
            shape = tuple(self.input_shape) if src is None else seen[src]
            if isinstance(layer, Conv):
                if len(shape) != 3 or shape[0] != layer.in_ch:
                    raise ValueError(f"layer {layer.name!r} expects {layer.in_ch} input "
                                     f"channels, gets shape {shape}")
                c, h, w = shape
                if h + 2 * layer.pad < layer.k or w + 2 * layer.pad < layer.k:
                    raise ValueError(f"layer {layer.name!r}: {layer.k}x{layer.k} kernel does "
                                     f"not fit a {h}x{w} map padded by {layer.pad}")
                if layer.pad >= layer.k:
                    raise ValueError(f"layer {layer.name!r}: padding {layer.pad} must be less "
                                     f"than the kernel size {layer.k}")
                shape = (layer.out_ch, conv_out(h, layer.k, layer.stride, layer.pad),
                         conv_out(w, layer.k, layer.stride, layer.pad))
            elif isinstance(layer, Pool):
                if len(shape) != 3:
                    raise ValueError(f"layer {layer.name!r}: pooling needs a feature map, "
                                     f"gets shape {shape}")
                c, h, w = shape
                if not layer.ceil and (h < layer.k or w < layer.k):
                    raise ValueError(f"layer {layer.name!r}: a floor-mode {layer.k}x{layer.k} "
                                     f"pool does not fit a {h}x{w} map")
                shape = (c, pool_out(h, layer.k, layer.stride, layer.ceil),
                         pool_out(w, layer.k, layer.stride, layer.ceil))
            elif isinstance(layer, Dense):
                n = 1
                for d in shape:
                    n *= d
                if n != layer.n_in:
                    raise ValueError(f"layer {layer.name!r} expects {layer.n_in} inputs, "
                                     f"gets shape {shape} = {n}")
                shape = (layer.n_out,)
            elif isinstance(layer, Add):
                if layer.other not in seen:
                    raise ValueError(f"layer {layer.name!r} adds {layer.other!r}, which is not "
                                     f"an earlier layer")
                if len(shape) != 3:
                    raise ValueError(f"layer {layer.name!r}: an add needs feature maps, gets "
                                     f"shape {shape}")
                if seen[layer.other] != shape:
                    raise ValueError(f"layer {layer.name!r} adds maps of shapes {shape} and "
                                     f"{seen[layer.other]}")
                if not self.is_signed(src):
                    raise ValueError(f"layer {layer.name!r}: the input of an add must be a "
                                     f"conv or dense layer with relu=false")
            else:
                raise TypeError(f"unknown layer type {type(layer).__name__}")
            seen[layer.name] = shape
            out.append(shape)
        last = self.layers[-1]
        if not isinstance(last, Dense):
            raise ValueError(f"network {self.name!r}: the last layer must be dense (the logits)")
        for layer in self.layers:
            users = self.consumers(layer.name)
            if isinstance(layer, (Conv, Dense)) and not layer.relu and layer is not last:
                if len(users) != 1 or not isinstance(self.layers[names_index(self, users[0])],
                                                     Add):
                    raise ValueError(f"layer {layer.name!r} has relu=false: its only reader "
                                     f"must be an add")
            if layer is not last and not users:
                raise ValueError(f"layer {layer.name!r}: its output is never read")
            if layer is last and users:
                raise ValueError(f"layer {layer.name!r}: the logits cannot be read by "
                                 f"another layer")
        return out

    def weight_layers(self) -> list[Conv | Dense]:
        return [layer for layer in self.layers if isinstance(layer, (Conv, Dense))]

    def is_signed(self, name: str | None) -> bool:
        """Whether layer `name` outputs a signed map: a weight layer without ReLU (not the
        logits), which only a residual add reads."""
        if name is None:
            return False
        layer = self.layers[names_index(self, name)]
        return isinstance(layer, (Conv, Dense)) and not layer.relu \
            and layer is not self.layers[-1]

    def act_layers(self) -> list[str]:
        """Layers whose output is an unsigned activation map with its own scale: every weight
        layer but the last with relu, and every add."""
        last = self.layers[-1]
        return [layer.name for layer in self.layers
                if (isinstance(layer, (Conv, Dense)) and layer.relu and layer is not last)
                or isinstance(layer, Add)]

    def is_sequential(self) -> bool:
        """No src, no add: the shape of the networks the RTL's schedule runs today."""
        return all(layer.src is None and not isinstance(layer, Add)
                   and not (isinstance(layer, (Conv, Dense)) and layer.bias)
                   and not (isinstance(layer, Conv) and (layer.stride != 1 or layer.pad))
                   and not (isinstance(layer, Pool) and (layer.mode != "max" or not layer.ceil
                                                         or layer.k != layer.stride))
                   for layer in self.layers)

    def input_shape_of(self, name: str) -> tuple[int, ...]:
        shapes = self.shapes()
        i = names_index(self, name)
        src = self.source(i)
        return tuple(self.input_shape) if src is None else shapes[names_index(self, src)]

    def to_dict(self) -> dict:
        """The description as plain JSON-able data (chip-state manifests store it); fields at
        their defaults are left out."""
        layers = []
        for layer in self.layers:
            d = {"type": type(layer).__name__.lower()}
            for f, spec in layer.__dataclass_fields__.items():
                v = getattr(layer, f)
                if f in _LEGACY[type(layer)] or spec.default is dataclasses.MISSING \
                        or v != spec.default:
                    d[f] = v
            layers.append(d)
        return {"name": self.name, "input_shape": list(self.input_shape), "layers": layers}

    @classmethod
    def from_dict(cls, d) -> Network:
        """Inverse of :meth:`to_dict`; raises ValueError naming the first bad field."""
        if not isinstance(d, dict):
            raise ValueError(f"a network must be an object, got {type(d).__name__}")
        unknown = sorted(set(d) - {"name", "input_shape", "layers"})
        if unknown:
            raise ValueError(f"network: unknown fields {unknown}")
        name, shape, layers = d.get("name"), d.get("input_shape"), d.get("layers")
        if not isinstance(name, str) or not name:
            raise ValueError("network.name must be a non-empty string")
        if not (isinstance(shape, list) and len(shape) == 3
                and all(isinstance(v, int) and not isinstance(v, bool) and v > 0
                        for v in shape)):
            raise ValueError(f"network.input_shape must be three positive integers (C, H, W), "
                             f"got {shape!r}")
        if not isinstance(layers, list) or not layers:
            raise ValueError("network.layers must be a non-empty list")
        out = []
        for i, ld in enumerate(layers):
            if not isinstance(ld, dict):
                raise ValueError(f"network.layers[{i}] must be an object")
            kind = LAYER_TYPES.get(ld.get("type"))
            if kind is None:
                raise ValueError(f"network.layers[{i}].type must be one of "
                                 f"{sorted(LAYER_TYPES)}, got {ld.get('type')!r}")
            fields = {k: v for k, v in ld.items() if k != "type"}
            specs = kind.__dataclass_fields__
            need = _LEGACY[kind] | {f for f, sp in specs.items()
                                    if sp.default is dataclasses.MISSING}
            if not need <= set(fields) or not set(fields) <= set(specs):
                raise ValueError(f"network.layers[{i}] ({ld.get('type')}) must have exactly "
                                 f"the fields {sorted(need)}, and may have "
                                 f"{sorted(set(specs) - need)}, got {sorted(fields)}")
            for f, v in fields.items():
                if isinstance(v, bool) != isinstance(specs[f].default, bool):
                    must = "must" if isinstance(specs[f].default, bool) else "must not"
                    raise ValueError(f"network.layers[{i}].{f} {must} be a boolean, got {v!r}")
            try:
                out.append(kind(**fields))
            except TypeError as e:
                raise ValueError(f"network.layers[{i}]: {e}") from None
        return cls(name, tuple(shape), tuple(out))

    def output_shape_of(self, name: str) -> tuple[int, ...]:
        return self.shapes()[names_index(self, name)]


def names_index(net: Network, name: str) -> int:
    for i, layer in enumerate(net.layers):
        if layer.name == name:
            return i
    raise KeyError(name)


# The fields of the first version of the format, always written (so the mCNN's description,
# which chip-state manifests store, stays the same); the newer ones only when not default.
_LEGACY = {Conv: {"name", "in_ch", "out_ch", "k"}, Pool: {"name", "k", "stride"},
           Dense: {"name", "n_in", "n_out"}, Add: {"name", "other"}}

LAYER_TYPES = {"conv": Conv, "pool": Pool, "dense": Dense, "add": Add}


def weight_shape(layer: Conv | Dense) -> tuple[int, ...]:
    """Conv weights are (out, in, k, k); dense weights are (out, in)."""
    if isinstance(layer, Conv):
        return (layer.out_ch, layer.in_ch, layer.k, layer.k)
    if not isinstance(layer, Dense):
        raise TypeError(f"layer {layer.name!r} has no weights")
    return (layer.n_out, layer.n_in)


MCNN = Network(
    name="mcnn",
    input_shape=(1, 28, 28),
    layers=(
        Conv("C1", in_ch=1, out_ch=8, k=3),
        Pool("S2", k=3, stride=3),
        Conv("C3", in_ch=8, out_ch=12, k=3),
        Pool("S4", k=2, stride=2),
        Dense("FC", n_in=192, n_out=10),
    ),
)
