"""Float forward/backward of a :class:`cim_spec.network.Network`, with optional fake quantization.

Generic over the network's Conv / Pool / Dense list. Parameters are ``{layer_name: weight}``
with the shapes of :func:`cim_spec.network.weight_shape`; there are no biases. Every weight layer
but the last is followed by ReLU (and, when quantizing, an 8-bit unsigned activation
quantizer); the last layer's outputs are the logits.

The public API takes and returns CHW maps (``x`` is ``(N, C, H, W)``, pixel/255). Internally
maps are kept channels-last (NHWC) so that an im2col row of a conv is already in the patch order
of the network conventions (channel-major, then (dy, dx) row-major); the flatten before a dense
layer transposes back to CHW order.

Fake quantization (:class:`QuantSpec`), with a straight-through estimator in the backward:

* weights: ``w_q = clip(round(W / s_w), -7, 7)``, effective weight ``w_q * s_w``, one scale per
  layer, by default ``s_w = max|W| / 7``;
* activations after each ReLU: ``a_q = clip(round(a / s_a), 0, 255)``, effective ``a_q * s_a``;
  the gradient passes where ``0 < a <= 255 * s_a``. Max-pooling follows the quantizer.

Hardware-aware training (``QuantSpec.hwa``, a :class:`golden.hwa.HwaNoise`): each forward pass
adds a fresh draw of the device's effective weight-level error to the quantized levels and
read noise to each weight layer's output; the backward pass uses the noisy weights and passes
the weight gradient straight through the noise.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from cim_spec.network import Conv, Network, Pool, weight_shape

if TYPE_CHECKING:
    from golden.hwa import HwaNoise

W_LEVELS = 7  # weights in -7..7 (15 levels)
A_LEVELS = 255  # activations in 0..255 (8 bits)


# ---------------------------------------------------------------------------------------------
# quantizers


def weight_scale(w: np.ndarray, levels: int = W_LEVELS, rule: str = "max") -> float:
    """A per-layer weight scale (1.0 for an all-zero layer).

    ``rule="max"``: ``max|W| / levels`` (no weight is clipped); ``rule="mse"``: the scale in
    ``[0.5, 1] * max|W| / levels`` that minimizes the squared quantization error (the largest
    weights may then be clipped to +-levels).
    """
    m = float(np.max(np.abs(w)))
    if m == 0:
        return 1.0
    if rule == "max":
        return m / levels
    if rule != "mse":
        raise ValueError(f"unknown weight-scale rule {rule!r}")
    w64 = np.asarray(w, dtype=np.float64).reshape(1, -1)
    cand = m / levels * np.linspace(0.5, 1.0, 51)[:, None]
    err = ((np.clip(np.rint(w64 / cand), -levels, levels) * cand - w64) ** 2).sum(axis=1)
    return float(cand[int(np.argmin(err)), 0])


def quantize_weight(w: np.ndarray, scale: float, levels: int = W_LEVELS) -> np.ndarray:
    """Integer weight levels ``clip(round(w / scale), -levels, levels)`` as int8."""
    return np.clip(np.rint(w / scale), -levels, levels).astype(np.int8)


def fake_quant_weight(w: np.ndarray, scale: float, levels: int = W_LEVELS) -> np.ndarray:
    """The effective weight ``w_q * scale`` in ``w``'s dtype."""
    return (np.clip(np.rint(w / scale), -levels, levels) * scale).astype(w.dtype, copy=False)


def quantize_act(a: np.ndarray, scale: float, levels: int = A_LEVELS) -> np.ndarray:
    """Unsigned activation codes ``clip(round(a / scale), 0, levels)`` as uint8 (levels<=255)."""
    return np.clip(np.rint(a / scale), 0, levels).astype(np.uint8)


def fake_quant_act(a: np.ndarray, scale: float, levels: int = A_LEVELS) -> np.ndarray:
    return (np.clip(np.rint(a / scale), 0, levels) * scale).astype(a.dtype, copy=False)


