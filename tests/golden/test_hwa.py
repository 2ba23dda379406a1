"""Hardware-aware training: the injected noise has the statistics of the device model's own
transfer, it enters the forward pass as intended, and training with it is deterministic."""

from __future__ import annotations

import numpy as np
import pytest

from cim_flows import stages
from cim_spec.config import SystemConfig
from cim_spec.device_params import load_preset
from cim_spec.network import MCNN
from golden import float_model as fm
from golden.data import Mnist, load_bundled
from golden.hwa import HwaNoise
from golden.train import train

CFG = SystemConfig()


@pytest.fixture(scope="module")
def transfer_errors():
    """Effective level errors of every weight of a real transfer (bundled model, yao2020,
    chip seed 5): (levels, errors), 2,928 weight pairs = 5,856 cells."""
    state = stages.transfer_state(CFG, stages.load_model(), load_preset("yao2020"), 5)
    lv, err = [], []
    for b in state.mapping.blocks:
        g = state.codes[b.pe, b.row0:b.row0 + b.n_rows, :b.n_in].astype(np.int64)
        t = state.target[b.pe, b.row0:b.row0 + b.n_rows, :b.n_in].astype(np.int64)
        err.append((((g[0::2] - g[1::2]) - (t[0::2] - t[1::2])) / CFG.state_step_code).ravel())
        lv.append(state.levels[b.layer][:, b.in0:b.in0 + b.n_in].ravel())
    return np.concatenate(lv).astype(np.int64), np.concatenate(err)


def test_injected_error_matches_the_transfer(transfer_errors):
    levels, measured = transfer_errors
    hwa = HwaNoise.from_device(load_preset("yao2020"), CFG, seed=11)
    drawn = np.concatenate([hwa.level_error(levels) for _ in range(4)])
    # The bulk: spread and quantiles of the level error agree (the transfer's std is ~0.55
    # levels: 0.9 uS per cell, two cells, 2.5 uS per level).
    assert 0.45 < measured.std() < 0.7
    assert abs(drawn.std() - measured.std()) < 0.1 * measured.std()
    assert abs(drawn.mean() - measured.mean()) < 0.05
    q = [5, 25, 50, 75, 95]
    np.testing.assert_allclose(np.percentile(drawn, q), np.percentile(measured, q), atol=0.1)
    # Per level: the error depends on the states of the pair (verify approaches from below,
    # the pulse step shrinks towards the range's ends); compare where both have enough pairs.
    for v in (0, 1, -1, 2, -2):
        m = np.tile(levels == v, 4)
        if (levels == v).sum() >= 150:
            assert abs(drawn[m].std() - measured[levels == v].std()) < 0.15
    # Stuck cells: the table holds them at the preset's rate (a stuck-on cell, 25 uS, sits
    # far above every state; a stuck-off one, 1 uS, far below state 1).
    p = load_preset("yao2020")
    far = (np.abs(hwa.errors[1:]) >= 1.5 * CFG.state_step_code).mean()
    assert far == pytest.approx(p.stuck_on_rate + p.stuck_off_rate, abs=0.0005)


def test_ideal_device_injects_nothing_and_scale_multiplies():
    ideal = HwaNoise.from_device(load_preset("ideal"), CFG, cells=64)
    assert not ideal.errors.any() and ideal.read_sigma == 0
    lv = np.arange(-7, 8).repeat(10)
    assert not ideal.level_error(lv).any()
    a = HwaNoise.from_device(load_preset("yao2020"), CFG, seed=3, cells=512)
    b = HwaNoise.from_device(load_preset("yao2020"), CFG, seed=3, cells=512, scale=2.0)
    np.testing.assert_array_equal(2 * a.level_error(lv), b.level_error(lv))
    with pytest.raises(ValueError, match="scale"):
        HwaNoise.from_device(load_preset("yao2020"), CFG, scale=-1.0)


