"""ONNX in and out: a user's CNN as a network description and float weights, and the project's
networks as ONNX files.

Reading uses the `onnx` package's protobuf parser only (no operator is ever executed, nothing
is unpickled or evaluated); weights must be initializers inside the file. The supported
operators are those the chip computes (docs/datapath.md): Conv (any square kernel, equal
strides, symmetric zero padding, bias), BatchNormalization (folded into the conv before it),
Relu, MaxPool and AveragePool (no padding), GlobalAveragePool, Add (a residual add followed by
Relu; or a constant bias after a MatMul), Gemm and MatMul, Flatten and Reshape (to the CHW
flattening), and Identity, Dropout and a final Softmax, which change nothing the chip's argmax
sees. Anything else is refused with the node's name and what is missing (ImportError_). A
quantized (QDQ-format) file is first turned into its float graph and its scales by
:mod:`cim_flows.onnx_qdq`.

A weight layer is followed by ReLU, except the logits and a layer whose only reader is a
residual add; the importer fuses Conv + BatchNormalization + Relu into one layer and Add +
Relu into one add layer.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from cim_flows import onnx_qdq
from cim_spec.network import Add, Conv, Dense, Network, Pool, conv_out, pool_out

OPSET = 17
META_WEIGHT_SCALES = "cim.weight_scales"
META_ACT_SCALES = "cim.act_scales"


class OnnxImportError(ValueError):
    """An ONNX file the chip cannot compute: one line naming the file, node and reason."""


def _onnx():
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError as e:   # a dependency of the package; only a broken install lacks it
        raise OnnxImportError(f"the onnx package is not installed ({e})") from None
    return onnx, numpy_helper


@dataclass
class _Layer:
    layer: object                    # a cim_spec.network layer (replaced as fusion goes on)
    shape: tuple                     # its output shape
    weight: np.ndarray | None = None
    bias: np.ndarray | None = None
    needs_relu: bool = False         # an add until its Relu is seen


@dataclass
class Imported:
    network: Network
    weights: dict[str, np.ndarray]
    biases: dict[str, np.ndarray]
    scales: tuple[dict, dict] | None      # (weight, act) scales from the file's metadata
    sha256: str
    ignored: list[str] = field(default_factory=list)
    qdq: dict | None = None       # the scales of a QDQ-format file (cim_flows.onnx_qdq.resolve)


def _name(raw: str, used: set, fallback: str) -> str:
    n = re.sub(r"[^A-Za-z0-9_]", "_", raw or fallback).strip("_") or fallback
    base, i = n, 1
    while n in used or n == "input":
        i += 1
        n = f"{base}_{i}"
    used.add(n)
    return n


def read_onnx(path: str | Path) -> Imported:
    """Parse `path` into a network, its float weights and biases (see the module's doc)."""
    onnx, numpy_helper = _onnx()
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise OnnxImportError(f"{path}: cannot read: {e.strerror or e}") from None
    try:
        model = onnx.load_model_from_string(raw)
    except Exception as e:  # the protobuf parser's errors have no common base
        raise OnnxImportError(f"{path}: not an ONNX model ({type(e).__name__})") from None
    where = str(path)
    qdq = None
    if any(n.op_type in onnx_qdq.QDQ_OPS | onnx_qdq.INTEGER_OPS for n in model.graph.node):
        model, qdq = onnx_qdq.strip(model, where)    # a quantized model: its float graph
    g = model.graph

    def fail(node, msg):
        label = node.name or f"{node.op_type} #{list(g.node).index(node)}"
        return OnnxImportError(f"{where}: node {label!r} ({node.op_type}): {msg}")

    consts: dict[str, np.ndarray] = {}
    for t in g.initializer:
        if t.data_location == onnx.TensorProto.EXTERNAL:
            raise OnnxImportError(f"{where}: initializer {t.name!r} is stored outside the file "
                                  f"(external data is not read)")
        consts[t.name] = numpy_helper.to_array(t)
    inputs = [i for i in g.input if i.name not in consts]
    if len(inputs) != 1:
        raise OnnxImportError(f"{where}: the graph must have one input (the image), has "
                              f"{[i.name for i in inputs]}")
    dims = [d.dim_value if d.HasField("dim_value") else None
            for d in inputs[0].type.tensor_type.shape.dim]
    if len(dims) != 4 or not all(d and d > 0 for d in dims[1:]):
        raise OnnxImportError(f"{where}: the input {inputs[0].name!r} must be (N, C, H, W) with "
                              f"fixed C, H, W, got {dims}")
    in_shape = tuple(int(d) for d in dims[1:])
    readers: dict[str, int] = {}
    for node in g.node:
        for t in node.input:
            readers[t] = readers.get(t, 0) + 1
    for o in g.output:
        readers[o.name] = readers.get(o.name, 0) + 1

    layers: list[_Layer] = []
    by_name: dict[str, _Layer] = {}
    tensor: dict[str, str | None] = {inputs[0].name: None}   # tensor -> layer (None: input)
    shape_of = {None: in_shape}
    used: set = set()
    ignored: list[str] = []
    weight_src: dict[str, str] = {}                   # layer -> its weight tensor

    def attrs(node):
        return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}

    def only(node, allowed: dict):
        a = attrs(node)
        for k, v in a.items():
            if k not in allowed:
                raise fail(node, f"attribute {k!r} is not supported")
            ok = allowed[k]
            if ok is not None and not ok(v):
                raise fail(node, f"attribute {k}={v!r} is not supported")
        return a

    def src_of(node, i=0):
        t = node.input[i]
        if t not in tensor:
            raise fail(node, f"input {t!r} is not a map the chip computes (a constant or an "
                             f"unsupported producer)")
        return tensor[t]

    def add_layer(node, layer, shape, out, **kw):
        src = tensor[node.input[0]] if node.op_type != "Add" else kw.pop("src")
        prev = layers[-1].layer.name if layers else None
        if src is None and layers:
            raise fail(node, "only the first layer can read the network's input")
        if src is not None and src != prev:
            layer = replace(layer, src=src)
        rec = _Layer(layer, shape, **kw)
        layers.append(rec)
        by_name[layer.name] = rec
        tensor[out] = layer.name
        shape_of[layer.name] = shape
        return rec

    def single_reader(node, what):
        if readers.get(node.input[0], 0) != 1:
            raise fail(node, f"{what} needs to be the only reader of {node.input[0]!r}")

    for node in g.node:
        op = node.op_type
        if node.domain not in ("", "ai.onnx"):
            raise fail(node, f"operator domain {node.domain!r} is not supported")
        if op == "Conv":
            a = only(node, {"kernel_shape": None, "strides": None, "pads": None,
                            "dilations": lambda v: all(d == 1 for d in v),
                            "group": lambda v: v == 1,
                            "auto_pad": lambda v: v in (b"NOTSET", b"VALID")})
            src = src_of(node)
            if node.input[1] not in consts:
                raise fail(node, "the weight must be an initializer")
            w = consts[node.input[1]].astype(np.float32)
            if w.ndim != 4 or w.shape[2] != w.shape[3]:
                raise fail(node, f"the kernel must be square 2-D, got weight shape {w.shape}")
            st = list(a.get("strides", [1, 1]))
            pads = list(a.get("pads", [0, 0, 0, 0]))
            if len(set(st)) != 1:
                raise fail(node, f"strides must be equal in both directions, got {st}")
            if len(set(pads)) != 1:
                raise fail(node, f"padding must be the same on every side, got {pads}")
            c, h, wd = _map(node, shape_of[src], fail)
            k, s, p = int(w.shape[2]), int(st[0]), int(pads[0])
            if w.shape[1] != c:
                raise fail(node, f"weight has {w.shape[1]} input channels, the map has {c}")
            if p >= k:
                raise fail(node, f"padding {p} must be less than the kernel size {k}")
            b = consts.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
            if len(node.input) > 2 and node.input[2] and b is None:
                raise fail(node, "the bias must be an initializer")
            name = _name(node.name, used, f"conv{len(layers)}")
            weight_src[name] = node.input[1]
            layer = Conv(name, c, int(w.shape[0]), k, stride=s, pad=p, bias=b is not None,
                         relu=False)
            add_layer(node, layer, (int(w.shape[0]), conv_out(h, k, s, p),
                                    conv_out(wd, k, s, p)), node.output[0], weight=w,
                      bias=None if b is None else b.astype(np.float32))
        elif op == "BatchNormalization":
            only(node, {"epsilon": None, "momentum": None,
                        "training_mode": lambda v: v == 0})
            rec = _weight_rec(node, src_of(node), by_name, fail, "BatchNormalization")
            single_reader(node, "the conv before a BatchNormalization")
            a = attrs(node)
            gamma, beta, mean, var = (_const(node, i, consts, fail) for i in range(1, 5))
            scale = gamma / np.sqrt(var + a.get("epsilon", 1e-5))
            b = rec.bias if rec.bias is not None else np.zeros(len(scale), np.float32)
            rec.weight = (rec.weight * scale.reshape(-1, *([1] * (rec.weight.ndim - 1))))\
                .astype(np.float32)
            rec.bias = ((b - mean) * scale + beta).astype(np.float32)
            rec.layer = replace(rec.layer, bias=True)
            tensor[node.output[0]] = rec.layer.name
        elif op == "Relu":
            only(node, {})
            src = src_of(node)
            rec = by_name.get(src)
            if rec is None or isinstance(rec.layer, Pool) or (
                    isinstance(rec.layer, (Conv, Dense)) and rec.layer.relu) or (
                    isinstance(rec.layer, Add) and not rec.needs_relu):
                raise fail(node, "a Relu must follow a Conv, Gemm/MatMul or residual Add "
                                 "directly")
            single_reader(node, "the Relu")
            if isinstance(rec.layer, Add):
                rec.needs_relu = False      # the add layer's own ReLU
            else:
                rec.layer = replace(rec.layer, relu=True)
            tensor[node.output[0]] = rec.layer.name
        elif op in ("MaxPool", "AveragePool"):
            a = only(node, {"kernel_shape": None, "strides": None,
                            "pads": lambda v: not any(v), "ceil_mode": None,
                            "dilations": lambda v: all(d == 1 for d in v),
                            "count_include_pad": None, "storage_order": lambda v: v == 0,
                            "auto_pad": lambda v: v in (b"NOTSET", b"VALID")})
            src = src_of(node)
            ks, st = list(a["kernel_shape"]), list(a.get("strides", [1, 1]))
            if len(set(ks)) != 1 or len(set(st)) != 1:
                raise fail(node, f"kernel and strides must be square, got {ks}, {st}")
            ceil = bool(a.get("ceil_mode", 0))
            c, h, wd = _map(node, shape_of[src], fail)
            k, s = int(ks[0]), int(st[0])
            if min(h, wd) < k and not ceil:
                raise fail(node, f"a {k}x{k} window does not fit the {h}x{wd} map")
            layer = Pool(_name(node.name, used, f"pool{len(layers)}"), k, s,
                         mode="max" if op == "MaxPool" else "avg", ceil=ceil)
            add_layer(node, layer, (c, pool_out(h, k, s, ceil), pool_out(wd, k, s, ceil)),
                      node.output[0])
        elif op == "GlobalAveragePool":
            only(node, {})
            src = src_of(node)
            c, h, wd = _map(node, shape_of[src], fail)
            k = max(h, wd)
            layer = Pool(_name(node.name, used, f"pool{len(layers)}"), k, k, mode="avg")
            add_layer(node, layer, (c, 1, 1), node.output[0])
        elif op in ("Gemm", "MatMul"):
            if op == "Gemm":
                a = only(node, {"alpha": lambda v: v == 1.0, "beta": lambda v: v == 1.0,
                                "transA": lambda v: v == 0, "transB": None})
            else:
                a = only(node, {})
            src = src_of(node)
            if node.input[1] not in consts:
                raise fail(node, "the weight must be an initializer")
            w = consts[node.input[1]].astype(np.float32)
            if w.ndim != 2:
                raise fail(node, f"the weight must be a matrix, got shape {w.shape}")
            w = w if op == "Gemm" and a.get("transB", 0) else w.T
            n_in = int(np.prod(shape_of[src]))
            if w.shape[1] != n_in:
                raise fail(node, f"weight takes {w.shape[1]} inputs, the map has {n_in}")
            b = None
            if op == "Gemm" and len(node.input) > 2 and node.input[2]:
                b = _const(node, 2, consts, fail).reshape(-1)
                if b.shape != (w.shape[0],):
                    raise fail(node, f"bias shape {b.shape} is not ({w.shape[0]},)")
            layer = Dense(_name(node.name, used, f"dense{len(layers)}"), n_in, int(w.shape[0]),
                          bias=b is not None, relu=False)
            weight_src[layer.name] = node.input[1]
            add_layer(node, layer, (int(w.shape[0]),), node.output[0], weight=w, bias=b)
        elif op == "Add":
            only(node, {})
            k = [i for i in (0, 1) if node.input[i] in consts]
            if k:   # a bias after a MatMul (or a conv)
                rec = _weight_rec(node, src_of(node, 1 - k[0]), by_name, fail, "a constant Add")
                b = consts[node.input[k[0]]].astype(np.float32).reshape(-1)
                if b.shape != (rec.shape[0],) or readers.get(node.input[1 - k[0]], 0) != 1:
                    raise fail(node, f"a constant add must be a bias of shape ({rec.shape[0]},) "
                                     f"on the only reader of the layer's output")
                rec.bias = b + (rec.bias if rec.bias is not None else 0)
                rec.layer = replace(rec.layer, bias=True)
                tensor[node.output[0]] = rec.layer.name
                continue
            a0, a1 = src_of(node, 0), src_of(node, 1)
            pick = [i for i, s in ((0, a0), (1, a1)) if s in by_name
                    and isinstance(by_name[s].layer, (Conv, Dense)) and not by_name[s].layer.relu
                    and readers.get(node.input[i], 0) == 1]
            if not pick:
                raise fail(node, "one operand must be a Conv (or its BatchNormalization) "
                                 "without Relu that nothing else reads")
            # Both may be signed (a projection shortcut): the later layer is the add's input.
            order = [r.layer.name for r in layers]
            i = max(pick, key=lambda i: order.index((a0, a1)[i]))
            main, other = (a0, a1) if i == 0 else (a1, a0)
            if shape_of[main] != shape_of[other]:
                raise fail(node, f"operand shapes differ: {shape_of[main]} and "
                                 f"{shape_of[other]}")
            if other is None:
                raise fail(node, "adding the network's input is not supported")
            layer = Add(_name(node.name, used, f"add{len(layers)}"), other=other)
            add_layer(node, layer, shape_of[main], node.output[0], src=main, needs_relu=True)
        elif op in ("Flatten", "Reshape"):
            src = src_of(node)
            if op == "Flatten":
                only(node, {"axis": lambda v: v == 1})
            else:
                only(node, {"allowzero": lambda v: v == 0})
                target = _const(node, 1, consts, fail).astype(np.int64).reshape(-1).tolist()
                n = int(np.prod(shape_of[src]))
                if len(target) != 2 or target[1] not in (-1, n) or target[0] not in (-1, 0, 1):
                    raise fail(node, f"only a reshape to (N, {n}) is supported, got {target}")
            tensor[node.output[0]] = src
        elif op in ("Identity", "Dropout"):
            only(node, {"seed": None, "ratio": None, "training_mode": None})
            tensor[node.output[0]] = src_of(node)
            ignored.append(node.name or op)
        elif op == "Softmax":
            src = src_of(node)
            if not layers or src != layers[-1].layer.name or \
                    node.output[0] not in {o.name for o in g.output}:
                raise fail(node, "only a final Softmax on the logits is supported")
            tensor[node.output[0]] = src
            ignored.append(node.name or op)
        elif op == "Constant":
            a = attrs(node)
            if "value" not in a:
                raise fail(node, "only a tensor-valued Constant is supported")
            consts[node.output[0]] = numpy_helper.to_array(a["value"])
        else:
            raise fail(node, "operator is not supported (Conv, BatchNormalization, Relu, "
                             "MaxPool, AveragePool, GlobalAveragePool, Add, Gemm, MatMul, "
                             "Flatten, Reshape, Identity, Dropout, Softmax are)")
    if len(g.output) != 1 or tensor.get(g.output[0].name) != (layers[-1].layer.name
                                                             if layers else 0):
        raise OnnxImportError(f"{where}: the graph's one output must be the last layer's "
                              f"(the logits)")
    last = layers[-1]
    if not isinstance(last.layer, Dense) or last.layer.relu:
        raise OnnxImportError(f"{where}: the output must be a Gemm/MatMul without Relu (the "
                              f"logits), got layer {last.layer.name!r}")
    # The logits get no ReLU whatever the flag says; the flag stays at its default so that the
    # description is the one the project writes (the mCNN round-trips to an equal network).
    last.layer = replace(last.layer, relu=True)
    for rec in layers:
        if rec.needs_relu:
            raise OnnxImportError(f"{where}: add {rec.layer.name!r} is not followed by a Relu "
                                  f"(the chip's residual add applies ReLU)")
    weights = {r.layer.name: r.weight for r in layers if r.weight is not None}
    biases = {r.layer.name: r.bias for r in layers if r.bias is not None}
    name = _name(g.name, set(), path.stem)
    try:
        net = Network(name, in_shape, tuple(r.layer for r in layers))
    except ValueError as e:
        raise OnnxImportError(f"{where}: {e}") from None
    meta = {p.key: p.value for p in model.metadata_props}
    scales = None
    if META_WEIGHT_SCALES in meta and META_ACT_SCALES in meta:
        try:
            scales = (json.loads(meta[META_WEIGHT_SCALES]), json.loads(meta[META_ACT_SCALES]))
        except json.JSONDecodeError:
            raise OnnxImportError(f"{where}: metadata {META_WEIGHT_SCALES}/{META_ACT_SCALES} "
                                  f"is not JSON") from None
    if qdq is not None:
        qdq = onnx_qdq.resolve(qdq, tensor, net, weights, weight_src, inputs[0].name, where)
    return Imported(net, weights, biases, scales, hashlib.sha256(raw).hexdigest(), ignored,
                    qdq)


