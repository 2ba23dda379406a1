"""Float model: layer kernels against slow loops, gradients against finite differences,
fake quantization, and a small training smoke test."""

from __future__ import annotations

import numpy as np
import pytest

from cim_spec.network import MCNN, Conv, Dense, Network, Pool, pool_out
from golden import float_model as fm
from golden.data import Mnist, load_bundled
from golden.train import random_shift, train

# ------------------------------------------------------------------------------ slow references


def slow_conv(x, w):
    """x (C, H, W), w (O, C, k, k) -> (O, H-k+1, W-k+1), valid, stride 1."""
    c, h, wd = x.shape
    o, _, k, _ = w.shape
    out = np.zeros((o, h - k + 1, wd - k + 1))
    for oc in range(o):
        for i in range(h - k + 1):
            for j in range(wd - k + 1):
                out[oc, i, j] = np.sum(x[:, i:i + k, j:j + k] * w[oc])
    return out


def slow_pool(x, k, s):
    """Ceil-mode max-pool of x (C, H, W): the last window of a row/column may be clipped."""
    c, h, wd = x.shape
    ho, wo = pool_out(h, k, s), pool_out(wd, k, s)
    out = np.zeros((c, ho, wo))
    for i in range(ho):
        for j in range(wo):
            out[:, i, j] = x[:, i * s:min(i * s + k, h), j * s:min(j * s + k, wd)].max(axis=(1, 2))
    return out


def slow_forward(net, params, x, quant=None):
    """One image (C, H, W) through ``net`` by the written conventions (CHW everywhere)."""
    h = np.asarray(x, dtype=np.float64)
    relu = fm.relu_layers(net)
    for layer in net.layers:
        if isinstance(layer, Pool):
            h = slow_pool(h, layer.k, layer.stride)
            continue
        w = params[layer.name].astype(np.float64)
        if quant is not None:
            s = quant.weight_scales[layer.name]
            w = np.clip(np.round(w / s), -7, 7) * s
        h = slow_conv(h, w) if isinstance(layer, Conv) else w @ h.reshape(-1)
        if layer.name in relu:
            h = np.maximum(h, 0)
            if quant is not None:
                s = quant.act_scales[layer.name]
                h = np.clip(np.round(h / s), 0, 255) * s
    return h


def nhwc(x):
    return x.transpose(0, 2, 3, 1)


# ------------------------------------------------------------------------------ layer kernels


def test_conv_matches_slow_loop():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 9, 7))
    w = rng.standard_normal((4, 3, 3, 3))
    y, cols = fm.conv_forward(nhwc(x), w)
    ref = np.stack([slow_conv(xi, w) for xi in x])
    np.testing.assert_allclose(y.transpose(0, 3, 1, 2), ref, rtol=1e-12, atol=1e-12)
    # an im2col row is the channel-major, (dy, dx) row-major patch vector
    np.testing.assert_array_equal(cols[0], x[0, :, 0:3, 0:3].reshape(-1))


@pytest.mark.parametrize("h, w, k, s", [(26, 26, 3, 3), (7, 7, 2, 2), (8, 5, 3, 2),
                                        (7, 7, 3, 2), (2, 3, 3, 3), (9, 9, 3, 3)])
def test_pool_matches_slow_loop(h, w, k, s):
    rng = np.random.default_rng(h * w + k)
    x = rng.standard_normal((2, 3, h, w))  # negative values too: padding must not win
    y, _ = fm.pool_forward(nhwc(x), k, s)
    ref = np.stack([slow_pool(xi, k, s) for xi in x])
    assert y.shape[1:3] == (pool_out(h, k, s), pool_out(w, k, s))
    np.testing.assert_array_equal(y.transpose(0, 3, 1, 2), ref)


