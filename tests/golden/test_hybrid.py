"""Hybrid training on the bundled data and weights: it raises the hardware's accuracy, touches
only the FC cells, follows the threshold rule, and is reproducible."""

import json

import numpy as np
import pytest

from cim_cli.main import main
from cim_flows import stages
from cim_spec import chipstate, device_params
from cim_spec.config import ConfigError, SystemConfig
from golden import chip_model, data, hybrid, transfer


@pytest.fixture(scope="module")
def bundled():
    return data.load_bundled(), stages.load_model()


@pytest.fixture(scope="module")
def programmed(bundled):
    _, model = bundled
    mapping, prog = stages.ideal_program(SystemConfig(), model)
    return mapping, prog


def transferred(programmed, seed=2):
    mapping, prog = programmed
    return transfer.program_chip(mapping, prog, device_params.load_preset("yao2020"), seed)


def test_fc_shortcut_equals_the_full_golden_run(bundled, programmed):
    d, _ = bundled
    state = transferred(programmed)
    images = d.train_images[:40]
    ids = hybrid.TRAIN_ID_BASE + np.arange(40)
    x = hybrid.fc_inputs(state, images, ids)
    full = chip_model.run(state.chip, images, image_ids=ids)
    assert np.array_equal(hybrid.fc_logits(state.chip, x, ids), full.logits)


def test_fc_cells_are_the_fc_blocks(programmed):
    state = transferred(programmed)
    pos, neg = hybrid.fc_cells(state)
    used = transfer.layer_cells(state.mapping, "FC").reshape(-1)
    assert sorted(np.concatenate([pos.ravel(), neg.ravel()]).tolist()) == \
        np.flatnonzero(used).tolist()
    # The target of (G+ - G-) of every FC weight is its level (docs/datapath.md section 1).
    t = state.target.reshape(-1)
    step = state.config.state_step_code
    assert np.array_equal(np.rint((t[pos] - t[neg]) / step), state.levels["FC"])


def test_hybrid_training_raises_accuracy(bundled, programmed):
    d, _ = bundled
    state = transferred(programmed, seed=4)       # a chip whose transfer lost ~10 points
    test_x, test_y = d.test_images[:500], d.test_labels[:500]
    before = stages.chip_accuracy(state.chip, test_x, test_y, progress=False)
    new, rep = hybrid.train(state, d.train_images[:1000], d.train_labels[:1000],
                            hybrid.HybridParams(seed=0), progress=False)
    after = stages.chip_accuracy(new.chip, test_x, test_y, progress=False)
    # 500 test images: 3 points are 15 images, several standard errors of a paired change.
    assert after >= before + 0.03, (before, after)
    assert rep.pulses > 0 and rep.pulses == int(new.pulses.sum() - state.pulses.sum())
    # Only FC cells moved; the conv layers stay as programmed.
    fc = transfer.layer_cells(state.mapping, "FC")
    assert np.array_equal(new.g_us[~fc], state.g_us[~fc])
    assert not np.array_equal(new.g_us[fc], state.g_us[fc])
    assert new.stage == "hybrid" and new.history[0]["stage"] == "transfer"


def test_threshold_rule_and_reproducibility(bundled, programmed):
    d, _ = bundled
    state = transferred(programmed)
    images, labels = d.train_images[:200], d.train_labels[:200]
    # A threshold no accumulated want can reach: no pulse at all.
    new, rep = hybrid.train(state, images, labels,
                            hybrid.HybridParams(epochs=1, threshold_us=1e9), progress=False)
    assert rep.pulses == 0 and np.array_equal(new.g_us, state.g_us)
    p = hybrid.HybridParams(epochs=1, seed=5)
    a, _ = hybrid.train(state, images, labels, p, progress=False)
    b, _ = hybrid.train(state, images, labels, p, progress=False)
    assert a.g_us.tobytes() == b.g_us.tobytes()
    # A higher threshold fires fewer pulses.
    _, lo = hybrid.train(state, images, labels, p, progress=False)
    _, hi = hybrid.train(state, images, labels, hybrid.HybridParams(epochs=1, seed=5,
                                                                    threshold_us=1.0),
                         progress=False)
    assert hi.pulses < lo.pulses


def test_replication_3_retrains_the_shared_fc(bundled):
    d, model = bundled
    mapping, prog = stages.ideal_program(SystemConfig(replication=3), model)
    state = transfer.program_chip(mapping, prog, device_params.load_preset("yao2020"), 1)
    new, rep = hybrid.train(state, d.train_images[:100], d.train_labels[:100],
                            hybrid.HybridParams(epochs=1), progress=False)
    fc = transfer.layer_cells(mapping, "FC")
    assert rep.pulses > 0 and np.array_equal(new.g_us[~fc], state.g_us[~fc])


@pytest.mark.parametrize("changes, message", [
    (dict(epochs=0), "hybrid epochs must be an integer >= 1"),
    (dict(lr=-1.0), "hybrid lr must be a positive number"),
    (dict(threshold_us=0), "hybrid threshold_us must be a positive number"),
    (dict(batch=2.5), "hybrid batch must be an integer >= 1"),
])
def test_bad_hybrid_parameters(changes, message):
    with pytest.raises(ConfigError, match=message):
        hybrid.HybridParams(**changes)


def test_cli_program_hybrid_eval(tmp_path, capsys):
    chip = tmp_path / "t"
    assert main(["program", "--seed", "3", "--out", str(chip), "--json"]) == 0
    prog = json.loads(capsys.readouterr().out)
    assert prog["cells"] == 8 * 128 * 16 and prog["pulses"] > 0 and "failed" in prog
    assert main(["hybrid", "--chip", str(chip), "--images", "300", "--epochs", "1",
                 "--out", str(tmp_path / "h"), "--json"]) == 0
    hy = json.loads(capsys.readouterr().out)
    assert hy["images"] == 300 and hy["pulses"] > 0
    assert main(["eval", "--chip", str(tmp_path / "h.json"), "--limit", "200", "--json"]) == 0
    ev = json.loads(capsys.readouterr().out)
    assert ev["images"] == 200 and ev["stage"] == "hybrid" and 0 <= ev["accuracy"] <= 1
    assert main(["eval", "--chip", str(tmp_path / "h"), "--limit", "200", "--age", "86400",
                 "--json"]) == 0
    aged = json.loads(capsys.readouterr().out)
    assert aged["age_s"] == 86400
    loaded = chipstate.load(tmp_path / "h")
    assert loaded.history[-1]["images"] == 300
    # A damaged file is an error message and exit code 2, not a traceback.
    (tmp_path / "h.json").write_text("{")
    assert main(["eval", "--chip", str(tmp_path / "h"), "--limit", "10"]) == 2
    assert "manifest is not valid JSON" in capsys.readouterr().err
