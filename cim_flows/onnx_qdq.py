"""QDQ-format ONNX (QuantizeLinear -> DequantizeLinear around float operators, as PyTorch's and
ONNX Runtime's static quantization export it): the graph without its Q/DQ nodes, and the
scales they carried, turned into the chip's scales (docs/datapath.md, section 5a).

:func:`strip` folds every DequantizeLinear of a constant (an integer weight or bias, or a
QuantizeLinear of a float constant) into a float initializer, computed as ONNX computes it,
and removes every activation QuantizeLinear -> DequantizeLinear pair (its readers read the
float map the Q read), recording the pair's scale and zero point on that map. The importer
then reads a float graph. :func:`resolve` maps the recorded scales onto the imported network's
layers: activation scales exactly, weight scales as the chip's 15 levels allow, and what the
chip does not follow listed with the reason. Integer operators (QLinearConv, ConvInteger, ...)
and per-channel activation scales are refused with the node's name.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cim_spec.network import Conv, Dense, Network, Pool

QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})
INTEGER_OPS = frozenset({"QLinearConv", "ConvInteger", "MatMulInteger", "QLinearMatMul",
                         "DynamicQuantizeLinear", "QGemm", "QLinearAdd", "QLinearMul",
                         "QLinearAveragePool", "QLinearGlobalAveragePool", "QLinearConcat",
                         "QLinearLeakyRelu", "QLinearSigmoid", "DynamicQuantizeMatMul"})
# Producers whose map a Q/DQ pair without negative codes turns into a ReLU map.
IMPLIED_RELU = frozenset({"Conv", "Gemm", "MatMul", "Add", "BatchNormalization"})
# The chip's weight levels for the default configuration (cell_states = 8): -7..7.
W_MAX = 7
# What each integer type covers; the chip's activations are 8-bit (act_bits = 8).
ACT_TYPES = {np.dtype(np.uint8): (0, 255), np.dtype(np.int8): (-128, 127)}
PIXEL_STEP = 1 / 255


@dataclass(frozen=True)
class ActQuant:
    node: str            # the QuantizeLinear's name
    scale: float         # the float32 scale, as a float
    zero_point: int
    qmin: int
    qmax: int

    @property
    def top(self) -> int:
        """The largest code above the zero point: the model's ReLU map saturates there."""
        return self.qmax - self.zero_point

    def key(self):
        return (self.scale, self.zero_point, self.qmin, self.qmax)


@dataclass(frozen=True)
class WeightQuant:
    node: str            # the DequantizeLinear's name
    codes: np.ndarray    # the integer codes (zero point 0)
    scale: np.ndarray    # float32, 0-d (per tensor) or 1-D along `axis`
    axis: int | None


@dataclass
class Qdq:
    acts: dict[str, list[ActQuant]]      # float map (the Q's input) -> its quantizations
    weights: dict[str, WeightQuant]      # folded float constant -> where it came from


def _node_label(g, node) -> str:
    return node.name or f"{node.op_type} #{list(g.node).index(node)}"


def _qparams(node, consts, fail, onnx_helper):
    attrs = {a.name: onnx_helper.get_attribute_value(a) for a in node.attribute}
    for k, v in attrs.items():
        if k == "block_size" and v:
            raise fail(node, "blocked quantization (block_size) is not supported")
        if k == "saturate" and v != 1:
            raise fail(node, "saturate=0 is not supported")
        if k not in ("axis", "saturate", "block_size"):
            raise fail(node, f"attribute {k!r} is not supported")
    if len(node.input) < 2 or not node.input[1]:
        raise fail(node, "has no scale")
    for i in (1, 2):
        if len(node.input) > i and node.input[i] and node.input[i] not in consts:
            raise fail(node, f"input {i} (the {('scale', 'zero point')[i - 1]}) must be an "
                             f"initializer or a Constant")
    scale = np.asarray(consts[node.input[1]])
    if scale.dtype != np.float32:
        raise fail(node, f"the scale must be float32, got {scale.dtype}")
    if not (np.all(np.isfinite(scale)) and np.all(scale > 0)):
        raise fail(node, "the scale must be positive and finite")
    if len(node.input) > 2 and node.input[2]:
        zp = np.asarray(consts[node.input[2]])
    else:   # ONNX's default: a uint8 zero point 0
        zp = np.zeros(scale.shape, np.uint8)
    if zp.shape != scale.shape and zp.size != 1:
        raise fail(node, f"zero point shape {zp.shape} differs from the scale's {scale.shape}")
    return scale, zp, attrs.get("axis", 1)


