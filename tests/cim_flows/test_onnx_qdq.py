"""QDQ-format ONNX import (docs/datapath.md section 5a): a small conv net quantized with known
scales, built with onnx.helper. The imported weights are the dequantized weights exactly, the
scales land where the page says, and the ideal chip's codes stay within the page's bound of an
independent computation of the QDQ graph (onnx's reference evaluator for the first layer, numpy
from the chip's own input codes for the later ones); the refusals name the node."""

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from numpy.lib.stride_tricks import sliding_window_view
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from cim_cli.main import main
from cim_flows import onnx_io
from cim_spec.config import SystemConfig
from cim_spec.mapping import map_network
from golden import chip_model, model_file
from golden.quantize import compile_model

RNG = np.random.default_rng(16)
F32 = np.float32
S_IN, S_A1, S_A2 = F32(1 / 255), F32(0.021), F32(0.0372)
S_C1, S_FC = F32(0.11), F32(0.043)
S_C2 = (RNG.uniform(0.004, 0.012, 6)).astype(F32)             # per output channel
C1_Q = RNG.integers(-7, 8, (4, 1, 3, 3)).astype(np.int8)        # fits the chip's 15 levels
C2_Q = RNG.integers(-127, 128, (6, 4, 3, 3)).astype(np.int8)    # int8: the chip rounds
FC_Q = RNG.integers(-20, 21, (5, 24)).astype(np.int8)           # per tensor, m = 3
C1_B = RNG.normal(0, 0.3, 4).astype(F32)
C2_B_Q = RNG.integers(-3000, 3000, 6).astype(np.int32)          # int32 bias, ORT's way
FC_B = RNG.normal(0, 0.2, 5).astype(F32)


def init(name, a):
    return numpy_helper.from_array(np.asarray(a), name)


class Graph:
    def __init__(self):
        self.nodes, self.inits = [], []

    def qdq(self, x, name, scale, zp=None):
        zp = np.uint8(0) if zp is None else zp
        self.inits += [init(f"{name}_s", F32(scale)), init(f"{name}_z", zp)]
        self.nodes += [helper.make_node("QuantizeLinear", [x, f"{name}_s", f"{name}_z"],
                                        [f"{name}_q"], name=f"{name}_Q"),
                       helper.make_node("DequantizeLinear", [f"{name}_q", f"{name}_s",
                                                             f"{name}_z"], [f"{name}_d"],
                                        name=f"{name}_DQ")]
        return f"{name}_d"

    def weight(self, name, codes, scale, axis=0):
        self.inits += [init(f"{name}_wq", codes), init(f"{name}_ws", np.asarray(scale, F32)),
                       init(f"{name}_wz", np.zeros(np.shape(scale), codes.dtype))]
        self.nodes.append(helper.make_node("DequantizeLinear", [f"{name}_wq", f"{name}_ws",
                                                                f"{name}_wz"], [f"{name}_w"],
                                           name=f"{name}_wDQ", axis=axis))
        return f"{name}_w"

    def op(self, op, ins, name, **kw):
        self.nodes.append(helper.make_node(op, ins, [name], name=name, **kw))
        return name

    def model(self, out, shape=(1, 1, 12, 12), n_out=5):
        g = helper.make_graph(self.nodes, "qdqnet",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info(out, TensorProto.FLOAT,
                                                             [1, n_out])], self.inits)
        return helper.make_model(g, opset_imports=[helper.make_opsetid("", 19)])


