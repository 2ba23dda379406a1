"""From a trained float network to an ideal chip: weight levels, target conductances, and the
digital parameters (ADC gains, requantization) calibrated on training images.

The ideal chip is every cell exactly at its target state, no noise: the "quantized" stage of
the accuracy table. The device model (golden.device) programs the same targets into
non-ideal cells.
"""

from __future__ import annotations

import math

import numpy as np
from threadpoolctl import threadpool_limits

from cim_spec.mapping import Mapping
from cim_spec.network import Add, Conv, Dense, Pool
from cim_spec.program import (
    Chip,
    Digital,
    Program,
    dac_inputs,
    input_step,
    requant_layers,
    target_conductance,
)
from golden import chip_model


def weight_levels(model, mapping: Mapping) -> dict[str, np.ndarray]:
    """w_q = clip(round(W / s_w), -w_max, w_max), flattened to the layer's input-vector order."""
    cfg = mapping.config
    out = {}
    for layer in mapping.network.weight_layers():
        w = np.asarray(model.weights[layer.name], dtype=np.float64)
        q = np.clip(np.rint(w / model.weight_scales[layer.name]), -cfg.w_max, cfg.w_max)
        out[layer.name] = q.reshape(q.shape[0], -1).astype(np.int64)
    return out


def requant_params(factor: float, mult_bits: int = 16) -> tuple[int, int]:
    """(M, S) with M / 2**S ~= factor and M of `mult_bits` bits."""
    if not factor > 0 or not math.isfinite(factor):
        raise ValueError(f"requantization factor must be positive and finite, got {factor}")
    shift = (mult_bits - 1) - math.floor(math.log2(factor))
    shift = min(max(shift, 1), 40)
    mult = int(round(factor * 2 ** shift))
    if mult >= 2 ** mult_bits:
        mult, shift = int(round(factor * 2 ** (shift - 1))), shift - 1
    return mult, shift


def scale_of(net, model, name: str | None, input_scale: float) -> float:
    """Float value of one step of the unsigned activation map that layer `name` outputs (None:
    the network's input); pools keep the scale of the map they pool."""
    while name is not None:
        i = [layer.name for layer in net.layers].index(name)
        if not isinstance(net.layers[i], Pool):
            return float(model.act_scales[name])
        name = net.source(i)
    return input_scale