def _along(a: np.ndarray, axis: int, ndim: int) -> np.ndarray:
    """A 1-D per-axis parameter shaped to broadcast along `axis` of an `ndim` array."""
    shape = [1] * ndim
    shape[axis] = -1
    return a.reshape(shape)


def strip(model, where: str):
    """`model` without its Q/DQ nodes (a copy) and the :class:`Qdq` they carried."""
    import onnx
    from onnx import numpy_helper
    g = model.graph

    def fail(node, msg):
        from cim_flows.onnx_io import OnnxImportError
        return OnnxImportError(f"{where}: node {_node_label(g, node)!r} ({node.op_type}): "
                               f"{msg}")

    consts = {t.name: numpy_helper.to_array(t) for t in g.initializer
              if t.data_location != onnx.TensorProto.EXTERNAL}
    for node in g.node:
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    consts[node.output[0]] = numpy_helper.to_array(a.t)
    producer = {o: node for node in g.node for o in node.output}
    readers: dict[str, list] = {}
    for node in g.node:
        for t in node.input:
            readers.setdefault(t, []).append(node)
    rename: dict[str, str] = {}
    q_float: dict[str, str] = {}       # an activation Q's output -> the float map it stands for
    outputs = {o.name for o in g.output}
    folded: dict[str, np.ndarray] = {}
    qdq = Qdq({}, {})
    keep = []
    for node in g.node:
        op = node.op_type
        if op in INTEGER_OPS or node.domain not in ("", "ai.onnx") and op.startswith("Q"):
            raise fail(node, "integer operators are not read: export the QDQ format "
                             "(QuantizeLinear/DequantizeLinear around float Conv, Gemm, ...)")
        if op not in QDQ_OPS:
            keep.append(node)
            continue
        scale, zp, axis = _qparams(node, consts, fail, onnx.helper)
        x = rename.get(node.input[0], node.input[0])
        if op == "QuantizeLinear":
            if x in consts:        # a float weight quantized in the graph: fold it
                w = np.asarray(consts[x], np.float32)
                info = np.iinfo(zp.dtype)
                s = scale if scale.ndim == 0 else _along(scale, axis, w.ndim)
                z = zp.astype(np.int64) if zp.ndim == 0 else _along(zp.astype(np.int64), axis,
                                                                    w.ndim)
                q = np.clip(np.rint(w / s).astype(np.int64) + z, info.min, info.max)
                consts[node.output[0]] = q.astype(zp.dtype)
                continue
            if scale.size != 1:
                raise fail(node, "per-channel activation scales are not supported (the chip "
                                 "has one scale per map)")
            if zp.dtype not in ACT_TYPES:
                raise fail(node, f"activations of type {zp.dtype} are not supported (uint8 "
                                 f"and int8 are: the chip's activations are 8-bit)")
            qmin, qmax = ACT_TYPES[zp.dtype]
            z = int(zp.reshape(-1)[0])
            if qmax - z < 1:
                raise fail(node, f"zero point {z} leaves no positive code")
            for r in readers.get(node.output[0], []):
                if r.op_type != "DequantizeLinear":
                    raise fail(r, f"reads the integer map {node.output[0]!r}: only a "
                                  f"DequantizeLinear may read a QuantizeLinear's output")
            dqs = readers.get(node.output[0], [])
            after = [r for d in dqs for r in readers.get(d.output[0], [])]
            if z == qmin and producer.get(x) is not None and \
                    producer[x].op_type in IMPLIED_RELU and \
                    not any(r.op_type == "Relu" for r in after) and \
                    not any(d.output[0] in outputs for d in dqs):
                # No code below the zero point: the pair clips at 0, a ReLU (ONNX Runtime's
                # quantizer removes the Relu it implies). Made explicit, as the chip needs it.
                relu = onnx.helper.make_node("Relu", [x], [f"{x}.qdq_relu"],
                                             name=f"{_node_label(g, node)}_relu")
                keep.append(relu)
                x = relu.output[0]
            q_float[node.output[0]] = x
            qdq.acts.setdefault(x, []).append(
                ActQuant(node.name or _node_label(g, node), float(scale.reshape(-1)[0]), z,
                         qmin, qmax))
            continue
        # DequantizeLinear
        if x in consts:            # an integer weight or bias: dequantize as ONNX does
            codes = np.asarray(consts[x])
            if not np.issubdtype(codes.dtype, np.integer):
                raise fail(node, f"dequantizes a {codes.dtype} constant (an integer one is "
                                 f"expected)")
            if np.any(zp != 0):
                raise fail(node, f"weight zero point {zp.reshape(-1).tolist()[:4]} is not "
                                 f"supported (the chip's weights are symmetric: zero point 0)")
            if scale.ndim == 1 and scale.size > 1:
                ax = axis % codes.ndim
                if codes.shape[ax] != scale.size:
                    raise fail(node, f"{scale.size} scales along axis {axis} of a weight of "
                                     f"shape {list(codes.shape)}")
                s = _along(scale, ax, codes.ndim)
                wq = WeightQuant(_node_label(g, node), codes.astype(np.int64), scale, ax)
            else:
                s = scale.reshape(())
                wq = WeightQuant(_node_label(g, node), codes.astype(np.int64), s, None)
            deq = codes.astype(np.float32) * s          # (q - 0) * scale, in float32
            consts[node.output[0]] = deq
            folded[node.output[0]] = deq.astype(np.float32)
            qdq.weights[node.output[0]] = wq
            continue
        src = producer.get(node.input[0])
        if src is None or src.op_type != "QuantizeLinear":
            raise fail(node, f"reads {node.input[0]!r}, which is neither an integer constant "
                             f"nor a QuantizeLinear's output")
        qs, qz, _ = _qparams(src, consts, fail, onnx.helper)
        if not (np.array_equal(qs, scale) and np.array_equal(qz.astype(np.int64),
                                                             zp.astype(np.int64))):
            raise fail(node, f"its scale or zero point differs from its QuantizeLinear "
                             f"{_node_label(g, src)!r}'s")
        rename[node.output[0]] = q_float[src.output[0]]
    out = onnx.ModelProto()
    out.CopyFrom(model)
    del out.graph.node[:]
    for node in keep:
        n = onnx.NodeProto()
        n.CopyFrom(node)
        for i, t in enumerate(n.input):
            n.input[i] = rename.get(t, t)
        out.graph.node.append(n)
    for o in out.graph.output:
        o.name = rename.get(o.name, o.name)
    read = {t for n in keep for t in n.input}
    for name, arr in folded.items():
        if name in read:
            out.graph.initializer.append(numpy_helper.from_array(arr, name))
    return out, qdq