def test_mcnn_shapes_and_forward_matches_slow_reference():
    rng = np.random.default_rng(2)
    params = fm.init_params(MCNN, seed=3, dtype=np.float64)
    x = rng.random((2, 1, 28, 28))
    logits = fm.forward(MCNN, params, x)
    assert logits.shape == (2, 10)
    for i in range(2):
        np.testing.assert_allclose(logits[i], slow_forward(MCNN, params, x[i]), rtol=1e-10)
    quant = fm.QuantSpec.frozen(MCNN, params, fm.calibrate_act_scales(MCNN, params, x))
    lq = fm.forward(MCNN, params, x, quant)
    for i in range(2):
        np.testing.assert_allclose(lq[i], slow_forward(MCNN, params, x[i], quant), rtol=1e-9)
    assert not np.allclose(lq, logits)


# ------------------------------------------------------------------------------ gradients

TINY = Network("tiny", (2, 8, 7), (
    Conv("A", 2, 3, 3),           # 3 x 6 x 5
    Pool("P", 3, 2),              # 3 x 3 x 2 (ceil mode, clipped last windows)
    Conv("B", 3, 4, 2),           # 4 x 2 x 1
    Dense("D1", 8, 5),            # hidden dense: ReLU
    Dense("D2", 5, 4),            # logits
))


def test_gradients_match_finite_differences():
    rng = np.random.default_rng(5)
    params = fm.init_params(TINY, seed=6, dtype=np.float64)
    x = rng.random((3, 2, 8, 7))
    y = np.array([0, 3, 1])
    loss, grads, _ = fm.loss_and_grads(TINY, params, x, y)
    assert set(grads) == {"A", "B", "D1", "D2"}
    eps = 1e-6
    for name, w in params.items():
        num = np.zeros_like(w)
        for i in np.ndindex(w.shape):
            old = w[i]
            w[i] = old + eps
            lp = fm.softmax_xent(fm.forward(TINY, params, x), y)[0]
            w[i] = old - eps
            lm = fm.softmax_xent(fm.forward(TINY, params, x), y)[0]
            w[i] = old
            num[i] = (lp - lm) / (2 * eps)
        np.testing.assert_allclose(grads[name], num, rtol=1e-5, atol=1e-8, err_msg=name)
    assert loss == pytest.approx(fm.softmax_xent(fm.forward(TINY, params, x), y)[0])


def test_quantized_gradients_are_straight_through():
    rng = np.random.default_rng(7)
    params = fm.init_params(TINY, seed=8, dtype=np.float64)
    x = rng.random((4, 2, 8, 7))
    y = np.array([0, 1, 2, 3])
    act = fm.calibrate_act_scales(TINY, params, x, percentile=90)
    quant = fm.QuantSpec(None, act)
    loss, grads, logits = fm.loss_and_grads(TINY, params, x, y, quant)
    np.testing.assert_allclose(logits, fm.forward(TINY, params, x, quant))
    # STE: the gradient w.r.t. W equals the gradient w.r.t. the fake-quantized weight
    qparams = {k: fm.fake_quant_weight(w, fm.weight_scale(w)) for k, w in params.items()}
    frozen = fm.QuantSpec({k: fm.weight_scale(w) for k, w in params.items()}, act)
    _, g_ref, _ = fm.loss_and_grads(TINY, qparams, x, y, frozen)
    for k in grads:
        np.testing.assert_allclose(grads[k], g_ref[k], rtol=1e-12, atol=1e-14)


# ------------------------------------------------------------------------------ quantization


def test_weight_quantization():
    rng = np.random.default_rng(9)
    w = rng.standard_normal((12, 8, 3, 3)).astype(np.float32)
    s = fm.weight_scale(w)
    assert s == pytest.approx(np.abs(w).max() / 7)
    q = fm.quantize_weight(w, s)
    assert q.dtype == np.int8 and q.min() == -7 or q.max() == 7
    assert set(np.unique(q)) <= set(range(-7, 8))
    np.testing.assert_allclose(fm.fake_quant_weight(w, s), q * np.float32(s), rtol=1e-6)
    assert np.abs(fm.fake_quant_weight(w, s) - w).max() <= s / 2 * (1 + 1e-6)
    s_mse = fm.weight_scale(w, rule="mse")
    assert 0.5 * s <= s_mse <= s
    err = {r: np.sum((fm.fake_quant_weight(w, v) - w) ** 2) for r, v in (("max", s),
                                                                          ("mse", s_mse))}
    assert err["mse"] <= err["max"]
    assert set(np.unique(fm.quantize_weight(w, s_mse))) <= set(range(-7, 8))
    assert fm.weight_scale(np.zeros(3)) == 1.0
    with pytest.raises(ValueError, match="unknown weight-scale rule"):
        fm.weight_scale(w, rule="bogus")