def qdq_net(**change):
    """input Q/DQ, c1 (per-tensor -7..7, float bias) + Relu, Q/DQ, MaxPool, Q/DQ (the same
    scale), c2 (per-channel int8, int32 bias), Q/DQ before its Relu, AveragePool, Q/DQ,
    Flatten, Gemm (per tensor, codes up to 20), Q/DQ on the logits."""
    g = Graph()
    x = g.qdq("x", "in", change.get("s_in", S_IN))
    g.inits.append(init("c1_b", C1_B))
    y = g.op("Conv", [x, g.weight("c1", C1_Q, S_C1), "c1_b"], "c1", kernel_shape=[3, 3],
             pads=[1, 1, 1, 1])
    y = g.qdq(y if change.get("no_relu") else g.op("Relu", [y], "c1_relu"), "a1", S_A1)
    y = g.qdq(g.op("MaxPool", [y], "pool1", kernel_shape=[2, 2], strides=[2, 2]), "p1",
              change.get("s_p1", S_A1))
    g.inits.append(init("c2_bq", C2_B_Q))
    g.inits.append(init("c2_bs", (S_A1 * S_C2).astype(F32)))
    g.nodes.append(helper.make_node("DequantizeLinear", ["c2_bq", "c2_bs"], ["c2_b"],
                                    name="c2_bDQ", axis=0))
    y = g.op("Conv", [y, g.weight("c2", C2_Q, S_C2), "c2_b"], "c2", kernel_shape=[3, 3],
             pads=[1, 1, 1, 1])
    y = g.op("Relu", [g.qdq(y, "a2", S_A2, change.get("z_a2", np.uint8(0)))], "c2_relu")
    y = g.qdq(g.op("AveragePool", [y], "pool2", kernel_shape=[3, 3], strides=[3, 3],
                   ceil_mode=1), "p2", S_A2)
    y = g.op("Flatten", [y], "flat", axis=1)
    g.inits.append(init("fc_b", FC_B))
    y = g.op("Gemm", [y, g.weight("fc", FC_Q, S_FC), "fc_b"], "fc", transB=1)
    return g.model(g.qdq(y, "out", F32(0.05), np.int8(0)))


def test_weights_are_the_dequantized_weights_and_scales_land_as_documented(tmp_path):
    path = tmp_path / "q.onnx"
    path.write_bytes(qdq_net().SerializeToString())
    imp = onnx_io.read_onnx(path)
    assert [la.name for la in imp.network.layers] == ["c1", "pool1", "c2", "pool2", "fc"]
    # Weights and biases: exactly what onnx's reference evaluator's DequantizeLinear gives.
    for name, axis in (("c1", 0), ("c2", 0), ("fc", 0)):
        codes = {"c1": C1_Q, "c2": C2_Q, "fc": FC_Q}[name]
        scale = {"c1": S_C1, "c2": S_C2, "fc": S_FC}[name]
        want = ref_dequantize(codes, scale, axis)
        assert imp.weights[name].dtype == F32 and np.array_equal(imp.weights[name], want)
    want_b2 = (C2_B_Q.astype(F32) * (S_A1 * S_C2).astype(F32))
    assert np.array_equal(imp.biases["c2"], want_b2) and np.array_equal(imp.biases["c1"], C1_B)
    q = imp.qdq
    assert q["act_scales"] == {"c1": float(S_A1), "c2": float(S_A2)}
    assert q["weight_scales"]["c1"] == float(S_C1) and q["weights"]["c1"]["exact"]
    for name in ("c2", "fc"):       # per channel; per tensor with codes up to 20: rounded
        assert q["weight_scales"][name] == least_squares_scale(imp.weights[name])
        assert not q["weights"][name]["exact"]
    assert q["input"]["exact"] and q["input"]["scale"] == float(S_IN)
    assert [(n["map"], n["node"]) for n in q["not_followed"]] == [("fc", "out_Q")]
    # The model file records that its scales came from the ONNX.
    model = onnx_io.to_model(imp, path, None, {})
    assert model.act_scales == q["act_scales"]
    assert model.meta["calibration"]["from"].startswith("the ONNX file's QuantizeLinear")
    assert model.meta["calibration"]["weights"]["c2"]["axis"] == 0
    # The chip's levels: c1's are the ONNX codes, fc's the documented rounding.
    mapping = map_network(SystemConfig(), imp.network)
    images = RNG.integers(0, 256, (40, 12, 12), dtype=np.uint8)
    prog = compile_model(model, mapping, images)
    assert np.array_equal(prog.levels["c1"], C1_Q.reshape(4, -1))
    s_fc = q["weight_scales"]["fc"]
    assert np.array_equal(prog.levels["fc"],
                          np.clip(np.rint(imp.weights["fc"].astype(np.float64) / s_fc), -7, 7))
    # An input scale that does not give back every pixel is recorded, not followed.
    path.write_bytes(qdq_net(s_in=F32(1 / 250)).SerializeToString())
    q_in = onnx_io.read_onnx(path).qdq
    assert not q_in["input"]["exact"] and q_in["not_followed"][0]["map"] == "input"
    # A pool's Q/DQ at another scale than its input's is recorded, not followed.
    path.write_bytes(qdq_net(s_p1=F32(0.03)).SerializeToString())
    assert [n["map"] for n in onnx_io.read_onnx(path).qdq["not_followed"]] == ["pool1", "fc"]
    # No Relu after c1 (ONNX Runtime's quantizer drops it): uint8 with zero point 0 has no
    # negative code, so the pair is the ReLU; the same network and scales.
    path.write_bytes(qdq_net(no_relu=True).SerializeToString())
    again = onnx_io.read_onnx(path)
    assert again.network == imp.network and again.qdq["act_scales"] == q["act_scales"]
    # uint8 with a zero point: the chip's code is q - z, at the same scale; the model's map
    # tops out at 255 - z codes (before the Relu, as here, or after it alike).
    path.write_bytes(qdq_net(z_a2=np.uint8(10)).SerializeToString())
    q = onnx_io.read_onnx(path).qdq
    assert q["act_scales"]["c2"] == float(S_A2)
    assert (q["activations"]["c2"]["zero_point"], q["activations"]["c2"]["top"]) == (10, 245)


