"""Training with the update engine's rule (golden/engine_training.py) against an independent
replay: every image's logits and FC inputs from the full golden run of the chip as pulsed so
far (not the FC shortcut), the rule read element by element, the pulses through
apply_requests (tested on its own in test_update_engine.py) with the same draws."""

import numpy as np
import pytest

from cim_flows import stages
from cim_spec import device_params
from cim_spec.config import ConfigError, SystemConfig
from cim_spec.program import Chip
from golden import chip_model, data, engine_training, hybrid, transfer
from golden.update_engine import apply_requests

from .engine_reference import scalar_rule


@pytest.fixture(scope="module")
def state():
    mapping, prog = stages.ideal_program(SystemConfig(), stages.load_model())
    return transfer.program_chip(mapping, prog, device_params.load_preset("yao2020"), 3)


def replay(state, images, labels, t, margin, epochs, seed):
    cfg = state.config
    pos, neg = hybrid.fc_cells(state)
    n_out, n_in = pos.shape
    g = state.g_us.reshape(-1).copy()
    pulses = state.pulses.reshape(-1).copy()
    stuck, gain = state.stuck.reshape(-1), state.gain.reshape(-1)
    ids = hybrid.TRAIN_ID_BASE + np.arange(len(labels))
    rng = np.random.default_rng([engine_training.ENGINE_STREAM, state.seed, seed])
    acc = [[0] * n_in for _ in range(n_out)]
    net = state.mapping.network
    fc_source = net.source(net.layers.index(net.weight_layers()[-1]))
    n_req = updates = 0
    for _ in range(epochs):
        for i in rng.permutation(len(labels)):
            chip = Chip(state.mapping, device_params.to_codes(g, cfg).reshape(state.g_us.shape),
                        state.digital)
            res = chip_model.run(chip, images[i:i + 1], image_ids=ids[i:i + 1], trace=True)
            x = res.trace[fc_source].reshape(-1)
            reqs = scalar_rule(acc, t, margin, res.logits[0], int(labels[i]), x, n_in // 12, 12)
            if reqs:
                updates += 1
                n_req += len(reqs)
                apply_requests(g, pulses, reqs, pos, neg, stuck, gain, cfg, state.device, rng)
    return g, pulses, n_req, updates


@pytest.mark.parametrize("t, margin", [(64, 20000), (512, 10 ** 6)])
def test_engine_training_equals_an_independent_replay(state, t, margin):
    d = data.load_bundled()
    images, labels = d.train_images[:24], d.train_labels[:24]
    new, rep = engine_training.train(state, images, labels, t, margin, epochs=2, seed=5)
    g, pulses, n_req, updates = replay(state, images, labels, t, margin, 2, 5)
    assert rep.updates == updates and rep.requests == n_req and n_req > 0
    assert rep.pulses + rep.refused == n_req
    assert np.array_equal(new.g_us.reshape(-1), g)
    assert np.array_equal(new.pulses.reshape(-1), pulses)
    assert int((pulses - state.pulses.reshape(-1)).sum()) == rep.pulses
    entry = new.history[-1]
    assert entry == {"stage": "engine", "images": 24, "epochs": 2, "threshold": t,
                     "margin": margin, "acc_bits": 12, "seed": 5, "requests": n_req,
                     "updates": updates, "pulses": rep.pulses}
    # only the FC cells moved
    pos, neg = hybrid.fc_cells(state)
    moved = np.flatnonzero(new.g_us.reshape(-1) != state.g_us.reshape(-1))
    assert len(moved) and set(moved) <= set(pos.ravel()) | set(neg.ravel())


def test_engine_training_refuses_bad_inputs(state):
    d = data.load_bundled()
    with pytest.raises(ConfigError, match="epochs"):
        engine_training.train(state, d.train_images[:4], d.train_labels[:4], epochs=0)
    with pytest.raises(ConfigError, match="one label each"):
        engine_training.train(state, d.train_images[:4], d.train_labels[:3])
    with pytest.raises(ConfigError, match="threshold"):
        engine_training.train(state, d.train_images[:4], d.train_labels[:4], threshold=2048)