def test_forward_adds_the_drawn_level_error():
    """A table whose cells all sit exactly `s` codes above state s makes every weight
    (1 + 1/step) times its quantized value: the forward pass must equal the fake-quantized
    network with those weights."""
    model = stages.load_model()
    n = 16
    errors = np.arange(CFG.cell_states)[:, None].repeat(n, axis=1)
    hwa = HwaNoise(errors, CFG.state_step_code, 1.0, 0.0)
    f = 1 + 1 / CFG.state_step_code
    quant = fm.QuantSpec(dict(model.weight_scales), dict(model.act_scales), hwa=hwa)
    scaled = {k: fm.fake_quant_weight(w, model.weight_scales[k]) * np.float32(f)
              for k, w in model.weights.items()}
    ref = fm.QuantSpec({k: s * f for k, s in model.weight_scales.items()},
                       dict(model.act_scales))
    x = fm.images_to_input(load_bundled().test_images[:20])
    np.testing.assert_allclose(fm.forward(MCNN, model.weights, x, quant),
                               fm.forward(MCNN, scaled, x, ref), rtol=1e-4, atol=1e-4)


def test_read_noise_statistics():
    hwa = HwaNoise(np.zeros((8, 4), np.int64), 20.0, 1.0, 0.01,
                   rng=np.random.default_rng(1))
    rng = np.random.default_rng(2)
    x = rng.random((4000, 30)).astype(np.float64)
    levels = rng.integers(-7, 8, (5, 30))
    noise = hwa.read_noise(x, levels, 0.1)
    expect = 0.01 * 0.1 * (x @ (np.abs(levels) + 2).T) / np.sqrt(2)
    z = noise / expect
    assert abs(z.mean()) < 0.03 and abs(z.std() - 1) < 0.03


def test_hwa_training_smoke_deterministic():
    b = load_bundled()
    small = Mnist(b.train_images[:300], b.train_labels[:300], b.test_images[:100],
                  b.test_labels[:100])
    init = stages.load_model()
    kw = dict(epochs=0, qat_epochs=1, seed=2, batch_size=50, calib_images=100, init=init,
              progress=False, log=None)

    def noise():
        return HwaNoise.from_device(load_preset("yao2020"), CFG, seed=2, cells=1024)

    m1 = train(MCNN, small, hwa=noise(), **kw)
    m2 = train(MCNN, small, hwa=noise(), **kw)
    plain = train(MCNN, small, **kw)
    for k in m1.weights:
        np.testing.assert_array_equal(m1.weights[k], m2.weights[k])
    assert any(not np.array_equal(m1.weights[k], plain.weights[k]) for k in m1.weights)
    assert m1.meta["hwa"]["preset"] == "yao2020" and plain.meta["hwa"] is None
    assert m1.meta["quant_accuracy"] > 0.9   # fine-tuning kept the bundled network good


def test_age_adds_only_the_random_drift():
    """Drift without random spread is undone by the gain calibration: the aged table is the
    fresh one (up to code rounding); with the spread, the error grows as sigma * log10(t)."""
    p = load_preset("yao2020")
    fresh = HwaNoise.from_device(p, CFG, seed=4, cells=2048)
    common = HwaNoise.from_device(p.with_(drift_sigma_us=0.0), CFG, seed=4, cells=2048,
                                  age_s=3.15e7)
    moving = ~(np.abs(fresh.errors) > 1.5 * CFG.state_step_code)   # not the stuck-on cells
    diff = (common.errors - fresh.errors)[moving]
    # Only the stuck cells (0.07%) move: they do not drift while their partners do, so after
    # the gain calibration a pair with one is off by the common-mode rise.
    far = np.abs(diff) > 0.5 + 0.5 / (1 - 0.02 * np.log10(1 + 3.15e7)) + 1e-9  # 2 roundings
    assert far.mean() <= p.stuck_on_rate + p.stuck_off_rate + 0.0005
    aged = HwaNoise.from_device(p, CFG, seed=4, cells=2048, age_s=3.15e7)
    spread = p.drift_sigma_us * np.log10(1 + 3.15e7) / CFG.g_lsb_us   # codes, one cell
    shrink = 1 - p.drift_rate * np.log10(1 + 3.15e7)
    extra = np.var(aged.errors[moving]) - np.var(fresh.errors[moving])
    assert extra == pytest.approx((spread / shrink) ** 2, rel=0.1)
    assert aged.describe()["age_s"] == 3.15e7
