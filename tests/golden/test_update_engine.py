"""The golden update engine against a scalar, element-by-element reading of its rule, and
the host's pulse application against the device model's pulse response."""

import numpy as np
import pytest

from cim_spec.config import ConfigError
from golden.update_engine import EngineParams, Request, UpdateEngine

from .engine_reference import scalar_rule


def reference(p, t, margin, images):
    """Every image through the scalar rule, one shared accumulator."""
    acc = [[0] * p.n_in for _ in range(p.n_out)]
    out = [scalar_rule(acc, t, margin, logits, y, x, p.words, p.lanes, p.acc_min, p.acc_max)
           for logits, y, x in images]
    return out, np.array(acc)


@pytest.mark.parametrize("t,margin", [(1, 0), (40, 3), (127, 0)])
def test_engine_matches_scalar_reference(t, margin):
    rng = np.random.default_rng(t)
    p = EngineParams(n_out=5, n_in=12, lanes=4, input_bits=5, logit_bits=6, acc_bits=8)
    images = [(rng.integers(-4, 5, size=5), int(rng.integers(0, 7)),
               rng.integers(0, 32, size=12)) for _ in range(200)]
    eng = UpdateEngine(p, t, margin)
    got = [eng.image(*im) for im in images]
    want, acc = reference(p, t, margin, images)
    assert sum(map(len, want)) > 20
    assert got == want
    assert (eng.acc == acc).all()


def test_engine_refuses_bad_rule_and_shape():
    p = EngineParams(n_out=3, n_in=4, lanes=2, input_bits=4, acc_bits=6)
    with pytest.raises(ConfigError, match="threshold"):
        UpdateEngine(p, 32, 0)
    with pytest.raises(ConfigError, match="threshold"):
        UpdateEngine(p, 0, 0)
    with pytest.raises(ConfigError, match="margin"):
        UpdateEngine(p, 5, -1)
    with pytest.raises(ConfigError, match="multiple of lanes"):
        EngineParams(n_in=10, lanes=3)
    with pytest.raises(ConfigError, match="acc_bits"):
        EngineParams(acc_bits=9)


def test_apply_requests_picks_the_cell_and_uses_the_device_pulse():
    """Raise with the negative cell above state 0: RESET it; raise with it at state 0: SET
    the positive cell; a pair whose positive cell is at the window's top is refused. The
    pulses are golden.device.pulse's with the same draws."""
    from cim_spec import device_params
    from cim_spec.config import SystemConfig
    from golden import device
    from golden.update_engine import apply_requests
    cfg, dev = SystemConfig(), device_params.load_preset()
    pos, neg = np.array([[0, 2, 4]]), np.array([[1, 3, 5]])
    g = np.array([5.0, 12.0, 8.0, cfg.g_min_us, cfg.g_max_us, cfg.g_min_us])
    stuck, gain = np.zeros(6, dtype=np.int8), np.ones(6)
    pulses = np.zeros(6, dtype=np.int64)
    reqs = [Request(0, 0, False), Request(0, 1, False), Request(0, 2, False)]
    before = g.copy()
    applied, refused = apply_requests(g, pulses, reqs, pos, neg, stuck, gain, cfg, dev,
                                      np.random.default_rng(3))
    assert (applied, refused) == (2, 1)
    assert list(pulses) == [0, 1, 1, 0, 0, 0]
    want = device.pulse(before[[1, 2]], np.array([False, True]), gain[[1, 2]], stuck[[1, 2]],
                        dev, np.random.default_rng(3))
    assert g[1] == want[0] < before[1] and g[2] == want[1] > before[2]
    assert g[4] == before[4] and g[0] == before[0]