def _weight_rule(w: np.ndarray, wq: WeightQuant | None, same: bool):
    """The chip's weight scale of one layer and how it was derived (docs/datapath.md 5a):
    the file's scale where its codes are the chip's levels, else the least-squares rule of a
    float import (the chip must round either way; this rounds best)."""
    from golden.float_model import weight_scale
    mse = "least squared error in [0.5, 1] * max|W| / 7 (the chip rounds)"
    if wq is None:
        return weight_scale(w, W_MAX, rule="mse"), {
            "rule": f"float weight (no DequantizeLinear): {mse}", "exact": False}
    rec = {"node": wq.node, "onnx_scale": wq.scale.tolist(), "axis": wq.axis,
           "max_code": int(np.abs(wq.codes).max(initial=0))}
    if wq.scale.ndim == 0 and same and rec["max_code"] <= W_MAX:
        rec.update(rule="per tensor, codes within +-7: s_w = scale, levels = codes",
                   exact=True)
        return float(wq.scale), rec
    why = ("codes beyond +-7" if wq.scale.ndim == 0 and same else
           "per channel" if same else "BatchNormalization folded into the weight")
    rec.update(rule=f"{why}: {mse}", exact=False)
    return weight_scale(w, W_MAX, rule="mse"), rec


def resolve(qdq: Qdq, tensor: dict, net: Network, weights: dict, weight_src: dict,
            input_name: str, where: str) -> dict:
    """The chip's scales from the file's Q/DQ nodes: ``{"weight_scales", "act_scales",
    "weights", "activations", "input", "not_followed"}`` (JSON-able; the model file's
    ``meta.calibration`` records it)."""
    from cim_flows.onnx_io import OnnxImportError
    by_layer: dict = {}
    for t, quants in qdq.acts.items():
        if t == input_name:
            by_layer.setdefault(None, []).extend((t, q) for q in quants)
        elif t in tensor:
            by_layer.setdefault(tensor[t], []).extend((t, q) for q in quants)
        else:
            raise OnnxImportError(f"{where}: node {quants[0].node!r} (QuantizeLinear) "
                                  f"quantizes {t!r}, which is not a map the chip computes")
    layers = {la.name: la for la in net.layers}
    acts, act_rec, not_followed = {}, {}, []
    act_names = net.act_layers()
    last = net.layers[-1].name

    def one(name, items, what):
        keys = {q.key() for _, q in items}
        if len(keys) > 1:
            nodes = sorted({q.node for _, q in items})
            raise OnnxImportError(f"{where}: nodes {nodes} (QuantizeLinear) quantize {what} "
                                  f"with different scales or zero points (the chip has one)")
        return items[0][1]

    for name in act_names:
        if name not in by_layer:
            raise OnnxImportError(f"{where}: layer {name!r}'s output has no QuantizeLinear/"
                                  f"DequantizeLinear (the chip needs every activation map's "
                                  f"scale; --recalibrate --data calibrates them all)")
        q = one(name, by_layer[name], f"layer {name!r}'s output")
        acts[name] = q.scale
        act_rec[name] = {"node": q.node, "scale": q.scale, "zero_point": q.zero_point,
                         "range": [q.qmin, q.qmax], "top": q.top}
    inp = None
    if None in by_layer:
        q = one(None, by_layer[None], "the input")
        pix = np.arange(256)
        x = pix.astype(np.float32) / np.float32(255)
        code = np.clip(np.rint(x / np.float32(q.scale)) + q.zero_point, q.qmin, q.qmax)
        inp = {"node": q.node, "scale": q.scale, "zero_point": q.zero_point,
               "exact": bool(np.array_equal(code - q.zero_point, pix))}
        if not inp["exact"]:
            not_followed.append({"node": q.node, "map": "input", "why": "the chip takes the "
                                 "pixel p as p / 255 (input_step), not this quantization"})

    def source_scale(name):
        while name is not None and isinstance(layers[name], Pool):
            name = net.source([la.name for la in net.layers].index(name))
        return None if name is None else acts.get(name), name

    for name, items in by_layer.items():
        if name is None or name in act_names:
            continue
        q = one(name, items, f"layer {name!r}'s output")
        layer = layers[name]
        if isinstance(layer, Pool):
            s, src = source_scale(name)
            zp = act_rec[src]["zero_point"] if src in act_rec else 0
            if s is None and inp is not None:
                s, zp = inp["scale"], inp["zero_point"]
            if s == q.scale and zp == q.zero_point:
                continue       # the pool keeps its input's scale: followed exactly
            why = "the chip's pool keeps its input's scale (no second rounding)"
        elif name == last:
            why = "the chip's logits are its integer partial sums (no output quantization)"
        elif isinstance(layer, (Conv, Dense)) and not layer.relu:
            why = "the chip requantizes a residual add's operand to the add's scale directly"
        else:
            why = "not an activation map of the chip"
        not_followed.append({"node": q.node, "map": name, "scale": q.scale,
                             "zero_point": q.zero_point, "why": why})
    w_scales, w_rec = {}, {}
    for layer in net.weight_layers():
        src = weight_src.get(layer.name)
        wq = qdq.weights.get(src)
        same = wq is not None and _dequantized_equal(wq, weights[layer.name])
        s, rec = _weight_rule(weights[layer.name], wq, same)
        w_rec[layer.name], w_scales[layer.name] = rec, s
    return {"from": "the ONNX file's QuantizeLinear/DequantizeLinear scales",
            "weight_scales": w_scales, "act_scales": acts, "weights": w_rec,
            "activations": act_rec, "input": inp, "not_followed": not_followed}


def _dequantized_equal(wq: WeightQuant, w: np.ndarray) -> bool:
    """Whether the imported weight is still the DequantizeLinear's output (no BN folded);
    a MatMul's weight is imported transposed."""
    s = wq.scale if wq.axis is None else _along(wq.scale, wq.axis, wq.codes.ndim)
    deq = wq.codes.astype(np.float32) * s
    w = np.asarray(w)
    return (deq.shape == w.shape and np.array_equal(deq, w)) or \
        (deq.ndim == 2 and deq.T.shape == w.shape and np.array_equal(deq.T, w))