def least_squares_scale(w):
    """docs/datapath.md 5a: of the scales max|W| / 7 * linspace(0.5, 1, 51), the first whose
    levels clip(rint(W / s), -7, 7) * s have the least squared error."""
    w = np.asarray(w, np.float64).ravel()
    best = None
    for f in np.linspace(0.5, 1.0, 51):
        s = np.abs(w).max() / 7 * f
        e = float(((np.clip(np.rint(w / s), -7, 7) * s - w) ** 2).sum())
        if best is None or e < best[0]:
            best = (e, s)
    return best[1]


def ref_dequantize(codes, scale, axis):
    """onnx's reference evaluator's DequantizeLinear of these codes (an independent one)."""
    g = helper.make_graph(
        [helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], axis=axis)], "dq", [],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [init("q", codes), init("s", np.asarray(scale, F32)),
         init("z", np.zeros(np.shape(scale), codes.dtype))])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 19)])
    return ReferenceEvaluator(m).run(None, {})[0]


def _patches(a, k, pad):
    a = np.pad(a, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    w = sliding_window_view(a, (k, k), axis=(2, 3))               # N, C, Ho, Wo, k, k
    return w.transpose(0, 2, 3, 1, 4, 5).reshape(*w.shape[:1], w.shape[2], w.shape[3], -1)


def test_chip_codes_within_the_documented_bound_of_the_qdq_graph(tmp_path):
    path = tmp_path / "q.onnx"
    onnx_model = qdq_net()
    path.write_bytes(onnx_model.SerializeToString())
    imp = onnx_io.read_onnx(path)
    model = onnx_io.to_model(imp, path, None, {})
    cfg = SystemConfig()
    mapping = map_network(cfg, imp.network)
    images = np.random.default_rng(5).integers(0, 256, (60, 12, 12), dtype=np.uint8)
    images[:3] = 255                                                 # edge cases
    images[3] = 0
    prog = compile_model(model, mapping, images)        # calibrated on them: no ADC clamps
    res = chip_model.run(prog.chip(mapping), images, trace=True)
    tr = res.trace
    d = prog.digital
    frac = 2 ** cfg.adc_gain_frac_bits
    checked = 0
    # The whole QDQ graph by onnx's evaluator: c1's codes from the same pixels.
    for n in onnx_model.graph.node:
        if n.name == "a1_Q":
            onnx_model.graph.output.append(helper.make_tensor_value_info(
                "a1_q", TensorProto.UINT8, None))
    ref = ReferenceEvaluator(onnx_model)
    ref_a1 = np.concatenate([ref.run(["a1_q"], {"x": (im[None, None] / F32(255)).astype(F32)})
                             [0] for im in images])
    for name, src_codes, s_in, s_a in (("c1", images[:, None].astype(np.int64), 1 / 255,
                                        float(S_A1)),
                                       ("c2", tr["pool1"].astype(np.int64), float(S_A1),
                                        float(S_A2))):
        layer = imp.network.layers[[la.name for la in imp.network.layers].index(name)]
        w = imp.weights[name].astype(np.float64).reshape(layer.out_ch, -1)
        wl = prog.levels[name] * model.weight_scales[name]
        x = _patches(src_codes, 3, 1)                                   # N, H, W, n_in
        z = s_in * (x @ w.T) + imp.biases[name]                         # the model, float
        want = np.clip(np.rint(z / s_a), 0, 255).transpose(0, 3, 1, 2)
        u = s_in * model.weight_scales[name] * frac / (d.adc_gain[name] * cfg.state_step_code)
        n_chunks = len({b.chunk for b in mapping.blocks_of(name)})
        big_d = n_chunks * (2 ** cfg.input_bits - 1) + 0.5
        w_err = s_in * (x @ np.abs(w - wl).T)                           # weight rounding
        t = np.abs(want) + 1
        bound = np.floor((big_d * u + w_err.transpose(0, 3, 1, 2)) / s_a + t * 2 ** -16) + 1
        diff = np.abs(tr[name].astype(np.int64) - want)
        assert np.all(diff <= bound), (name, diff.max())
        assert diff.max() >= 0 and (diff == 0).mean() > 0.3      # mostly exact, not vacuous
        checked += diff.size
        if name == "c1":
            assert np.array_equal(want, ref_a1)     # our float c1 is onnx's QDQ graph
    # Average pool at the same scale: the chip rounds half up, the model half to even.
    a2 = tr["c2"].astype(np.float64)
    h = a2.shape[2]
    pooled = np.zeros(tr["pool2"].shape)
    for oy in range(pooled.shape[2]):
        for ox in range(pooled.shape[3]):
            win = a2[:, :, 3 * oy:min(3 * oy + 3, h), 3 * ox:min(3 * ox + 3, h)]
            pooled[:, :, oy, ox] = np.rint(win.mean(axis=(2, 3)))
    diff = np.abs(tr["pool2"] - pooled)
    assert diff.max() <= 1 and checked > 1000
    # The logits: the model's float logits from the chip's pooled codes, against the chip's
    # partial sums times the logit scale, within the bound before any rounding.
    x = tr["pool2"].reshape(len(images), -1).astype(np.float64)
    w = imp.weights["fc"].astype(np.float64)
    z = float(S_A2) * x @ w.T + imp.biases["fc"]
    u = prog.logit_scale
    n_chunks = len({b.chunk for b in mapping.blocks_of("fc")})
    w_err = float(S_A2) * x @ np.abs(w - prog.levels["fc"] * model.weight_scales["fc"]).T
    err = np.abs(res.logits * u - z)
    assert np.all(err <= (n_chunks * (2 ** cfg.input_bits - 1) + 0.5) * u + w_err + 1e-9)
    assert err.max() > 0.1 * u


def test_residual_add_takes_the_scale_after_it(tmp_path):
    """conv + Relu, Q/DQ; conv (no Relu), Q/DQ (int8, its own scale); Add; Q/DQ; Relu: the
    add's map gets the add's scale, the operand's int8 Q/DQ is recorded as not followed (the
    chip requantizes the operand to the add's scale directly)."""
    g = Graph()
    x = g.qdq("x", "in", S_IN)
    y = g.op("Conv", [x, g.weight("c1", C1_Q, S_C1)], "c1", kernel_shape=[3, 3],
             pads=[1, 1, 1, 1])
    a = g.qdq(g.op("Relu", [y], "c1_relu"), "a1", S_A1)
    r = g.op("Conv", [a, g.weight("c2", C2_Q[:4], S_C2[:4])], "c2", kernel_shape=[3, 3],
             pads=[1, 1, 1, 1])
    r = g.qdq(r, "r", F32(0.05), np.int8(0))
    y = g.op("Relu", [g.qdq(g.op("Add", [r, a], "add"), "sum", S_A2)], "relu")
    y = g.op("Flatten", [y], "flat", axis=1)
    fc_q = RNG.integers(-7, 8, (5, 576)).astype(np.int8)
    y = g.op("Gemm", [y, g.weight("fc", fc_q, S_FC)], "fc", transB=1)
    path = tmp_path / "res.onnx"
    path.write_bytes(g.model(y).SerializeToString())
    imp = onnx_io.read_onnx(path)
    q = imp.qdq
    assert q["act_scales"] == {"c1": float(S_A1), "add": float(S_A2)}
    assert [(n["map"], n["node"]) for n in q["not_followed"]] == [("c2", "r_Q")]
    model = onnx_io.to_model(imp, path, None, {})
    mapping = map_network(SystemConfig(), imp.network)
    prog = compile_model(model, mapping, RNG.integers(0, 256, (10, 12, 12), dtype=np.uint8))
    assert np.array_equal(prog.levels["fc"], fc_q)         # per tensor, in -7..7: exact


@pytest.mark.parametrize("case,message", [
    ("weight_zp", "node 'c1_wDQ' (DequantizeLinear): weight zero point [3] is not supported"),
    ("per_channel_act", "node 'a1_Q' (QuantizeLinear): per-channel activation scales"),
    ("qlinearconv", "node 'qc' (QLinearConv): integer operators are not read"),
    ("missing_act", "layer 'c2''s output has no QuantizeLinear/DequantizeLinear"),
    ("int_reader", "node 'c1_relu' (Relu): reads the integer map 'a1_q'"),
])
def test_refusals_exit_2_with_one_line(tmp_path, capsys, case, message):
    m = qdq_net()
    g = m.graph
    byname = {n.name: n for n in g.node}
    inits = {t.name: t for t in g.initializer}
    if case == "weight_zp":
        inits["c1_wz"].CopyFrom(init("c1_wz", np.int8(3)))
    elif case == "per_channel_act":
        inits["a1_s"].CopyFrom(init("a1_s", np.full(4, S_A1, F32)))
        inits["a1_z"].CopyFrom(init("a1_z", np.zeros(4, np.uint8)))
    elif case == "qlinearconv":
        g.node.insert(0, helper.make_node("QLinearConv", ["in_q", "in_s", "in_z", "c1_wq",
                                                          "c1_ws", "c1_wz", "in_s", "in_z"],
                                          ["qc_out"], name="qc"))
    elif case == "missing_act":
        dq = byname["a2_DQ"]
        byname["c2_relu"].input[0] = "c2"
        g.node.remove(dq)
        g.node.remove(byname["a2_Q"])
    elif case == "int_reader":
        byname["c1_relu"].input[0] = "a1_q"
        byname["a1_Q"].input[0] = "c1"
        byname["a1_DQ"].input[0] = "a1_q"
    path, out = tmp_path / "bad.onnx", tmp_path / "bad.npz"
    path.write_bytes(m.SerializeToString())
    assert main(["import", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not out.exists()


def test_cli_import_records_the_onnx_scales(tmp_path, capsys):
    path, out = tmp_path / "q.onnx", tmp_path / "q.npz"
    path.write_bytes(qdq_net().SerializeToString())
    assert main(["import", str(path), "--out", str(out), "--json"]) == 0
    cal = json.loads(capsys.readouterr().out)["calibration"]
    assert cal["from"] == "the ONNX file's QuantizeLinear/DequantizeLinear scales"
    model = model_file.load_any(out)[1]
    assert model.meta["calibration"] == cal
    assert model.weight_scales["c1"] == float(S_C1) and model.act_scales["c2"] == float(S_A2)


def test_make_qdq_tool_gives_a_model_the_chip_follows(tmp_path, capsys):
    """tools/make_qdq.py on the shipped lenet5: its chip-level weights and its input are
    followed exactly, every activation scale is the file's, and the calibration says so."""
    import runpy
    import sys
    root = Path(__file__).resolve().parents[2]
    out, npz = tmp_path / "lenet5_qdq.onnx", tmp_path / "lenet5_qdq.npz"
    argv = sys.argv
    sys.argv = ["make_qdq.py", str(root / "golden/data/lenet5.onnx"), "--out", str(out),
                "--calib-images", "20"]
    try:
        with pytest.raises(SystemExit) as e:
            runpy.run_path(str(root / "tools/make_qdq.py"), run_name="__main__")
    finally:
        sys.argv = argv
    assert e.value.code == 0
    assert main(["import", str(out), "--out", str(npz), "--json"]) == 0
    cal = json.loads(capsys.readouterr().out.splitlines()[-1])["calibration"]
    assert cal["input"]["exact"] and cal["not_followed"] == []
    assert all(w["exact"] for w in cal["weights"].values())
    model = model_file.load_any(npz)[1]
    assert list(model.act_scales) == ["C1", "C3", "F5", "F6"]
    g = onnx.load(out).graph
    inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    q_scale = {n.input[0]: float(inits[n.input[1]]) for n in g.node
               if n.op_type == "QuantizeLinear"}
    assert model.act_scales == {k: q_scale[f"{k}.relu"] for k in model.act_scales}
