"""Float forward and backward of any :class:`cim_spec.network.Network`: stride, zero padding,
biases, max and average pooling (ceil or floor mode), layers that read an earlier layer
(``src``) and residual adds, with the fake quantization of :mod:`golden.float_model`.

:mod:`golden.float_model` stays the model of the mCNN-shaped networks (its training is what
produced the bundled weights); this module has the same interface (``init_params``,
``forward``, ``loss_and_grads``, ``relu_outputs``, ``accuracy``, ``calibrate_act_scales``) for
every network, with maps kept as (N, C, H, W). Parameters are ``{layer: weight}`` plus
``{layer + ".bias": bias}`` for the layers with a bias.

Fake quantization: weights ``clip(round(W / s_w), -7, 7) * s_w``; every activation map (a
ReLU layer's, an add's) ``clip(round(a / s_a), 0, 255) * s_a``. A layer without ReLU (the
input of an add) is not quantized on its own: the add's output is.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from cim_spec.network import Add, Conv, Network, Pool, pool_out, weight_shape
from golden.float_model import (
    A_LEVELS,
    QuantSpec,
    batched_act_scales,
    batched_predict,
    fake_quant_act,
    fake_quant_weight,
    images_to_input,
    softmax_xent,
    weight_scale,
)

__all__ = ["A_LEVELS", "QuantSpec", "images_to_input", "weight_scale"]   # as float_model's


def bias_key(name: str) -> str:
    return f"{name}.bias"


def init_params(net: Network, seed: int = 0, dtype=np.float32) -> dict[str, np.ndarray]:
    """He-normal weights, zero biases."""
    rng = np.random.default_rng(seed)
    params = {}
    for layer in net.weight_layers():
        shape = weight_shape(layer)
        fan_in = int(np.prod(shape[1:]))
        params[layer.name] = (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(dtype)
        if layer.bias:
            params[bias_key(layer.name)] = np.zeros(shape[0], dtype)
    return params


def _cols(x: np.ndarray, k: int, stride: int, pad: int) -> np.ndarray:
    """(N, C, H, W) -> (N, Ho, Wo, C*k*k) patches, channel-major then (dy, dx)."""
    if pad:
        x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    win = sliding_window_view(x, (k, k), axis=(2, 3))[:, :, ::stride, ::stride]
    n, c, ho, wo = win.shape[:4]
    return win.transpose(0, 2, 3, 1, 4, 5).reshape(n, ho, wo, c * k * k)


def _col2im(dcols: np.ndarray, shape, k: int, stride: int, pad: int) -> np.ndarray:
    n, c, h, w = shape
    _, ho, wo, _ = dcols.shape
    d = dcols.reshape(n, ho, wo, c, k, k)
    dx = np.zeros((n, c, h + 2 * pad, w + 2 * pad), dcols.dtype)
    for dy in range(k):
        for dxx in range(k):
            dx[:, :, dy:dy + stride * (ho - 1) + 1:stride,
               dxx:dxx + stride * (wo - 1) + 1:stride] += d[..., dy, dxx].transpose(0, 3, 1, 2)
    return dx[:, :, pad:pad + h, pad:pad + w]


def _pool_windows(x: np.ndarray, layer: Pool, fill: float):
    n, c, h, w = x.shape
    k, s = layer.k, layer.stride
    ho, wo = pool_out(h, k, s, layer.ceil), pool_out(w, k, s, layer.ceil)
    hp, wp = max((ho - 1) * s + k, h), max((wo - 1) * s + k, w)
    xp = np.full((n, c, hp, wp), fill, dtype=x.dtype)
    xp[:, :, :h, :w] = x
    return xp, ho, wo


def _pool_forward(x: np.ndarray, layer: Pool):
    k, s = layer.k, layer.stride
    n, c, h, w = x.shape
    if layer.mode == "max":
        xp, ho, wo = _pool_windows(x, layer, -np.inf)
    else:
        xp, ho, wo = _pool_windows(x, layer, 0.0)
    ones, _, _ = _pool_windows(np.ones((1, 1, h, w), x.dtype), layer, 0.0)
    y = arg = None
    count = np.zeros((ho, wo), x.dtype)
    for i in range(k):
        for j in range(k):
            sl = (slice(i, i + (ho - 1) * s + 1, s), slice(j, j + (wo - 1) * s + 1, s))
            v = xp[(slice(None), slice(None), *sl)]
            count += ones[0, 0][sl]
            if layer.mode == "avg":
                y = v.copy() if y is None else y + v
            elif y is None:
                y, arg = v.copy(), np.zeros(v.shape, np.int16)
            else:
                better = v > y
                np.copyto(y, v, where=better)
                np.copyto(arg, np.int16(i * k + j), where=better)
    if layer.mode == "avg":
        y = y / count
    return y, (arg, count, xp.shape)


def _pool_backward(g: np.ndarray, layer: Pool, aux, x_shape) -> np.ndarray:
    arg, count, padded = aux
    k, s = layer.k, layer.stride
    _, _, ho, wo = g.shape
    dxp = np.zeros(padded, g.dtype)
    for i in range(k):
        for j in range(k):
            part = g / count if layer.mode == "avg" else np.where(arg == i * k + j, g, 0)
            dxp[:, :, i:i + (ho - 1) * s + 1:s, j:j + (wo - 1) * s + 1:s] += part
    return dxp[:, :, :x_shape[2], :x_shape[3]]


def _run(net: Network, params: Mapping[str, np.ndarray], x: np.ndarray,
         quant: QuantSpec | None, keep: bool):
    dtype = np.result_type(*(params[layer.name] for layer in net.weight_layers()))
    x = np.asarray(x, dtype=dtype)
    if x.ndim != 4 or x.shape[1:] != tuple(net.input_shape):
        raise ValueError(f"input must be (N, {', '.join(map(str, net.input_shape))}), "
                         f"got {x.shape}")
    act_names = set(net.act_layers())
    outs: dict[str, np.ndarray] = {}
    cache, acts = {}, {}
    last = net.layers[-1].name
    for i, layer in enumerate(net.layers):
        src = net.source(i)
        h = x if src is None else outs[src]
        if isinstance(layer, Pool):
            z, aux = _pool_forward(h, layer)
            cache[layer.name] = (aux, h.shape) if keep else None
            outs[layer.name] = z.astype(dtype, copy=False)
            continue
        if isinstance(layer, Add):
            z = h + outs[layer.other]
        else:
            w = params[layer.name]
            if quant is not None:
                w = fake_quant_weight(w, quant.w_scale(layer.name, w), quant.w_levels)
            if isinstance(layer, Conv):
                cols = _cols(h, layer.k, layer.stride, layer.pad)
                z = (cols @ w.reshape(len(w), -1).T).transpose(0, 3, 1, 2)
            else:
                cols = h.reshape(len(h), -1)
                z = cols @ w.T
            if layer.bias:
                b = params[bias_key(layer.name)]
                z = z + (b[None, :, None, None] if z.ndim == 4 else b[None, :])
            z = z.astype(dtype, copy=False)
        mask = None
        if layer.name in act_names:
            a = np.maximum(z, 0)
            acts[layer.name] = a
            mask = z > 0
            if quant is not None:
                s = float(quant.act_scales[layer.name])
                mask &= z <= quant.a_levels * s
                a = fake_quant_act(a, s, quant.a_levels)
            z = a
        if keep:
            cache[layer.name] = (h.shape, None if isinstance(layer, Add) else cols,
                                 None if isinstance(layer, Add) else w, mask)
        outs[layer.name] = z
    return outs[last], cache, acts


def forward(net: Network, params, x, quant: QuantSpec | None = None) -> np.ndarray:
    return _run(net, params, x, quant, keep=False)[0]


def relu_outputs(net: Network, params, x, quant: QuantSpec | None = None) -> dict:
    """Every activation map before its quantization (ReLU layers and adds), NCHW."""
    return _run(net, params, x, quant, keep=False)[2]


def loss_and_grads(net: Network, params, x, labels, quant: QuantSpec | None = None,
                   relu_out: dict | None = None):
    """Mean softmax cross-entropy, the gradient of every parameter (straight-through for the
    quantizers), and the logits."""
    logits, cache, acts = _run(net, params, x, quant, keep=True)
    if relu_out is not None:
        relu_out.update(acts)
    loss, g = softmax_xent(logits, np.asarray(labels))
    grad_out = {net.layers[-1].name: g}
    grads = {}
    for i in range(len(net.layers) - 1, -1, -1):
        layer = net.layers[i]
        g = grad_out.pop(layer.name, None)
        if g is None:
            continue
        src = net.source(i)

        def send(name, d):
            if name is not None:
                grad_out[name] = grad_out[name] + d if name in grad_out else d

        if isinstance(layer, Pool):
            aux, shape = cache[layer.name]
            send(src, _pool_backward(g, layer, aux, shape))
            continue
        shape, cols, w, mask = cache[layer.name]
        if mask is not None:
            g = g * mask
        if isinstance(layer, Add):
            send(src, g)
            send(layer.other, g)
            continue
        if layer.bias:
            grads[bias_key(layer.name)] = g.sum(axis=(0, 2, 3) if g.ndim == 4 else 0)
        if isinstance(layer, Conv):
            g2 = np.ascontiguousarray(g.transpose(0, 2, 3, 1)).reshape(-1, len(w))
            # A contiguous left operand: numpy's matmul leaves BLAS for a strided one (~80x).
            grads[layer.name] = (np.ascontiguousarray(g2.T) @ cols.reshape(len(g2), -1))\
                .reshape(w.shape)
            if src is not None:
                dcols = (g2 @ w.reshape(len(w), -1)).reshape(cols.shape)
                send(src, _col2im(dcols, shape, layer.k, layer.stride, layer.pad))
        else:
            grads[layer.name] = np.ascontiguousarray(g.T) @ cols
            if src is not None:
                send(src, (g @ w).reshape(shape))
    return loss, grads, logits


def predict(net: Network, params, x, quant: QuantSpec | None = None, batch: int = 500):
    return batched_predict(forward, net, params, x, quant, batch)


def accuracy(net: Network, params, images, labels, quant: QuantSpec | None = None,
             batch: int = 500) -> float:
    pred = predict(net, params, images, quant, batch)
    return float(np.mean(pred == np.asarray(labels))) if len(pred) else 0.0


def calibrate_act_scales(net: Network, params, x, percentile: float = 99.99,
                         quant: QuantSpec | None = None, batch: int = 500) -> dict[str, float]:
    """Activation scales ``percentile(activation) / 255`` per activation map, over ``x``."""
    return batched_act_scales(relu_outputs, net.act_layers(), net, params, x, percentile,
                              quant, batch)


def model_params(model) -> dict[str, np.ndarray]:
    """The parameters of a :class:`golden.model_file.TrainedModel` in this module's layout."""
    params = {k: np.asarray(v, np.float32) for k, v in model.weights.items()}
    params.update({bias_key(k): np.asarray(v, np.float32) for k, v in model.biases.items()})
    return params


def uses(net: Network) -> bool:
    """Whether `net` needs this module (golden.float_model covers the rest)."""
    return not net.is_sequential()