@dataclass(frozen=True)
class QuantSpec:
    """Fake-quantization settings.

    ``weight_scales`` maps every weight layer to its scale; ``None`` means "recompute
    ``max|W| / 7`` from the current weights" (used during quantization-aware training).
    ``act_scales`` maps every weight layer but the last (those followed by ReLU) to its scale.
    ``hwa``, if given, injects device noise into every forward pass (hardware-aware training).
    """

    weight_scales: Mapping[str, float] | None
    act_scales: Mapping[str, float]
    w_levels: int = W_LEVELS
    a_levels: int = A_LEVELS
    w_rule: str = "max"
    hwa: HwaNoise | None = None

    def w_scale(self, name: str, w: np.ndarray) -> float:
        if self.weight_scales is None:
            return weight_scale(w, self.w_levels, self.w_rule)
        return float(self.weight_scales[name])

    @classmethod
    def frozen(cls, net: Network, params: Mapping[str, np.ndarray],
               act_scales: Mapping[str, float], w_rule: str = "max") -> QuantSpec:
        """A spec whose weight scales are fixed from the current weights."""
        ws = {layer.name: weight_scale(params[layer.name], rule=w_rule)
              for layer in net.weight_layers()}
        return cls(ws, dict(act_scales), w_rule=w_rule)


def relu_layers(net: Network) -> list[str]:
    """Names of the weight layers followed by ReLU (all but the last), i.e. the act scales."""
    return [layer.name for layer in net.weight_layers()[:-1]]


# ---------------------------------------------------------------------------------------------
# layer kernels (NHWC)


