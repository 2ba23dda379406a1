"""The network as a list of layers, and the shape arithmetic every other module shares.

Conventions, fixed here once for the float model, the integer model, the mapping and the RTL:

* Feature maps are (channels, height, width), "CHW"; a batch adds a leading axis.
* A conv patch vector for input channel ``c`` is its 3x3 window in row-major (dy, dx) order;
  a multi-channel patch is the concatenation over channels (channel-major).
* The flatten before a dense layer is CHW order, so a 16-wide input chunk of the FC layer is
  one 4x4 channel of S4.
* Pooling is max-pooling in ceil mode: the last window of a row or column may be clipped.
* Conv layers have no bias (a memristor column computes a pure dot product) and are followed
  by ReLU; the last dense layer's outputs are the logits.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Conv:
    name: str
    in_ch: int
    out_ch: int
    k: int = 3

    def __post_init__(self):
        _positive(self, "in_ch", "out_ch", "k")


@dataclass(frozen=True)
class Pool:
    name: str
    k: int
    stride: int

    def __post_init__(self):
        _positive(self, "k", "stride")


@dataclass(frozen=True)
class Dense:
    name: str
    n_in: int
    n_out: int

    def __post_init__(self):
        _positive(self, "n_in", "n_out")


Layer = Conv | Pool | Dense


def _positive(layer, *fields):
    for f in fields:
        v = getattr(layer, f)
        if not isinstance(v, int) or v <= 0:
            raise ValueError(f"layer {layer.name!r}: {f} must be a positive integer, got {v!r}")


def pool_out(size: int, k: int, stride: int) -> int:
    """Output size of a ceil-mode pool: every input row is covered by some window."""
    return -(-(size - k) // stride) + 1 if size > k else 1


@dataclass(frozen=True)
class Network:
    """A feed-forward network: an input shape (C, H, W) and a tuple of layers."""

    name: str
    input_shape: tuple[int, int, int]
    layers: tuple[Layer, ...]

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"network name must be a non-empty string, got {self.name!r}")
        if not isinstance(self.layers, tuple) or not self.layers:
            raise ValueError(f"network {self.name!r}: layers must be a non-empty tuple")
        for layer in self.layers:
            if not isinstance(layer, (Conv, Pool, Dense)):
                raise ValueError(f"network {self.name!r}: unknown layer {layer!r}")
            if not isinstance(layer.name, str) or not layer.name:
                raise ValueError(f"network {self.name!r}: a layer name must be a non-empty "
                                 f"string, got {layer.name!r}")
        names = [layer.name for layer in self.layers]
        if len(set(names)) != len(names):
            raise ValueError(f"network {self.name!r}: layer names must be unique, got {names}")
        self.shapes()  # raises on an inconsistent layer list

    def shapes(self) -> list[tuple[int, ...]]:
        """Output shape of every layer, (C, H, W) for maps and (N,) for dense outputs."""
        shape: tuple[int, ...] = tuple(self.input_shape)
        out = []
        for layer in self.layers:
            if isinstance(layer, Conv):
                if len(shape) != 3 or shape[0] != layer.in_ch:
                    raise ValueError(f"layer {layer.name!r} expects {layer.in_ch} input "
                                     f"channels, gets shape {shape}")
                c, h, w = shape
                if h < layer.k or w < layer.k:
                    raise ValueError(f"layer {layer.name!r}: {layer.k}x{layer.k} kernel does "
                                     f"not fit a {h}x{w} map")
                shape = (layer.out_ch, h - layer.k + 1, w - layer.k + 1)
            elif isinstance(layer, Pool):
                if len(shape) != 3:
                    raise ValueError(f"layer {layer.name!r}: pooling needs a feature map, "
                                     f"gets shape {shape}")
                c, h, w = shape
                shape = (c, pool_out(h, layer.k, layer.stride), pool_out(w, layer.k, layer.stride))
            elif isinstance(layer, Dense):
                n = 1
                for d in shape:
                    n *= d
                if n != layer.n_in:
                    raise ValueError(f"layer {layer.name!r} expects {layer.n_in} inputs, "
                                     f"gets shape {shape} = {n}")
                shape = (layer.n_out,)
            else:
                raise TypeError(f"unknown layer type {type(layer).__name__}")
            out.append(shape)
        if not isinstance(self.layers[-1], Dense):
            raise ValueError(f"network {self.name!r}: the last layer must be dense (the logits)")
        return out

    def weight_layers(self) -> list[Conv | Dense]:
        return [layer for layer in self.layers if isinstance(layer, (Conv, Dense))]

    def input_shape_of(self, name: str) -> tuple[int, ...]:
        shape: tuple[int, ...] = tuple(self.input_shape)
        for layer, out in zip(self.layers, self.shapes(), strict=True):
            if layer.name == name:
                return shape
            shape = out
        raise KeyError(name)

    def to_dict(self) -> dict:
        """The description as plain JSON-able data (chip-state manifests store it)."""
        return {"name": self.name, "input_shape": list(self.input_shape),
                "layers": [{"type": type(layer).__name__.lower(), **layer.__dict__}
                           for layer in self.layers]}

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
            want = set(kind.__dataclass_fields__)
            if set(fields) != want:
                raise ValueError(f"network.layers[{i}] ({ld.get('type')}) must have exactly "
                                 f"the fields {sorted(want)}, got {sorted(fields)}")
            if any(isinstance(v, bool) for v in fields.values()):
                raise ValueError(f"network.layers[{i}]: a field is a boolean")
            out.append(kind(**fields))
        return cls(name, tuple(shape), tuple(out))

    def output_shape_of(self, name: str) -> tuple[int, ...]:
        for layer, out in zip(self.layers, self.shapes(), strict=True):
            if layer.name == name:
                return out
        raise KeyError(name)


LAYER_TYPES = {"conv": Conv, "pool": Pool, "dense": Dense}


def weight_shape(layer: Conv | Dense) -> tuple[int, ...]:
    """Conv weights are (out, in, k, k); dense weights are (out, in)."""
    if isinstance(layer, Conv):
        return (layer.out_ch, layer.in_ch, layer.k, layer.k)
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
