"""The networks shipped as ONNX files (golden/data/lenet5.onnx, resnet6.onnx, trained with
tools/train_onnx_nets.py): they import, have the shape the issue asks for, compute what onnx's
reference evaluator computes, and their compiled chip runs bit-exact with the loop
reference."""

from pathlib import Path

import numpy as np
import pytest
from onnx.reference import ReferenceEvaluator

from cim_flows import onnx_io
from cim_spec.config import SystemConfig
from cim_spec.mapping import map_network, pes_needed
from cim_spec.network import Add, Conv, Pool
from golden import chip_model, data, net_float, reference
from golden.quantize import compile_model

DATA = Path(data.__file__).parent / "data"


@pytest.mark.parametrize("name", ["lenet5", "resnet6"])
def test_shipped_network_imports_and_matches_onnx(name):
    path = DATA / f"{name}.onnx"
    imp = onnx_io.read_onnx(path)
    net = imp.network
    assert net.name == name and imp.scales is not None
    if name == "resnet6":
        adds = [la for la in net.layers if isinstance(la, Add)]
        convs = [la for la in net.layers if isinstance(la, Conv)]
        assert len(adds) >= 2 and any(c.pad for c in convs) and any(c.stride == 2 for c in convs)
    d = data.load_bundled()
    x = net_float.images_to_input(d.test_images[:3])
    params = {**imp.weights, **{net_float.bias_key(k): v for k, v in imp.biases.items()}}
    ours = net_float.forward(net, params, x)
    theirs = np.concatenate([ReferenceEvaluator(str(path)).run(None, {"input": x[i:i + 1]})[0]
                             for i in range(3)])
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4)


def test_shipped_residual_network_runs_bit_exact_on_its_chip():
    imp = onnx_io.read_onnx(DATA / "resnet6.onnx")
    model = onnx_io.to_model(imp, "resnet6.onnx", None, {})
    net = imp.network
    cfg = SystemConfig.load(Path(__file__).parents[2] / "examples" / "resnet6.toml")
    assert pes_needed(cfg, net) == cfg.n_pe
    mapping = map_network(cfg, net)
    d = data.load_bundled()
    prog = compile_model(model, mapping, d.train_images[:50])
    chip = prog.chip(mapping)
    fast = chip_model.run(chip, d.test_images[:1], image_ids=[7], trace=True)
    logits, trace = reference.run_image(chip, d.test_images[0][None], 7)
    assert fast.logits[0].tolist() == logits
    for layer in net.layers:
        if not isinstance(layer, Pool):
            assert np.asarray(fast.trace[layer.name][0]).tolist() == trace[layer.name]
