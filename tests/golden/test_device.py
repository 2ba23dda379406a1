"""Device model: presets, validation, pulse response, write-verify statistics, drift."""

import math

import numpy as np
import pytest

from cim_spec import device_params
from cim_spec.config import SystemConfig
from cim_spec.device_params import DeviceError, DeviceParams
from cim_spec.noise import read_noise_from_sigma
from golden import device, drift

CFG = SystemConfig()
SHAPE = (8, 128, 16)


def random_targets(rng, shape=SHAPE):
    states = rng.integers(0, CFG.cell_states, size=shape)
    return np.vectorize(CFG.state_code)(states)


def test_bundled_presets_load_and_fit_the_paper_window():
    assert "yao2020" in device_params.available_presets()
    for name in device_params.available_presets():
        p = device_params.load_preset(name)
        assert p.name == name
        p.check_config(CFG)


def test_user_toml_by_path(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text("[device]\ntolerance_us = 0.3\nstuck_on_rate = 0\n")
    p = device_params.load_preset(path)
    assert (p.name, p.tolerance_us, p.stuck_on_rate) == ("mine", 0.3, 0.0)


@pytest.mark.parametrize("changes, message", [
    (dict(set_step_us=-0.1), "set_step_us must not be negative"),
    (dict(reset_step_us=0.0), "reset_step_us must be positive"),
    (dict(tolerance_us=float("nan")), "tolerance_us must be a finite number"),
    (dict(c2c_sigma="0.3"), "c2c_sigma must be a finite number"),
    (dict(max_pulses=0), "max_pulses must be an integer >= 1"),
    (dict(max_pulses=10.5), "max_pulses must be an integer >= 1"),
    (dict(stuck_on_rate=1.0), "stuck_on_rate must be a fraction below 1"),
    (dict(stuck_on_rate=0.6, stuck_off_rate=0.5), "stuck_on_rate \\+ stuck_off_rate"),
    (dict(g_floor_us=40.0), "g_ceil_us \\(30.0\\) must exceed g_floor_us"),
    (dict(stuck_on_us=50.0), "stuck_on_us=50.0 lies outside the device range"),
    (dict(drift_rate=2.0), "drift_rate=2.0 is beyond the supported 0..1"),
    (dict(read_noise_sigma=0.5), "read_noise_sigma=0.5 is beyond what the datapath supports"),
    (dict(name=""), "device name must be a non-empty string"),
])
def test_bad_parameters_are_refused(changes, message):
    with pytest.raises(DeviceError, match=message):
        DeviceParams(**changes)


def test_parameters_that_do_not_fit_the_configuration_are_refused():
    with pytest.raises(DeviceError, match="tolerance_us=1.3 is not below half a state step"):
        DeviceParams(tolerance_us=1.3).check_config(CFG)
    with pytest.raises(DeviceError, match="does not fit the device range"):
        DeviceParams(g_ceil_us=15.0, stuck_on_us=14.0).check_config(CFG)


@pytest.mark.parametrize("text, message", [
    ("[device]\nbogus = 1\n", "unknown device parameters \\['bogus'\\]"),
    ("[device]\ntolerance_us = -1\n", "tolerance_us must not be negative"),
    ("[device\n", "is not valid TOML"),
])
def test_bad_toml_files_are_refused(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(DeviceError, match=message):
        device_params.load_preset(path)


def test_unknown_preset_and_missing_file():
    with pytest.raises(DeviceError, match="unknown device preset 'nope'.*yao2020"):
        device_params.load_preset("nope")
    with pytest.raises(DeviceError, match="does not exist"):
        device_params.load_preset("/nonexistent/dev.toml")


def test_codes_follow_the_datapath_rule():
    g = np.array([-1.0, 0.0, 0.06, 0.07, 2.5, 2.56, 2.57, 31.875, 40.0])
    want = [min(max(round(v / CFG.g_lsb_us), 0), CFG.code_max) for v in g]
    assert device_params.to_codes(g, CFG).tolist() == want


def test_pulse_response_is_nonlinear_asymmetric_and_noisy():
    p = device_params.load_preset("yao2020")
    rng = np.random.default_rng(3)
    n = 20000
    ones, free = np.ones(n), np.zeros(n, dtype=np.int8)
    steps = {}
    for g0 in (3.0, 18.0):
        for up in (True, False):
            g = np.full(n, g0)
            d = device.pulse(g, np.full(n, up), ones, free, p, rng) - g
            steps[g0, up] = d
            # Mean step against the closed form (log-normal noise has mean 1).
            want = float(device.nominal_step(g0, up, p)) * (1 if up else -1)
            sd = abs(want) * math.sqrt(math.exp(p.c2c_sigma ** 2) - 1)
            assert abs(d.mean() - want) < 5 * sd / math.sqrt(n)
            assert d.std() > 0.5 * sd      # cycle-to-cycle noise is there
    # Nonlinear: SET steps shrink as G rises, RESET steps shrink as G falls.
    assert steps[3.0, True].mean() > 1.2 * steps[18.0, True].mean()
    assert -steps[18.0, False].mean() > 1.2 * -steps[3.0, False].mean()
    # Asymmetric: at mid-range SET and RESET steps differ (the preset's steps differ).
    mid = np.full(n, (p.g_floor_us + p.g_ceil_us) / 2)
    up = (device.pulse(mid, np.full(n, True), ones, free, p, rng) - mid).mean()
    down = (mid - device.pulse(mid, np.full(n, False), ones, free, p, rng)).mean()
    assert abs(up / down - 1) > 0.1


def test_stuck_cells_ignore_pulses():
    p = device_params.load_preset("yao2020")
    rng = np.random.default_rng(0)
    g = np.array([25.0, 1.0, 5.0])
    stuck = np.array([device_params.STUCK_ON, device_params.STUCK_OFF,
                      device_params.NOT_STUCK], dtype=np.int8)
    out = device.pulse(g, np.array([False, True, True]), np.ones(3), stuck, p, rng)
    assert out[:2].tolist() == [25.0, 1.0] and out[2] > 5.0


def test_write_verify_error_statistics_within_tolerance_and_stuck_rate():
    p = device_params.load_preset("yao2020")
    rng = np.random.default_rng(11)
    g0, stuck, gain = device.fresh_cells(SHAPE, p, rng)
    target = random_targets(rng) * CFG.g_lsb_us
    res = device.write_verify(g0, target, gain, stuck, p, rng)
    n = stuck.size
    for marker, rate in ((device_params.STUCK_ON, p.stuck_on_rate),
                         (device_params.STUCK_OFF, p.stuck_off_rate)):
        seen = float((stuck == marker).mean())
        assert abs(seen - rate) <= 5 * math.sqrt(rate * (1 - rate) / n) + 1 / n
    ok = res.verified
    # A verified cell read within the tolerance; the read itself errs by verify_read_sigma * G.
    bound = p.tolerance_us + 6 * p.verify_read_sigma * res.g_us
    assert np.all(np.abs(res.g_us - target)[ok] <= bound[ok])
    # Every healthy cell verifies within the pulse budget; stuck cells far from target do not.
    assert ok[stuck == device_params.NOT_STUCK].all()
    far = (stuck != device_params.NOT_STUCK) & (np.abs(g0 - target) > p.tolerance_us + 1.0)
    assert not ok[far].any()
    assert (res.pulses[far] == p.max_pulses).all()
    assert res.pulses.max() <= p.max_pulses
    # The residual error is a real spread, not zero, and a few % of the window at most.
    err = (res.g_us - target)[ok]
    window = CFG.g_max_us - CFG.g_min_us
    assert 0.02 * p.tolerance_us < err.std() < 0.05 * window


def test_relaxation_after_programming_has_the_preset_spread():
    p = device_params.load_preset("yao2020")
    rng = np.random.default_rng(12)
    n = 40000
    g = rng.uniform(CFG.g_min_us + 3, CFG.g_max_us - 3, size=n)   # far from the clip edges
    stuck = np.zeros(n, dtype=np.int8)
    stuck[:100] = device_params.STUCK_ON
    move = device.settle(g, stuck, p, rng) - g
    assert np.all(move[:100] == 0)
    free = move[100:]
    # Sample mean and std of normal(0, sigma): standard errors sigma/sqrt(n), sigma/sqrt(2n).
    assert abs(free.mean()) < 5 * p.relax_sigma_us / math.sqrt(free.size)
    assert abs(free.std() - p.relax_sigma_us) < 5 * p.relax_sigma_us / math.sqrt(2 * free.size)


def test_ideal_preset_lands_on_the_target_codes():
    p = device_params.load_preset("ideal")
    rng = np.random.default_rng(1)
    g0, stuck, gain = device.fresh_cells(SHAPE, p, rng)
    codes = random_targets(rng)
    res = device.write_verify(g0, codes * CFG.g_lsb_us, gain, stuck, p, rng)
    assert res.verified.all()
    g = device.settle(res.g_us, stuck, p, rng)
    assert np.array_equal(device_params.to_codes(g, CFG), codes)


def test_programming_is_reproducible_for_a_seed():
    p = device_params.load_preset("yao2020")

    def once(seed):
        rng = np.random.default_rng(seed)
        g0, stuck, gain = device.fresh_cells(SHAPE, p, rng)
        target = random_targets(np.random.default_rng(99)) * CFG.g_lsb_us
        return device.write_verify(g0, target, gain, stuck, p, rng).g_us

    assert once(5).tobytes() == once(5).tobytes()
    assert once(5).tobytes() != once(6).tobytes()


def test_read_noise_amplitude_comes_from_the_relative_sigma():
    p = device_params.load_preset("yao2020")
    assert p.read_noise_amplitude == read_noise_from_sigma(p.read_noise_sigma)
    assert DeviceParams(read_noise_sigma=0.0).read_noise_amplitude == 0


def test_drift_is_monotone_in_time_and_relaxes_towards_the_target():
    p = device_params.load_preset("yao2020").with_(drift_rate=0.05)
    rng = np.random.default_rng(2)
    g0 = rng.uniform(CFG.g_min_us, CFG.g_max_us, size=20000)
    stuck = np.zeros(g0.shape, dtype=np.int8)
    stuck[:10] = device_params.STUCK_ON
    ages = [0.0, 10.0, 1e3, 1e5]
    gs = [drift.relax(g0, stuck, t, p, seed=4) for t in ages]
    assert np.array_equal(gs[0], g0)
    d1, d2, d3 = gs[1] - gs[0], gs[2] - gs[1], gs[3] - gs[2]
    inside = (gs[3] > p.g_floor_us) & (gs[3] < p.g_ceil_us)
    # Every cell keeps its direction: monotone in time.
    assert np.all((np.sign(d1) == np.sign(d2))[inside]) and np.all((np.sign(d2) == np.sign(d3))[
        inside])
    # Closed form: G(t) - G0 = log10(1 + t/t0) * direction.
    direction = drift.drift_direction(g0, p, seed=4)
    want = g0 + math.log10(1 + 1e3 / p.drift_t0_s) * direction
    assert np.allclose(gs[2][inside & (stuck == 0)], want[inside & (stuck == 0)])
    # Expected direction: cells above the target lose conductance on average, below gain.
    hi, lo = g0 > p.drift_target_us + 2, g0 < p.drift_target_us - 2
    assert d3[hi].mean() < 0 < d3[lo].mean()
    assert np.array_equal(gs[3][:10], g0[:10])                  # stuck cells do not move
    assert np.array_equal(drift.relax(g0, stuck, 1e3, p, 4), gs[2])  # seeded
    with pytest.raises(DeviceError, match="age must be"):
        drift.relax(g0, stuck, -1.0, p, 4)
