"""compile_model calibrates in one pass over the calibration images; the reference here is
the earlier calibration, which reran the whole chip on them once per weight layer. Both must
give the same gains, requantization, biases and scales, bit for bit."""

import math

import numpy as np
import pytest

from cim_spec.config import SystemConfig
from cim_spec.mapping import map_network
from cim_spec.network import MCNN, Add, Conv
from cim_spec.program import Chip, Digital, Program, input_step, requant_layers, target_conductance
from golden import chip_model, data, model_file
from golden.quantize import compile_model, layer_inputs, requant_params, scale_of, weight_levels

from .test_general_network import RES, small_model


def rerun_compile(model, mapping, calib_images, percentile=100.0):
    """The calibration as it was: the whole ideal chip rerun for every weight layer."""
    cfg, net = mapping.config, mapping.network
    levels = weight_levels(model, mapping)
    target = target_conductance(mapping, levels)
    names = [layer.name for layer in net.weight_layers()]
    index = {layer.name: i for i, layer in enumerate(net.layers)}
    s_input = input_step(cfg.input_bits)
    in_scale = {name: scale_of(net, model, net.source(index[name]), s_input) for name in names}
    biases = getattr(model, "biases", {}) or {}
    gains = {n: 1 for n in names}
    rq = requant_layers(net)
    mults, shifts = {n: 1 for n in rq}, {n: 1 for n in rq}
    for layer in net.layers:
        if isinstance(layer, Add) and not net.is_signed(layer.other):
            mults[layer.name], shifts[layer.name] = requant_params(
                scale_of(net, model, layer.other, s_input) / model.act_scales[layer.name])
    bias_int = {layer.name: (0,) * (layer.out_ch if isinstance(layer, Conv) else layer.n_out)
                for layer in net.weight_layers() if layer.bias}
    frac = 2 ** cfg.adc_gain_frac_bits
    logit_scale = 1.0
    for li, name in enumerate(names):
        layer = net.layers[index[name]]
        chip = Chip(mapping, target, Digital(dict(gains), dict(mults), dict(shifts),
                                             bias=dict(bias_int)))
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
        if layer.bias:
            b = np.rint(np.asarray(biases[name], dtype=np.float64) / unit)
            bias_int[name] = tuple(int(v) for v in np.clip(b, -2 ** 31, 2 ** 31 - 1))
        if name == names[-1]:
            logit_scale = unit
        else:
            out = name if layer.relu else net.consumers(name)[0]
            mults[name], shifts[name] = requant_params(unit / model.act_scales[out])
    return Program(levels, target, Digital(gains, mults, shifts, bias=bias_int), logit_scale,
                   dict(model.weight_scales), in_scale)


def assert_same(new: Program, old: Program):
    assert new.digital == old.digital
    assert new.logit_scale == old.logit_scale and new.input_scales == old.input_scales
    assert np.array_equal(new.target, old.target)
    assert all(np.array_equal(new.levels[k], old.levels[k]) for k in old.levels)


def test_mcnn_calibrates_as_the_per_layer_rerun():
    images = data.load_bundled().train_images[:48]
    mapping = map_network(SystemConfig(), MCNN)
    model = model_file.load_bundled()
    new, old = compile_model(model, mapping, images), rerun_compile(model, mapping, images)
    assert_same(new, old)
    # Every layer got its own gain (a test where they stayed 1 would prove nothing).
    assert all(g > 1 for g in new.digital.adc_gain.values())


@pytest.mark.parametrize("percentile", [100.0, 99.5])
@pytest.mark.parametrize("overrides", [dict(), dict(replication=2, array_cols=12)],
                         ids=["paper", "r2"])
def test_residual_network_calibrates_as_the_per_layer_rerun(overrides, percentile):
    # Residual adds (an activation shortcut and a signed projection), stride, padding,
    # biases, an average and a floor-mode max pool before a dense layer with a bias.
    rng = np.random.default_rng(int(percentile) + len(overrides))
    images = rng.integers(0, 256, size=(70, 9, 9)).astype(np.uint8)   # several batches
    images[0], images[1] = 0, 255
    model = small_model(RES, rng, images)
    mapping = map_network(SystemConfig(**overrides), RES)
    new = compile_model(model, mapping, images, percentile=percentile)
    old = rerun_compile(model, mapping, images, percentile=percentile)
    assert_same(new, old)
    d = new.digital
    assert len(set(d.adc_gain.values())) > 1 and any(any(b) for b in d.bias.values())
    assert d.requant_mult["R"] != 1      # the add's rescaling of its activation shortcut
