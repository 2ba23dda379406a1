"""Make a QDQ-format (statically quantized) ONNX model from a float one, the way PyTorch's and
ONNX Runtime's static quantization export it, with the scales calibrated in numpy (onnx's
reference evaluator) on training images: a QuantizeLinear -> DequantizeLinear pair on the
input (uint8, 1/255), after every Relu and every pool (uint8, zero point 0, MinMax: the
largest activation over the images / 255; a pool keeps its input's scale), on each residual
add's conv operand (int8, symmetric), and int8 weights with a DequantizeLinear (float biases).

    python tools/make_qdq.py golden/data/resnet6.onnx --out runs/resnet6_qdq.onnx \\
        [--weights chip|int8] [--percentile 100] [--calib-images 500] [--data MNIST] \\
        [--scales calibrate|meta] [--eval MNIST]

`--weights chip` (default): one scale per tensor, codes -7..7 (the least-squares scale, as
the project's training chooses it: a MinMax scale max|W| / 7 costs resnet6 2.3 points): the
chip's 15 levels, so `cim import` follows the weights exactly. `--weights int8`: one scale
per output channel, codes -127..127 (max|W_c| / 127), which the chip rounds (docs/datapath.md
section 5a).
`--percentile 99.99` clips the activation scales as ONNX Runtime's Percentile calibration
does. `--scales meta` writes the trained model's own scales instead (the `cim export`
metadata of the shipped files: quantization-aware training's weight and activation scales),
so that the QDQ file and the float file import to the same chip up to float32 scales.
`--eval` runs the QDQ model itself (onnx's reference evaluator) on the test set.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from cim_spec import files
from golden import data
from golden.float_model import weight_scale

F32 = np.float32


def run(model, outputs, images, batch=500):
    """Float tensors `outputs` of `model` for uint8 `images` (N, H, W), in batches."""
    ref = ReferenceEvaluator(model)
    res = {o: [] for o in outputs}
    for s in range(0, len(images), batch):
        x = (images[s:s + batch, None] / F32(255)).astype(F32)
        for o, v in zip(outputs, ref.run(outputs, {model.graph.input[0].name: x}),
                        strict=True):
            res[o].append(v)
    return {o: np.concatenate(v) for o, v in res.items()}


def with_outputs(model, names):
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for n in names:
        if n not in {o.name for o in m.graph.output}:
            m.graph.output.append(helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT,
                                                                None))
    return m


def quantize(model, images, weights: str, percentile: float = 100.0, meta: bool = False):
    """The QDQ model. `meta`: the scales of the file's `cim export` metadata (the trained
    model's own, quantization-aware) instead of calibrated ones."""
    g = model.graph
    producer = {o: n for n in g.node for o in n.output}
    readers: dict[str, list] = {}
    for n in g.node:
        for t in n.input:
            readers.setdefault(t, []).append(n)
    relus = [n.output[0] for n in g.node if n.op_type == "Relu"]
    # A residual add's operand without Relu (a conv's output read only by the add).
    operands = [t for n in g.node if n.op_type == "Add" for t in n.input
                if t in producer and producer[t].op_type == "Conv"]
    vals = run(with_outputs(model, relus + operands), relus + operands, images)
    scale: dict[str, tuple] = {}
    for t in relus:
        top = float(np.percentile(vals[t], percentile))
        scale[t] = (F32(max(top, 1e-8) / 255), np.uint8(0))
    own_w, own_a = {}, {}
    if meta:
        props = {p.key: json.loads(p.value) for p in model.metadata_props
                 if p.key.startswith("cim.")}
        if "cim.weight_scales" not in props:
            raise SystemExit(f"{model.graph.name}: no cim.weight_scales metadata (--scales meta "
                             f"needs a file written by cim export)")
        own_w, own_a = props["cim.weight_scales"], props["cim.act_scales"]
        for t in relus:        # a Relu reads its layer's output, named after the layer
            scale[t] = (F32(own_a[producer[t].input[0]]), np.uint8(0))
    for t in operands:
        scale[t] = (F32(max(float(np.abs(vals[t]).max()), 1e-8) / 127), np.int8(0))
    for n in g.node:               # a pool keeps its input's scale (shared, as PyTorch does)
        if n.op_type in ("MaxPool", "AveragePool") and n.input[0] in scale:
            scale[n.output[0]] = scale[n.input[0]]
    inp = g.input[0].name
    scale[inp] = (F32(1 / 255), np.uint8(0))
    inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    new_inits, new_nodes = [], []

    def qdq(t):
        s, z = scale[t]
        new_inits.extend([numpy_helper.from_array(s, f"{t}.s"),
                          numpy_helper.from_array(z, f"{t}.z")])
        return [helper.make_node("QuantizeLinear", [t, f"{t}.s", f"{t}.z"], [f"{t}.q"],
                                 name=f"{t}.Q"),
                helper.make_node("DequantizeLinear", [f"{t}.q", f"{t}.s", f"{t}.z"],
                                 [f"{t}.dq"], name=f"{t}.DQ")]

    rename = {t: f"{t}.dq" for t in scale}
    new_nodes += qdq(inp)
    for n in g.node:
        m = onnx.NodeProto()
        m.CopyFrom(n)
        for i, t in enumerate(m.input):
            if t in rename:
                m.input[i] = rename[t]
        if n.op_type in ("Conv", "Gemm"):
            w = inits[n.input[1]].astype(np.float64)
            if meta:          # the trained scale; its rule clips at +-7 as training did
                s = F32(own_w[n.name])
                q = np.clip(np.rint(w / s), -7, 7).astype(np.int8)
            elif weights == "chip":   # 4-bit codes, the least-squares scale (clips at +-7)
                s = F32(weight_scale(w, 7, rule="mse"))
                q = np.clip(np.rint(w / s), -7, 7).astype(np.int8)
            else:
                s = (np.abs(w.reshape(len(w), -1)).max(axis=1) / 127).astype(F32)
                s = np.where(s > 0, s, F32(1))
                q = np.clip(np.rint(w / s.reshape(-1, *[1] * (w.ndim - 1))), -127, 127)\
                    .astype(np.int8)
            wn = n.input[1]
            new_inits += [numpy_helper.from_array(q, f"{wn}.q"),
                          numpy_helper.from_array(np.asarray(s), f"{wn}.s"),
                          numpy_helper.from_array(np.zeros(np.shape(s), np.int8), f"{wn}.z")]
            new_nodes.append(helper.make_node("DequantizeLinear", [f"{wn}.q", f"{wn}.s",
                                                                   f"{wn}.z"], [f"{wn}.dq"],
                                              name=f"{n.name}.wDQ", axis=0))
            m.input[1] = f"{wn}.dq"
        new_nodes.append(m)
        for t in n.output:
            if t in scale:
                new_nodes += qdq(t)
    drop = {n.input[1] for n in g.node if n.op_type in ("Conv", "Gemm")}
    out = onnx.ModelProto()
    out.CopyFrom(model)
    del out.graph.node[:], out.graph.initializer[:], out.metadata_props[:]
    out.graph.node.extend(new_nodes)
    out.graph.initializer.extend([t for t in g.initializer if t.name not in drop] + new_inits)
    for o in out.graph.output:
        o.name = rename.get(o.name, o.name)
    # DequantizeLinear with a per-axis scale and the reference evaluator need opset >= 19.
    del out.opset_import[:]
    out.opset_import.append(helper.make_opsetid("", 19))
    onnx.checker.check_model(out)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--weights", choices=("chip", "int8"), default="chip")
    p.add_argument("--percentile", type=float, default=100.0,
                   help="activation scale: this percentile of the map / 255 (100: MinMax)")
    p.add_argument("--scales", choices=("calibrate", "meta"), default="calibrate",
                   help="meta: the trained model's own scales (cim export metadata)")
    p.add_argument("--calib-images", type=int, default=500)
    p.add_argument("--data", type=Path, help="MNIST (default: the bundled subset)")
    p.add_argument("--eval", type=Path, help="MNIST: accuracy of the QDQ model on its test set")
    p.add_argument("--force", action="store_true")
    a = p.parse_args(argv)
    files.check_output(a.out, {files.OTHER}, a.force, [a.model])
    d = data.load(a.data) if a.data else data.load_bundled()
    model = onnx.load_model_from_string(a.model.read_bytes())
    q = quantize(model, d.train_images[:a.calib_images], a.weights, a.percentile,
                 a.scales == "meta")
    files.write_bytes(a.out, q.SerializeToString())
    print(f"wrote {a.out}: {sum(n.op_type == 'QuantizeLinear' for n in q.graph.node)} Q/DQ "
          f"pairs, weights {a.weights}, calibrated on {a.calib_images} training images")
    if a.eval:
        t = data.load(a.eval)
        out = q.graph.output[0].name
        logits = run(q, [out], t.test_images)[out]
        acc = float(np.mean(logits.argmax(axis=1) == t.test_labels))
        print(f"QDQ model (onnx reference evaluator): {acc:.2%} on {len(t.test_labels)} "
              f"test images")
    return 0


if __name__ == "__main__":
    sys.exit(main())
