"""ONNX import and export: graphs built with onnx.helper, checked against onnx's own reference
evaluator (an independent implementation of every operator), the mCNN round trip to an
identical chip, and the refusals."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from cim_flows import onnx_io
from cim_spec.config import SystemConfig
from cim_spec.mapping import map_network
from cim_spec.network import MCNN, Add, Conv, Dense, Pool
from golden import model_file, net_float
from golden.quantize import compile_model

RNG = np.random.default_rng(11)


def t(name, a):
    return numpy_helper.from_array(np.asarray(a, np.float32), name)


def conv(name, x, y, cin, cout, k, inits, stride=1, pad=0, bias=True):
    inits.append(t(f"{name}_w", RNG.normal(0, 0.4, (cout, cin, k, k))))
    ins = [x, f"{name}_w"]
    if bias:
        inits.append(t(f"{name}_b", RNG.normal(0, 0.1, cout)))
        ins.append(f"{name}_b")
    return helper.make_node("Conv", ins, [y], name=name, kernel_shape=[k, k],
                            strides=[stride, stride], pads=[pad] * 4)


def bn(name, x, y, c, inits):
    inits += [t(f"{name}_g", RNG.uniform(0.5, 1.5, c)), t(f"{name}_b", RNG.normal(0, 0.2, c)),
              t(f"{name}_m", RNG.normal(0, 0.2, c)), t(f"{name}_v", RNG.uniform(0.5, 2, c))]
    return helper.make_node("BatchNormalization", [x, f"{name}_g", f"{name}_b", f"{name}_m",
                                                   f"{name}_v"], [y], name=name, epsilon=1e-5)


def resnet_like(**change):
    """A stem, a residual block, a stride-2 block with a projection, pools and a MatMul head:
    the shape PyTorch exports (Conv, BatchNormalization, Relu, Add, Flatten, MatMul, Add)."""
    inits, n = [], []
    n.append(conv("stem", "x", "s0", 1, 4, 3, inits, pad=1, bias=False))
    n.append(bn("stem_bn", "s0", "s1", 4, inits))
    n.append(helper.make_node("Relu", ["s1"], ["s2"], name="stem_relu"))
    n.append(helper.make_node("MaxPool", ["s2"], ["p"], name="pool", kernel_shape=[2, 2],
                              strides=[2, 2]))
    n.append(conv("b1c1", "p", "a0", 4, 4, 3, inits, pad=1))
    n.append(helper.make_node("Relu", ["a0"], ["a1"], name="b1r1"))
    n.append(conv("b1c2", "a1", "a2", 4, 4, 3, inits, pad=1, bias=False))
    n.append(bn("b1bn2", "a2", "a3", 4, inits))
    n.append(helper.make_node("Add", ["a3", "p"], ["a4"], name="b1add"))
    n.append(helper.make_node("Relu", ["a4"], ["a5"], name="b1relu"))
    n.append(conv("b2c1", "a5", "c0", 4, 8, 3, inits, stride=2, pad=1))
    n.append(helper.make_node("Relu", ["c0"], ["c1"], name="b2r1"))
    n.append(conv("b2c2", "c1", "c2", 8, 8, 3, inits, pad=1))
    n.append(conv("b2proj", "a5", "d0", 4, 8, 1, inits, stride=2))
    n.append(helper.make_node("Add", ["d0", "c2"], ["c3"], name="b2add"))   # operands swapped
    n.append(helper.make_node("Relu", ["c3"], ["c4"], name="b2relu"))
    n.append(helper.make_node("AveragePool", ["c4"], ["q"], name="avg", kernel_shape=[2, 2],
                              strides=[1, 1]))
    n.append(helper.make_node("GlobalAveragePool", ["q"], ["gq"], name="gap"))
    n.append(helper.make_node("Flatten", ["gq"], ["f"], name="flat", axis=1))
    inits.append(t("fc_w", RNG.normal(0, 0.5, (8, 5))))
    inits.append(t("fc_b", RNG.normal(0, 0.1, 5)))
    n.append(helper.make_node("MatMul", ["f", "fc_w"], ["l0"], name="fc"))
    n.append(helper.make_node("Add", ["l0", "fc_b"], ["l1"], name="fc_bias"))
    n.append(helper.make_node("Softmax", ["l1"], ["out"], name="softmax", axis=1))
    for k, v in change.items():
        i = [x.name for x in n].index(k)
        n[i] = v
    g = helper.make_graph(n, "resnetlike",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 12, 12])],
                          [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 5])],
                          inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def save(model, path):
    path.write_bytes(model.SerializeToString())
    return path


def test_resnet_like_graph_imports_and_computes_what_onnx_computes(tmp_path):
    model = resnet_like()
    onnx.checker.check_model(model)
    imp = onnx_io.read_onnx(save(model, tmp_path / "r.onnx"))
    net = imp.network
    kinds = [(type(la).__name__, la.name) for la in net.layers]
    assert kinds == [("Conv", "stem"), ("Pool", "pool"), ("Conv", "b1c1"), ("Conv", "b1c2"),
                     ("Add", "b1add"), ("Conv", "b2c1"), ("Conv", "b2c2"), ("Conv", "b2proj"),
                     ("Add", "b2add"), ("Pool", "avg"), ("Pool", "gap"), ("Dense", "fc")]
    by = {la.name: la for la in net.layers}
    assert by["stem"].bias and by["stem"].pad == 1 and by["b2c1"].stride == 2
    assert not by["b1c2"].relu and not by["b2c2"].relu and by["b2proj"].relu is False
    # Both operands of b2add are signed: the later layer is its input, the other its other.
    assert by["b1add"].other == "pool" and by["b2add"].src is None
    assert by["b2add"].other == "b2c2" and by["b2proj"].src == "b1add"
    assert by["gap"].mode == "avg" and by["avg"].ceil is False
    x = RNG.random((4, 1, 12, 12)).astype(np.float32)
    params = {**imp.weights, **{net_float.bias_key(k): v for k, v in imp.biases.items()}}
    logits = net_float.forward(net, params, x)
    probs = np.stack([ReferenceEvaluator(model).run(None, {"x": x[i:i + 1]})[0][0]
                      for i in range(len(x))])
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    np.testing.assert_allclose(e / e.sum(axis=1, keepdims=True), probs, rtol=1e-4, atol=1e-6)
    assert "softmax" in imp.ignored


def test_imported_network_compiles_and_saves(tmp_path):
    imp = onnx_io.read_onnx(save(resnet_like(), tmp_path / "r.onnx"))
    images = RNG.integers(0, 256, (30, 12, 12)).astype(np.uint8)
    model = onnx_io.to_model(imp, "r.onnx", images, {"data": "random"})
    assert model.meta["calibration"]["images"] == 30
    assert sorted(model.act_scales) == sorted(imp.network.act_layers())
    model_file.save(model, tmp_path / "r.npz", imp.network, describe=True)
    net, back = model_file.load_any(tmp_path / "r.npz")
    assert net == imp.network and back.meta["sha256"] == imp.sha256
    mapping = map_network(SystemConfig(), net)
    prog = compile_model(back, mapping, images)
    assert set(prog.digital.bias) == {"stem", "b1c1", "b1c2", "b2c1", "b2c2", "b2proj", "fc"}


def test_mcnn_round_trips_to_an_identical_chip(tmp_path):
    bundled = model_file.load_bundled()
    data = onnx_io.to_onnx(MCNN, bundled.weights, {}, bundled.weight_scales,
                           bundled.act_scales)
    imp = onnx_io.read_onnx(save(onnx.load_model_from_string(data), tmp_path / "m.onnx"))
    assert imp.network == MCNN and imp.network.to_dict() == MCNN.to_dict()
    model = onnx_io.to_model(imp, "m.onnx", None, {})
    mapping = map_network(SystemConfig(), MCNN)
    images = RNG.integers(0, 256, (20, 28, 28)).astype(np.uint8)
    a, b = compile_model(bundled, mapping, images), compile_model(model, mapping, images)
    assert np.array_equal(a.target, b.target) and a.digital == b.digital
    assert a.logit_scale == b.logit_scale
    # Export of a general network and back: the same description and parameters.
    net = onnx_io.read_onnx(save(resnet_like(), tmp_path / "r.onnx"))
    again = onnx_io.read_onnx(save(onnx.load_model_from_string(onnx_io.to_onnx(
        net.network, net.weights, net.biases)), tmp_path / "r2.onnx"))
    assert again.network == net.network
    assert all(np.array_equal(again.weights[k], v) for k, v in net.weights.items())
    assert all(np.array_equal(again.biases[k], v) for k, v in net.biases.items())
    assert isinstance(again.network.layers[4], Add) and isinstance(again.network.layers[0], Conv)
    assert isinstance(again.network.layers[-1], Dense) and isinstance(net.network.layers[1], Pool)


REFUSALS = [   # (node replaced, the message as a regular expression)
    ({"b1r1": helper.make_node("Sigmoid", ["a0"], ["a1"], name="b1r1")},
     "node 'b1r1' \\(Sigmoid\\): operator is not supported"),
    ({"pool": helper.make_node("MaxPool", ["s2"], ["p"], name="pool", kernel_shape=[2, 2],
                               strides=[2, 2], pads=[1, 1, 1, 1])},
     "node 'pool' \\(MaxPool\\): attribute pads=.* is not supported"),
    ({"b1c1": helper.make_node("Conv", ["p", "b1c1_w"], ["a0"], name="b1c1", group=2,
                               kernel_shape=[3, 3], pads=[1, 1, 1, 1])},
     "node 'b1c1' \\(Conv\\): attribute group=2 is not supported"),
    ({"b1c1": helper.make_node("Conv", ["p", "b1c1_w"], ["a0"], name="b1c1",
                               kernel_shape=[3, 3], pads=[1, 1, 0, 0])},
     "node 'b1c1' \\(Conv\\): padding must be the same on every side"),
    ({"b1relu": helper.make_node("Identity", ["a4"], ["a5"], name="b1relu")},
     "add 'b1add' is not followed by a Relu"),
]


@pytest.mark.parametrize("change,message", REFUSALS)
def test_unsupported_graphs_are_refused_naming_the_node(tmp_path, change, message):
    with pytest.raises(onnx_io.OnnxImportError, match=message):
        onnx_io.read_onnx(save(resnet_like(**change), tmp_path / "bad.onnx"))


def test_a_file_that_is_not_onnx_is_refused(tmp_path):
    p = tmp_path / "x.onnx"
    p.write_bytes(b"\xff\xfe garbage that is no protobuf")
    with pytest.raises(onnx_io.OnnxImportError, match="x.onnx"):
        onnx_io.read_onnx(p)