def conv_forward(x: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Valid, stride-1 conv. ``x`` (N,H,W,C), ``w`` (O,C,k,k) -> (y (N,Ho,Wo,O), im2col)."""
    n, h, wd, c = x.shape
    o, _, k, _ = w.shape
    ho, wo = h - k + 1, wd - k + 1
    # (N, Ho, Wo, C, k, k): each row is a patch, channel-major then (dy, dx).
    cols = sliding_window_view(x, (k, k), axis=(1, 2)).reshape(n * ho * wo, c * k * k)
    y = cols @ w.reshape(o, c * k * k).T
    return y.reshape(n, ho, wo, o), cols


def conv_backward(dy: np.ndarray, cols: np.ndarray, w: np.ndarray, x_shape: tuple[int, ...],
                  need_dx: bool = True) -> tuple[np.ndarray | None, np.ndarray]:
    n, h, wd, c = x_shape
    o, _, k, _ = w.shape
    ho, wo = h - k + 1, wd - k + 1
    dy2 = dy.reshape(-1, o)
    dw = (dy2.T @ cols).reshape(w.shape)
    if not need_dx:
        return None, dw
    dcols = (dy2 @ w.reshape(o, -1)).reshape(n, ho, wo, c, k, k)
    dx = np.zeros(x_shape, dtype=dy.dtype)
    for i in range(k):
        for j in range(k):
            dx[:, i:i + ho, j:j + wo, :] += dcols[..., i, j]
    return dx, dw


def pool_forward(x: np.ndarray, k: int, s: int) -> tuple[np.ndarray, np.ndarray]:
    """Ceil-mode max-pool of ``x`` (N,H,W,C) -> (y (N,Ho,Wo,C), argmax within each window)."""
    n, h, wd, c = x.shape
    ho = -(-(h - k) // s) + 1 if h > k else 1
    wo = -(-(wd - k) // s) + 1 if wd > k else 1
    hp, wp = (ho - 1) * s + k, (wo - 1) * s + k
    if (hp, wp) != (h, wd):
        xp = np.full((n, max(hp, h), max(wp, wd), c), -np.inf, dtype=x.dtype)
        xp[:, :h, :wd] = x
    else:
        xp = x
    y = arg = None
    for i in range(k):
        for j in range(k):
            v = xp[:, i:i + (ho - 1) * s + 1:s, j:j + (wo - 1) * s + 1:s]
            if y is None:
                y, arg = v.copy(), np.zeros(v.shape, dtype=np.int16)
            else:
                better = v > y  # strict: the first maximum in row-major order wins
                np.copyto(y, v, where=better)
                np.copyto(arg, np.int16(i * k + j), where=better)
    return y, arg


def pool_backward(dy: np.ndarray, arg: np.ndarray, x_shape: tuple[int, ...], k: int,
                  s: int) -> np.ndarray:
    n, h, wd, c = x_shape
    _, ho, wo, _ = dy.shape
    hp, wp = max((ho - 1) * s + k, h), max((wo - 1) * s + k, wd)
    dxp = np.zeros((n, hp, wp, c), dtype=dy.dtype)
    for i in range(k):
        for j in range(k):
            g = np.where(arg == i * k + j, dy, 0)
            dxp[:, i:i + (ho - 1) * s + 1:s, j:j + (wo - 1) * s + 1:s] += g
    return dxp[:, :h, :wd]


# ---------------------------------------------------------------------------------------------
# network


def init_params(net: Network, seed: int = 0, dtype=np.float32) -> dict[str, np.ndarray]:
    """He-normal initialization of every weight layer."""
    rng = np.random.default_rng(seed)
    params = {}
    for layer in net.weight_layers():
        shape = weight_shape(layer)
        fan_in = int(np.prod(shape[1:]))
        params[layer.name] = (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(dtype)
    return params


def images_to_input(images: np.ndarray, dtype=np.float32) -> np.ndarray:
    """uint8 images (N,H,W) or (N,C,H,W) -> float (N,C,H,W) = pixel / 255."""
    x = np.asarray(images)
    if x.ndim == 3:
        x = x[:, None]
    return x.astype(dtype) / dtype(255)


def _run(net: Network, params: Mapping[str, np.ndarray], x: np.ndarray,
         quant: QuantSpec | None, keep: bool):
    """Forward pass; returns (logits, cache, pre-quantization ReLU outputs per layer)."""
    names = relu_layers(net)
    dtype = np.result_type(*(params[layer.name] for layer in net.weight_layers()))
    x = np.asarray(x, dtype=dtype)
    if x.ndim != 4 or x.shape[1:] != tuple(net.input_shape):
        raise ValueError(f"input must be (N, {', '.join(map(str, net.input_shape))}), "
                         f"got {x.shape}")
    h = np.ascontiguousarray(x.transpose(0, 2, 3, 1))  # NHWC
    cache, acts = [], {}
    for layer in net.layers:
        if isinstance(layer, Pool):
            shape = h.shape
            h, arg = pool_forward(h, layer.k, layer.stride)
            cache.append((layer, shape, arg) if keep else None)
            continue
        w = params[layer.name]
        if w.shape != weight_shape(layer):
            raise ValueError(f"layer {layer.name!r}: weight shape {w.shape}, expected "
                             f"{weight_shape(layer)}")
        hwa = quant.hwa if quant is not None else None
        if quant is not None:
            s_w = quant.w_scale(layer.name, w)
            w = fake_quant_weight(w, s_w, quant.w_levels)
            if hwa is not None:
                lv = np.rint(w / s_w).astype(np.int64).reshape(len(w), -1)
                w = w + (hwa.level_error(lv) * s_w).reshape(w.shape).astype(w.dtype)
        if isinstance(layer, Conv):
            shape = h.shape
            z, cols = conv_forward(h, w)
            entry = [layer, shape, cols, w]
        else:  # Dense: flatten in CHW order
            hin = h.transpose(0, 3, 1, 2).reshape(len(h), -1) if h.ndim == 4 else h
            z = hin @ w.T
            entry = [layer, h.shape, hin, w]
        if hwa is not None and hwa.read_sigma:
            z = z + hwa.read_noise(entry[2], lv, s_w).reshape(z.shape)
        if layer.name in names:
            h = np.maximum(z, 0)
            acts[layer.name] = h
            mask = z > 0
            if quant is not None:
                s = float(quant.act_scales[layer.name])
                mask &= z <= quant.a_levels * s
                h = fake_quant_act(h, s, quant.a_levels)
            entry.append(mask)
        else:
            h = z
            entry.append(None)
        cache.append(entry if keep else None)
    return h, cache, acts


def forward(net: Network, params: Mapping[str, np.ndarray], x: np.ndarray,
            quant: QuantSpec | None = None) -> np.ndarray:
    """Logits (N, n_out) of a batch ``x`` (N, C, H, W) of pixel/255 inputs."""
    return _run(net, params, x, quant, keep=False)[0]


def relu_outputs(net: Network, params: Mapping[str, np.ndarray], x: np.ndarray,
                 quant: QuantSpec | None = None) -> dict[str, np.ndarray]:
    """ReLU outputs before activation quantization, per layer, NHWC for maps (calibration)."""
    return _run(net, params, x, quant, keep=False)[2]


def softmax_xent(logits: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean softmax cross-entropy and its gradient w.r.t. the logits."""
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    p = e / e.sum(axis=1, keepdims=True)
    n = len(labels)
    idx = np.arange(n)
    loss = float(-np.mean(np.log(np.maximum(p[idx, labels], np.finfo(p.dtype).tiny))))
    p[idx, labels] -= 1
    return loss, p / n


def loss_and_grads(net: Network, params: Mapping[str, np.ndarray], x: np.ndarray,
                   labels: np.ndarray, quant: QuantSpec | None = None,
                   relu_out: dict | None = None
                   ) -> tuple[float, dict[str, np.ndarray], np.ndarray]:
    """Mean softmax cross-entropy, its gradients w.r.t. every weight (straight-through for
    the quantizers), and the logits. ``relu_out``, if given, receives the ReLU outputs before
    activation quantization (for tracking activation scales)."""
    logits, cache, acts = _run(net, params, x, quant, keep=True)
    if relu_out is not None:
        relu_out.update(acts)
    loss, g = softmax_xent(logits, np.asarray(labels))
    grads = {}
    first = 0
    for idx in range(len(cache) - 1, -1, -1):
        entry = cache[idx]
        layer = entry[0]
        if isinstance(layer, Pool):
            _, shape, arg = entry
            g = pool_backward(g, arg, shape, layer.k, layer.stride)
            continue
        _, shape, inp, w, mask = entry
        if mask is not None:
            g = g * mask
        if isinstance(layer, Conv):
            g, grads[layer.name] = conv_backward(g, inp, w, shape, need_dx=idx > first)
        else:
            grads[layer.name] = g.T @ inp
            g = g @ w
            if len(shape) == 4:
                n, hh, ww, c = shape
                g = g.reshape(n, c, hh, ww).transpose(0, 2, 3, 1)
    return loss, grads, logits


def predict(net: Network, params: Mapping[str, np.ndarray], x: np.ndarray,
            quant: QuantSpec | None = None, batch: int = 1000) -> np.ndarray:
    """Predicted classes of ``x`` (N, C, H, W) float or uint8 images (N, H, W)."""
    return batched_predict(forward, net, params, x, quant, batch)


def batched_predict(forward_fn, net, params, x, quant, batch: int) -> np.ndarray:
    """argmax of ``forward_fn(net, params, batch_of_x, quant)`` over ``x`` in batches (shared
    with golden.net_float, whose forward covers every network)."""
    if x.dtype == np.uint8:
        x = images_to_input(x)
    out = [np.argmax(forward_fn(net, params, x[i:i + batch], quant), axis=1)
           for i in range(0, len(x), batch)]
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


def accuracy(net: Network, params: Mapping[str, np.ndarray], images: np.ndarray,
             labels: np.ndarray, quant: QuantSpec | None = None, batch: int = 1000) -> float:
    """Fraction of ``images`` (uint8 (N,28,28), or float inputs) classified as ``labels``."""
    pred = predict(net, params, images, quant, batch)
    return float(np.mean(pred == np.asarray(labels))) if len(pred) else 0.0


def calibrate_act_scales(net: Network, params: Mapping[str, np.ndarray], x: np.ndarray,
                         percentile: float = 99.99, quant: QuantSpec | None = None,
                         batch: int = 1000) -> dict[str, float]:
    """Activation scales ``percentile(ReLU output) / 255`` per ReLU layer, over ``x``."""
    return batched_act_scales(relu_outputs, relu_layers(net), net, params, x, percentile,
                              quant, batch)


def batched_act_scales(relu_outputs_fn, names, net, params, x, percentile: float, quant,
                       batch: int) -> dict[str, float]:
    """``percentile / 255`` of every map ``relu_outputs_fn`` returns, averaged over batches
    weighted by their size (the batch size is part of the result: a percentile of each batch,
    not of the whole set). Shared with golden.net_float."""
    if x.dtype == np.uint8:
        x = images_to_input(x)
    vals: dict[str, list[float]] = {name: [] for name in names}
    weights: list[int] = []
    for i in range(0, len(x), batch):
        acts = relu_outputs_fn(net, params, x[i:i + batch], quant)
        weights.append(len(x[i:i + batch]))
        for name, a in acts.items():
            vals[name].append(float(np.percentile(a, percentile)))
    out = {}
    for name, v in vals.items():
        m = float(np.average(v, weights=weights))
        out[name] = m / A_LEVELS if m > 0 else 1.0 / A_LEVELS
    return out