def _map(node, shape, fail):
    if len(shape) != 3:
        raise fail(node, f"needs a feature map, gets shape {shape}")
    return shape


def _const(node, i, consts, fail) -> np.ndarray:
    if len(node.input) <= i or node.input[i] not in consts:
        raise fail(node, f"input {i} must be an initializer or a Constant")
    return consts[node.input[i]].astype(np.float32)


def _weight_rec(node, src, by_name, fail, what):
    rec = by_name.get(src)
    if rec is None or not isinstance(rec.layer, (Conv, Dense)) or rec.layer.relu:
        raise fail(node, f"{what} must follow a Conv or Gemm/MatMul directly (before its Relu)")
    return rec


def to_onnx(net: Network, weights: dict, biases: dict, weight_scales: dict | None = None,
            act_scales: dict | None = None) -> bytes:
    """The network as an ONNX model (opset 17), float32 weights; the quantization scales go
    into the model's metadata so that an import gives back the same chip."""
    onnx, numpy_helper = _onnx()
    h = onnx.helper
    nodes, inits = [], []
    out_of: dict[str | None, str] = {None: "input"}
    shapes = dict(zip([la.name for la in net.layers], net.shapes(), strict=True))
    shapes[None] = tuple(net.input_shape)
    for i, layer in enumerate(net.layers):
        src = net.source(i)
        x = out_of[src]
        y = layer.name
        if isinstance(layer, (Conv, Dense)):
            inits.append(numpy_helper.from_array(np.asarray(weights[layer.name], np.float32),
                                                 f"{layer.name}.weight"))
            ins = [x, f"{layer.name}.weight"]
            if layer.bias:
                inits.append(numpy_helper.from_array(np.asarray(biases[layer.name], np.float32),
                                                     f"{layer.name}.bias"))
                ins.append(f"{layer.name}.bias")
            if isinstance(layer, Conv):
                nodes.append(h.make_node("Conv", ins, [y], name=layer.name,
                                         kernel_shape=[layer.k] * 2, strides=[layer.stride] * 2,
                                         pads=[layer.pad] * 4))
            else:
                if len(shapes[src]) == 3:
                    nodes.append(h.make_node("Flatten", [x], [f"{layer.name}.flat"],
                                             name=f"{layer.name}_flatten", axis=1))
                    ins[0] = f"{layer.name}.flat"
                nodes.append(h.make_node("Gemm", ins, [y], name=layer.name, transB=1))
            relu = layer.relu and layer is not net.layers[-1]
        elif isinstance(layer, Pool):
            op = "MaxPool" if layer.mode == "max" else "AveragePool"
            nodes.append(h.make_node(op, [x], [y], name=layer.name, kernel_shape=[layer.k] * 2,
                                     strides=[layer.stride] * 2, ceil_mode=int(layer.ceil)))
            relu = False
        else:
            nodes.append(h.make_node("Add", [x, out_of[layer.other]], [y], name=layer.name))
            relu = True
        if relu:
            nodes.append(h.make_node("Relu", [y], [f"{y}.relu"], name=f"{layer.name}_relu"))
            y = f"{y}.relu"
        out_of[layer.name] = y
    last = out_of[net.layers[-1].name]
    graph = h.make_graph(
        nodes, net.name,
        [h.make_tensor_value_info("input", onnx.TensorProto.FLOAT, [1, *net.input_shape])],
        [h.make_tensor_value_info(last, onnx.TensorProto.FLOAT,
                                  [1, net.layers[-1].n_out])], inits)
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", OPSET)],
                         producer_name="memristor-cim")
    if weight_scales is not None and act_scales is not None:
        h.set_model_props(model, {
            META_WEIGHT_SCALES: json.dumps({k: float(v) for k, v in weight_scales.items()}),
            META_ACT_SCALES: json.dumps({k: float(v) for k, v in act_scales.items()})})
    onnx.checker.check_model(model)
    return model.SerializeToString()


