"""From a trained float network to an ideal chip: weight levels, target conductances, and the
digital parameters (ADC gains, requantization) calibrated on training images.

The ideal chip is every cell exactly at its target state, no noise: the "quantized" stage of
the accuracy table. The device model (golden.device) programs the same targets into
non-ideal cells.
"""

from __future__ import annotations

import math

import numpy as np

from cim_spec.mapping import Mapping
from cim_spec.network import Conv
from cim_spec.program import (
    Chip,
    Digital,
    Program,
    dac_inputs,
    input_step,
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


def compile_model(model, mapping: Mapping, calib_images: np.ndarray, *,
                  percentile: float = 100.0, read_noise: int = 0,
                  noise_seed: int = 0) -> Program:
    """Quantize `model` for `mapping` and calibrate the ADC gains and requantization.

    Calibration runs the ideal chip layer by layer on `calib_images`: a layer's ADC full
    scale is the given percentile of its nonzero line currents, and its requantization maps
    the integer partial sums to the next layer's activation scale.
    """
    cfg = mapping.config
    net = mapping.network
    levels = weight_levels(model, mapping)
    target = target_conductance(mapping, levels)
    names = [layer.name for layer in net.weight_layers()]
    in_scale = {}
    s = input_step(cfg.input_bits)
    for name in names:
        in_scale[name] = s
        s = model.act_scales.get(name, None) if name != names[-1] else None

    gains = {n: 1 for n in names}
    mults = {n: 1 for n in names[:-1]}
    shifts = {n: 1 for n in names[:-1]}
    frac = 2 ** cfg.adc_gain_frac_bits
    logit_scale = 1.0
    for li, name in enumerate(names):
        digital = Digital(dict(gains), dict(mults), dict(shifts))
        chip = Chip(mapping, target, digital)
        x = layer_inputs(chip, calib_images, li)
        currents = []
        for b in mapping.blocks_of(name):
            cur = chip_model.line_currents(x[:, :, b.in0:b.in0 + b.n_in],
                                           chip.block_conductance(b), cfg.input_bits)
            currents.append(cur[cur > 0])
        allc = np.concatenate(currents) if currents else np.zeros(1)
        full_scale = max(float(np.percentile(allc, percentile)) if allc.size else 1.0, 1.0)
        gains[name] = max(1, int(math.floor(cfg.adc_max * frac / full_scale)))
        unit = in_scale[name] * model.weight_scales[name] * frac / (gains[name]
                                                                    * cfg.state_step_code)
        if name == names[-1]:
            logit_scale = unit
        else:
            act = model.act_scales[name]
            mults[name], shifts[name] = requant_params(unit / act)
    digital = Digital(gains, mults, shifts, read_noise=read_noise,
                                 noise_seed=noise_seed)
    return Program(levels, target, digital, logit_scale, dict(model.weight_scales), in_scale)


def layer_inputs(chip: Chip, images: np.ndarray, layer_index: int) -> np.ndarray:
    """Input vectors (N, P, n_in) that weight layer `layer_index` reads, on this chip."""
    net = chip.mapping.network
    images = chip_model.check_images(images, net.input_shape)
    wl = net.weight_layers()
    target = wl[layer_index]
    if layer_index == 0:
        a = dac_inputs(images, chip.config.input_bits)
    else:
        prev = net.layers[net.layers.index(target) - 1]
        a = chip_model.run(chip, images, trace=True).trace[prev.name]
    if isinstance(target, Conv):
        return chip_model.conv_patches(a, target.k)
    return a.reshape(a.shape[0], 1, -1)