def compile_model(model, mapping: Mapping, calib_images: np.ndarray, *,
                  percentile: float = 100.0, read_noise: int = 0,
                  noise_seed: int = 0) -> Program:
    """Quantize `model` for `mapping` and calibrate the ADC gains and requantization.

    Calibration runs the ideal chip layer by layer on `calib_images`: a layer's ADC full
    scale is the given percentile of its nonzero line currents, and its requantization maps
    the integer partial sums to the next layer's activation scale (the scale of the add it
    feeds, for a layer without ReLU). A bias becomes integers in partial-sum units.
    """
    cfg = mapping.config
    net = mapping.network
    levels = weight_levels(model, mapping)
    target = target_conductance(mapping, levels)
    names = [layer.name for layer in net.weight_layers()]
    index = {layer.name: i for i, layer in enumerate(net.layers)}
    s_input = input_step(cfg.input_bits)
    in_scale = {name: scale_of(net, model, net.source(index[name]), s_input) for name in names}
    biases = getattr(model, "biases", {}) or {}

    gains = {n: 1 for n in names}
    rq = requant_layers(net)
    mults = {n: 1 for n in rq}
    shifts = {n: 1 for n in rq}
    for layer in net.layers:
        if isinstance(layer, Add) and not net.is_signed(layer.other):   # to its scale
            mults[layer.name], shifts[layer.name] = requant_params(
                scale_of(net, model, layer.other, s_input) / model.act_scales[layer.name])
    bias_int = {layer.name: (0,) * (layer.out_ch if isinstance(layer, Conv) else layer.n_out)
                for layer in net.weight_layers() if layer.bias}
    frac = 2 ** cfg.adc_gain_frac_bits
    logit_scale = 1.0
    # One pass: a layer's outputs depend only on the parameters of the weight layers before
    # it (and the adds' rescaling, set above), which are final when it runs; so each layer
    # is calibrated on the maps it reads, then run once with its own parameters. Every map
    # is kept until the last layer that reads it (a residual add's shortcut included).
    images = dac_inputs(chip_model.check_images(calib_images, net.input_shape), cfg.input_bits)
    last_read = {}
    for i, layer in enumerate(net.layers):
        for name in (net.source(i), layer.other if isinstance(layer, Add) else None):
            if name is not None:
                last_read[name] = i
    outs: dict[str, np.ndarray] = {}
    chip = Chip(mapping, target, Digital(dict(gains), dict(mults), dict(shifts),
                                         bias=dict(bias_int)))
    for i, layer in enumerate(net.layers):
        src = net.source(i)
        a = images if src is None else outs[src]
        if isinstance(layer, (Conv, Dense)):
            name = layer.name
            x = (chip_model.conv_patches(a, layer.k, layer.stride, layer.pad)
                 if isinstance(layer, Conv) else a.reshape(a.shape[0], 1, -1))
            full_scale = _full_scale(chip, mapping.blocks_of(name), x, percentile)
            gains[name] = max(1, int(math.floor(cfg.adc_max * frac / full_scale)))
            unit = in_scale[name] * model.weight_scales[name] * frac / (gains[name]
                                                                        * cfg.state_step_code)
            if layer.bias:
                b = np.rint(np.asarray(biases[name], dtype=np.float64) / unit)
                bias_int[name] = tuple(int(v) for v in np.clip(b, -2 ** 31, 2 ** 31 - 1))
            if name == names[-1]:
                logit_scale = unit
                break
            # A layer without ReLU feeds an add: it is requantized to the add's scale.
            out = name if layer.relu else net.consumers(name)[0]
            mults[name], shifts[name] = requant_params(unit / model.act_scales[out])
            chip = Chip(mapping, target, Digital(dict(gains), dict(mults), dict(shifts),
                                                 bias=dict(bias_int)))
        other = outs[layer.other] if isinstance(layer, Add) else None
        outs[layer.name] = chip_model.run_layer(chip, i, a, other)
        for done in [k for k in outs if last_read.get(k, -1) <= i]:
            del outs[done]
    digital = Digital(gains, mults, shifts, read_noise=read_noise, noise_seed=noise_seed,
                      bias=bias_int)
    return Program(levels, target, digital, logit_scale, dict(model.weight_scales), in_scale)


# Images per step of the calibration's line currents: bounds their memory (the percentile
# is of the whole set, whatever the split).
CURRENT_IMAGES = 32


def _full_scale(chip: Chip, blocks, x: np.ndarray, percentile: float) -> float:
    """The ADC full scale of a layer: the percentile of the nonzero line currents of its
    blocks over the input vectors x (N, P, n_in), at least 1."""
    cfg = chip.config
    top = percentile >= 100.0       # the maximum: no need to keep every current
    kept, peak = [], 0.0
    with threadpool_limits(1, user_api="blas"):
        for b in blocks:
            g = chip.block_conductance(b)
            for s in range(0, x.shape[0], CURRENT_IMAGES):
                cur = chip_model.line_currents(x[s:s + CURRENT_IMAGES, :, b.in0:b.in0 + b.n_in],
                                               g, cfg.input_bits)
                nz = cur[cur > 0]
                if top:
                    peak = max(peak, float(nz.max())) if nz.size else peak
                else:
                    kept.append(nz)
    if top:
        return max(peak, 1.0)
    allc = np.concatenate(kept) if kept else np.zeros(0)
    return max(float(np.percentile(allc, percentile)) if allc.size else 1.0, 1.0)


def layer_inputs(chip: Chip, images: np.ndarray, layer_index: int) -> np.ndarray:
    """Input vectors (N, P, n_in) that weight layer `layer_index` reads, on this chip."""
    net = chip.mapping.network
    images = chip_model.check_images(images, net.input_shape)
    target = net.weight_layers()[layer_index]
    src = net.source(net.layers.index(target))
    if src is None:
        a = dac_inputs(images, chip.config.input_bits)
    else:
        a = chip_model.run(chip, images, trace=True).trace[src]
    if isinstance(target, Conv):
        return chip_model.conv_patches(a, target.k, target.stride, target.pad)
    return a.reshape(a.shape[0], 1, -1)
