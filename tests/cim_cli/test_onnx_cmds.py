"""`cim export` and `cim import`: the mCNN through ONNX and back evaluates the same; a graph
the chip cannot compute is refused in one line with exit status 2."""

import json
from pathlib import Path

from onnx import TensorProto, helper, numpy_helper

from cim_cli.main import main
from golden import data, model_file


def test_export_import_eval_round_trip(tmp_path, capsys):
    onnx_path, net = tmp_path / "mcnn.onnx", tmp_path / "mcnn.npz"
    assert main(["export", "--out", str(onnx_path)]) == 0
    assert main(["export", "--out", str(onnx_path)]) == 2          # exists, no --force
    assert main(["import", str(onnx_path), "--out", str(net), "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["network"]["name"] == "mcnn"
    accs = []
    for weights in ([], ["--weights", str(net)]):
        assert main(["eval", "--stage", "quant", "--limit", "50", "--json", *weights]) == 0
        accs.append(json.loads(capsys.readouterr().out)["accuracy"])
    assert accs[0] == accs[1]
    # Recalibrated on data: the file records what it was calibrated on.
    again = tmp_path / "recal.npz"
    assert main(["import", str(onnx_path), "--out", str(again), "--recalibrate", "--json"]) == 2
    assert "--recalibrate needs" in capsys.readouterr().err
    subset = Path(data.__file__).parent / "data" / "mnist_subset.npz"
    assert main(["import", str(onnx_path), "--out", str(again), "--recalibrate", "--data",
                 str(subset), "--calib-images", "300", "--json"]) == 0
    cal = json.loads(capsys.readouterr().out)["calibration"]
    assert cal["data"] == str(subset) and cal["images"] == 300 and cal["first"] == 300
    assert model_file.load_any(again)[1].meta["calibration"] == cal


def test_unsupported_operator_exits_2_with_one_line(tmp_path, capsys):
    w = numpy_helper.from_array(__import__("numpy").ones((10, 784), "float32"), "w")
    g = helper.make_graph(
        [helper.make_node("Flatten", ["x"], ["f"], name="flat"),
         helper.make_node("Gemm", ["f", "w"], ["y"], name="fc", transB=1),
         helper.make_node("Tanh", ["y"], ["z"], name="squash")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 28, 28])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 10])], [w])
    p = tmp_path / "tanh.onnx"
    p.write_bytes(helper.make_model(g).SerializeToString())
    assert main(["import", str(p), "--out", str(tmp_path / "n.npz")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "node 'squash' (Tanh)" in err
    assert not (tmp_path / "n.npz").exists()


def test_a_network_the_rtl_cannot_run_is_refused_in_one_line(tmp_path, capsys):
    """A max pool whose windows skip positions (2 x 2, stride 3) imports, maps and programs
    (the golden model runs it), but the RTL's plan refuses it: `cim verilog` exits 2 with one
    line naming the pool and why, and writes nothing."""
    rng = __import__("numpy").random.default_rng(0)
    w = numpy_helper.from_array(rng.normal(0, 0.3, (2, 1, 3, 3)).astype("float32"), "w")
    f = numpy_helper.from_array(rng.normal(0, 0.1, (10, 2 * 9 * 9)).astype("float32"), "f")
    g = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", kernel_shape=[3, 3]),
         helper.make_node("Relu", ["c"], ["r"], name="relu"),
         helper.make_node("MaxPool", ["r"], ["p"], name="pool", kernel_shape=[2, 2],
                          strides=[3, 3]),
         helper.make_node("Flatten", ["p"], ["v"], name="flat"),
         helper.make_node("Gemm", ["v", "f"], ["y"], name="fc", transB=1)], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 28, 28])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])], [w, f])
    p = tmp_path / "skip.onnx"
    p.write_bytes(helper.make_model(g).SerializeToString())
    net, state = tmp_path / "n.npz", tmp_path / "chip"
    assert main(["import", str(p), "--out", str(net), "--calib-images", "50"]) == 0
    assert main(["program", "--weights", str(net), "--out", str(state)]) == 0
    capsys.readouterr()
    assert main(["verilog", "--chip", str(state), "--out", str(tmp_path / "v")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "layer pool" in err and "k >= stride" in err, err
    assert not (tmp_path / "v").exists()