def test_activation_quantization():
    a = np.array([0.0, 0.004, 0.006, 1.0, 2.55, 3.0, 100.0])
    codes = fm.quantize_act(a, 0.01)
    assert codes.dtype == np.uint8
    assert codes.tolist() == [0, 0, 1, 100, 255, 255, 255]
    np.testing.assert_allclose(fm.fake_quant_act(a, 0.01), codes * 0.01)


def test_quantized_activations_are_8bit_codes():
    rng = np.random.default_rng(10)
    params = fm.init_params(MCNN, seed=11)
    x = rng.random((3, 1, 28, 28)).astype(np.float32)
    act = fm.calibrate_act_scales(MCNN, params, x, percentile=99)
    quant = fm.QuantSpec.frozen(MCNN, params, act)
    # rebuild C1's quantized output from the conv kernel and check its codes
    w = fm.fake_quant_weight(params["C1"], quant.weight_scales["C1"])
    z, _ = fm.conv_forward(nhwc(x), w)
    codes = fm.quantize_act(np.maximum(z, 0), act["C1"])
    assert codes.max() == 255 and codes.min() == 0  # the 99th percentile clips some
    raw = fm.relu_outputs(MCNN, params, x, quant)
    assert set(raw) == {"C1", "C3"}
    np.testing.assert_allclose(raw["C1"], np.maximum(z, 0), rtol=1e-6)


# ------------------------------------------------------------------------------ API / training


def test_predict_and_accuracy_on_uint8_images():
    b = load_bundled()
    params = fm.init_params(MCNN, seed=0)
    pred = fm.predict(MCNN, params, b.test_images[:50], batch=16)
    assert pred.shape == (50,) and pred.min() >= 0 and pred.max() <= 9
    acc = fm.accuracy(MCNN, params, b.test_images[:50], b.test_labels[:50], batch=16)
    assert acc == pytest.approx(np.mean(pred == b.test_labels[:50]))
    with pytest.raises(ValueError, match=r"input must be \(N, 1, 28, 28\)"):
        fm.forward(MCNN, params, np.zeros((2, 28, 28)))


def test_random_shift():
    rng = np.random.default_rng(0)
    img = np.zeros((50, 28, 28), np.uint8)
    img[:, 10:14, 10:14] = 200
    out = random_shift(img, 2, rng)
    assert out.shape == img.shape and np.all(out.sum(axis=(1, 2)) == img[0].sum())
    assert random_shift(img, 0, rng) is img


def test_training_smoke_deterministic():
    b = load_bundled()
    small = Mnist(b.train_images[:500], b.train_labels[:500], b.test_images[:200],
                  b.test_labels[:200])
    kw = dict(epochs=2, seed=4, qat_epochs=1, batch_size=25, calib_images=100,
              progress=False, log=None)
    m1 = train(MCNN, small, **kw)
    m2 = train(MCNN, small, **kw)
    for k in m1.weights:
        np.testing.assert_array_equal(m1.weights[k], m2.weights[k])
        assert m1.weights[k].dtype == np.float32
    assert m1.act_scales == m2.act_scales and set(m1.act_scales) == {"C1", "C3"}
    assert all(v > 0 for v in m1.weight_scales.values())
    assert m1.meta["train_images"] == 500 and 0 <= m1.meta["quant_accuracy"] <= 1
    assert m1.meta["float_accuracy"] > 0.3  # well above chance after 40 small steps
