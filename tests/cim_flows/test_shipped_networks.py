"""The networks shipped as ONNX files (golden/data/lenet5.onnx, resnet6.onnx, resnet20.onnx,
trained with tools/train_onnx_nets.py): they import, have the shape the issue asks for,
compute what onnx's reference evaluator computes, and their compiled chip runs bit-exact
with the loop reference."""

from pathlib import Path

import numpy as np
import pytest
from onnx.reference import ReferenceEvaluator

from cim_flows import onnx_io
from cim_spec.config import SystemConfig
from cim_spec.mapping import map_network, pes_needed
from cim_spec.network import Add, Conv, Dense, Pool
from golden import chip_model, data, net_float, reference
from golden.quantize import compile_model

DATA = Path(data.__file__).parent / "data"


@pytest.mark.parametrize("name", ["lenet5", "resnet6", "resnet20"])
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


def test_shipped_resnet20_has_its_shape_and_maps():
    """ResNet-20's shape (19 convs, 9 residual adds, two stride-2 stage changes with 1 x 1
    projections, a global average pool, the logits), and its mapping: more PEs than the chip
    addresses at the paper's 128 x 16 arrays, exactly examples/resnet20.toml's at 128 x 32,
    where each block has an array of its own (the slot bound is a layer's positions x 8 bits)."""
    net = onnx_io.read_onnx(DATA / "resnet20.onnx").network
    convs = [la for la in net.layers if isinstance(la, Conv)]
    assert sum(c.k == 3 for c in convs) == 19 and sum(c.k == 1 for c in convs) == 2
    assert sum(isinstance(la, Add) for la in net.layers) == 9
    assert [c.out_ch for c in convs if c.stride == 2] == [32, 32, 64, 64]
    assert isinstance(net.layers[-2], Pool) and net.shapes()[-2] == (64, 1, 1)
    assert isinstance(net.layers[-1], Dense) and net.layers[-1].n_out == 10
    assert pes_needed(SystemConfig(), net) > 256
    cfg = SystemConfig.load(Path(__file__).parents[2] / "examples" / "resnet20.toml")
    assert pes_needed(cfg, net) == cfg.n_pe
    m = map_network(cfg, net)
    assert len(m.used_pes()) == cfg.n_pe
    for name, positions in (("stem", 784), ("s1b3c2", 784), ("s2b1proj", 196), ("s3b3c2", 49)):
        assert m.slot_bound(name) == positions * cfg.input_bits