def to_model(imp: Imported, source: str | Path, calib_images: np.ndarray | None,
             calibration: dict, percentile: float = 99.99):
    """A :class:`golden.model_file.TrainedModel` of an imported network: the weight scales
    (``max|W| / 7`` refined to the least squared error, as training does) and the activation
    scales calibrated on `calib_images` (the `percentile` of each activation map / 255), or,
    when `calib_images` is None, the scales of the file's Q/DQ nodes (a QDQ-format file) or
    of its metadata (a `cim export` file)."""
    import datetime

    from golden import float_model, model_file, net_float
    net = imp.network
    if calib_images is None and imp.qdq is not None:
        q = imp.qdq     # the file's QuantizeLinear/DequantizeLinear scales (datapath.md 5a)
        ws, acts = q["weight_scales"], q["act_scales"]
        how = {k: v for k, v in q.items() if k not in ("weight_scales", "act_scales")}
    elif calib_images is None:
        if imp.scales is None:
            raise OnnxImportError(f"{source}: the file carries no quantization scales; "
                                  f"calibration images are needed")
        ws, acts = imp.scales
        want_w = {la.name for la in net.weight_layers()}
        if set(ws) != want_w or set(acts) != set(net.act_layers()):
            raise OnnxImportError(f"{source}: metadata scales are for layers {sorted(ws)} / "
                                  f"{sorted(acts)}, not this network's")
        how = {"from": "the file's metadata (cim export)"}
    else:
        ws = {la.name: float_model.weight_scale(imp.weights[la.name], rule="mse")
              for la in net.weight_layers()}
        params = {**imp.weights,
                  **{net_float.bias_key(k): v for k, v in imp.biases.items()}}
        acts = net_float.calibrate_act_scales(net, params, calib_images, percentile)
        how = {**calibration, "images": int(len(calib_images)), "percentile": percentile,
               "rule": "act_scale = percentile(activation) / 255; weight_scale: least "
                       "squared error in [0.5, 1] * max|W| / 7"}
    meta = {"source": str(source), "sha256": imp.sha256, "calibration": how,
            "ignored_nodes": imp.ignored,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    model = model_file.TrainedModel(net.name, dict(imp.weights), {k: float(v) for k, v in
                                                                   ws.items()},
                                    {k: float(v) for k, v in acts.items()}, meta,
                                    dict(imp.biases))
    model_file.validate(model, net, str(source))
    return model
