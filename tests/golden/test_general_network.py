"""Padding, stride, biases, residual adds, average and floor-mode pooling: the vectorized
integer model against the loop reference bit for bit, the generic float model's gradients
against finite differences, and a compiled network against its float model."""

import numpy as np
import pytest

from cim_spec import program
from cim_spec.config import SystemConfig
from cim_spec.mapping import map_network
from cim_spec.network import Add, Conv, Dense, Network, Pool
from golden import chip_model, model_file, net_float, reference
from golden.quantize import compile_model

RES = Network("res", (1, 9, 9), (
    Conv("A", 1, 4, 3, pad=1, bias=True),
    Conv("B", 4, 4, 3, pad=1, bias=True, relu=False),
    Add("R", other="A"),
    Conv("D", 4, 6, 3, stride=2, pad=1, relu=False),
    Conv("P", 4, 6, 1, stride=2, src="R", bias=True, relu=False),   # a signed shortcut
    Add("R2", other="P", src="D"),
    Pool("G", 2, 2, mode="avg"),
    Pool("M", 2, 1, ceil=False),
    Dense("F", 24, 3, bias=True)))


def random_chip(net, cfg, rng, noise=0):
    mapping = map_network(cfg, net)
    g = rng.integers(0, cfg.code_max + 1, size=(cfg.n_pe, cfg.array_rows, cfg.array_cols))
    rq = program.requant_layers(net)
    dig = program.Digital(
        adc_gain={lm.name: int(rng.integers(1, 2 ** (cfg.adc_gain_frac_bits - 2)))
                  for lm in mapping.layers},
        requant_mult={n: int(rng.integers(0, 2 ** 16)) for n in rq},
        requant_shift={n: int(rng.integers(8, 24)) for n in rq},
        read_noise=noise, noise_seed=int(rng.integers(0, 2 ** 32)),
        bias={lm.name: tuple(int(v) for v in rng.integers(-3000, 3000, lm.n_out))
              for lm in mapping.layers if net.layers[[x.name for x in net.layers]
                                                     .index(lm.name)].bias})
    return program.Chip(mapping, g, dig)


@pytest.mark.parametrize("noise", [0, 3000])
@pytest.mark.parametrize("overrides", [dict(), dict(replication=2, array_cols=12),
                                       dict(adc_bits=6, input_bits=5, act_bits=5)],
                         ids=["paper", "r2", "narrow"])
def test_residual_network_matches_reference(overrides, noise):
    rng = np.random.default_rng(len(overrides) * 7 + noise)
    chip = random_chip(RES, SystemConfig(**overrides), rng, noise)
    images = rng.integers(0, 256, size=(5, 9, 9)).astype(np.uint8)
    images[0], images[1] = 0, 255
    ids = rng.integers(0, 2 ** 31, size=5)
    fast = chip_model.run(chip, images, image_ids=ids, trace=True)
    for i in range(len(images)):
        logits, trace = reference.run_image(chip, images[i][None], int(ids[i]))
        assert fast.logits[i].tolist() == logits
        for name, value in trace.items():
            assert np.asarray(fast.trace[name][i]).tolist() == value, name
    # The relu-free layers really go negative in this stimulus, and the add clamps them.
    assert (fast.trace["B"] < 0).any() and (fast.trace["R"] == 0).any()


def test_average_pool_rounds_half_up_over_the_clipped_window():
    a = np.array([[[[1, 2, 7], [0, 1, 4], [9, 9, 9]]]], dtype=np.uint8)
    out = chip_model.avg_pool(a, 2, 2)
    # windows: [1,2,0,1] = 4/4 -> 1; [7,4] = 11/2 = 5.5 -> 6; [9,9] -> 9; [9] -> 9
    assert out.tolist() == [[[[1, 6], [9, 9]]]]
    assert chip_model.avg_pool(a, 2, 2, ceil=False).tolist() == [[[[1]]]]
    assert reference._pool(a[0].tolist(), 2, 2, True, "avg") == out[0].tolist()


def test_padding_and_stride_patches():
    a = np.arange(16, dtype=np.uint8).reshape(1, 1, 4, 4)
    p = chip_model.conv_patches(a, 3, stride=2, pad=1)
    assert p.shape == (1, 4, 9)
    assert p[0, 0].tolist() == [0, 0, 0, 0, 0, 1, 0, 4, 5]
    assert p[0, 3].tolist() == [5, 6, 7, 9, 10, 11, 13, 14, 15]


def test_float_gradients_match_finite_differences():
    params = net_float.init_params(RES, 1, np.float64)
    rng = np.random.default_rng(0)
    for k in params:
        params[k] = params[k] + 0.1 * rng.standard_normal(params[k].shape)
    x, y = rng.random((3, 1, 9, 9)), np.array([0, 1, 2])
    _, grads, _ = net_float.loss_and_grads(RES, params, x, y)
    for k in params:
        for _ in range(3):
            idx = tuple(int(rng.integers(0, s)) for s in params[k].shape)
            e = 1e-6
            params[k][idx] += e
            up = net_float.loss_and_grads(RES, params, x, y)[0]
            params[k][idx] -= 2 * e
            down = net_float.loss_and_grads(RES, params, x, y)[0]
            params[k][idx] += e
            assert grads[k][idx] == pytest.approx((up - down) / (2 * e), rel=1e-4, abs=1e-8)


def small_model(net, rng, images):
    params = net_float.init_params(net, 3)
    for layer in net.weight_layers():
        if layer.bias:
            params[net_float.bias_key(layer.name)] = rng.normal(0, 0.05, weight_shape_out(layer))
    acts = net_float.calibrate_act_scales(net, params, images)
    ws = {layer.name: float(np.abs(params[layer.name]).max() / 7) for layer in net.weight_layers()}
    return model_file.TrainedModel(
        net.name, {n.name: params[n.name] for n in net.weight_layers()}, ws, acts,
        biases={n.name: params[net_float.bias_key(n.name)] for n in net.weight_layers()
                if n.bias})


def weight_shape_out(layer):
    return layer.out_ch if isinstance(layer, Conv) else layer.n_out


def test_compiled_residual_network_follows_its_float_model(tmp_path):
    rng = np.random.default_rng(4)
    images = rng.integers(0, 256, size=(40, 9, 9)).astype(np.uint8)
    model = small_model(RES, rng, images)
    model_file.save(model, tmp_path / "m.npz", RES, describe=True)
    net, back = model_file.load_any(tmp_path / "m.npz")
    assert net == RES and sorted(back.biases) == ["A", "B", "F", "P"]
    mapping = map_network(SystemConfig(), net)
    prog = compile_model(back, mapping, images)
    chip = prog.chip(mapping)
    logits = chip_model.run(chip, images).logits * prog.logit_scale
    ref = net_float.forward(net, net_float.model_params(back), images[:, None] / 255.0,
                            back.quant_spec())
    # The chip's logits follow the float model's within a few percent of their range.
    err = np.abs(logits - ref).max() / np.abs(ref).max()
    assert err < 0.1, err


def test_hybrid_training_logits_include_the_bias():
    from golden import hybrid
    rng = np.random.default_rng(9)
    chip = random_chip(RES, SystemConfig(), rng, noise=500)
    images = rng.integers(0, 256, size=(4, 9, 9)).astype(np.uint8)
    ids = np.arange(4) + 11
    run = chip_model.run(chip, images, image_ids=ids, trace=True)
    x = run.trace["M"].reshape(4, -1).astype(np.uint8)     # what F reads
    assert np.array_equal(hybrid.fc_logits(chip, x, ids), run.logits)
