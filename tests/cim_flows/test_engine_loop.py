"""The chip with its update engine on Verilator (hdl/chip_engine.py, testbench/chip_session.py)
and engine training through it (cim_flows/hybrid_loop.engine_on_rtl): labelled images in, the
chip's own pulse requests out, the host applying each through the device model and writing
the new codes back between images. Every request the chip sends is compared, in order, with
an independent replay of the golden engine loop, and the final state is byte-identical to
golden/engine_training.train's with the same seeds.

One Verilator build (replication 1, one rule): the rule is a constant of the chip.
"""

from __future__ import annotations

import json

import numpy as np

from cim_cli.main import main
from cim_flows import hybrid_loop, stages
from cim_spec import chipstate, device_params
from golden import data, engine_training, hybrid
from golden.update_engine import UpdateEngine, apply_requests
from hdl.chip_engine import EngineRule
from testbench.chip_session import ChipSession
from testbench.scoreboard import Scoreboard

# A rule that updates on about 60% of the images (a margin far above most logit gaps) and
# asks for tens of pulses per update, some of them refused at the window's edge (checked).
IMAGES, EPOCHS, THRESHOLD, MARGIN, SEED = 36, 2, 64, 20000, 2


def _state(tmp_path, capsys):
    stem = tmp_path / "r1"
    assert main(["program", "--seed", "5", "--replication", "1", "--out", str(stem),
                 "--json"]) == 0
    capsys.readouterr()
    return chipstate.load(stem)


def golden_requests(state, images, labels):
    """golden/engine_training.train's loop step by step, recording each request: rows of
    (epoch, image, out, inp, down) and the final conductances."""
    p = engine_training.engine_params(state)
    eng = UpdateEngine(p, THRESHOLD, MARGIN)
    tr = hybrid.Trainer(state, labels, hybrid.HybridParams(epochs=EPOCHS, seed=SEED))
    rng = np.random.default_rng([engine_training.ENGINE_STREAM, state.seed, SEED])
    x = hybrid.fc_inputs(state, images, tr.ids)
    chip, rows = tr.chip(), []
    for epoch in range(EPOCHS):
        for i in rng.permutation(len(labels)):
            logits = hybrid.fc_logits(chip, x[i:i + 1], tr.ids[i:i + 1])[0]
            reqs = eng.image(logits, int(labels[i]), x[i])
            rows += [(epoch, int(i), r.out, r.inp, int(r.down)) for r in reqs]
            if reqs:
                apply_requests(tr.g, tr.pulses, reqs, tr.pos, tr.neg, tr.stuck, tr.gain,
                               state.config, state.device, rng)
                chip = tr.chip()
    return np.array(rows, np.int64), tr.g


def test_engine_training_on_rtl_matches_golden(tmp_path, capsys):
    state = _state(tmp_path, capsys)
    images, labels = stages.hybrid_subset(data.load(None), None, IMAGES, 3)
    want, g_replay = golden_requests(state, images, labels)
    gold, gold_rep = engine_training.train(state, images, labels, THRESHOLD, MARGIN,
                                           epochs=EPOCHS, seed=SEED)
    # The replay is the golden run (else the comparison below would prove nothing).
    np.testing.assert_array_equal(g_replay, gold.g_us.reshape(-1))
    assert gold_rep.requests == len(want)
    # The stimulus: both directions, refusals at the window's edge, images that update and
    # images that do not, misclassified images.
    assert want[:, 4].any() and not want[:, 4].all()
    assert gold_rep.refused > 0
    assert 0 < gold_rep.updates < EPOCHS * IMAGES
    assert min(gold_rep.train_accuracy) < 1

    new, rep, checks, times, got = hybrid_loop.engine_on_rtl(
        state, images, labels, THRESHOLD, MARGIN, epochs=EPOCHS, seed=SEED, progress=False)
    sb = Scoreboard(want, want[:, 1], "requests")
    for row in got:
        sb.add(row)
    assert sb.done and not sb.mismatches, [str(mm) for mm in sb.mismatches[:5]]
    assert checks == {"fc_mismatches": 0, "input_mismatches": 0, "request_mismatches": 0,
                      "final_mismatches": 0}
    assert rep.to_dict() == gold_rep.to_dict()
    assert times.writes > 0 and times.images == EPOCHS * IMAGES
    # The final state: the same codes, and byte-identical arrays in the chip-state file.
    cfg = state.config
    np.testing.assert_array_equal(device_params.to_codes(new.g_us, cfg),
                                  device_params.to_codes(gold.g_us, cfg))
    chipstate.save(new, tmp_path / "rtl")
    chipstate.save(gold, tmp_path / "golden")
    assert (tmp_path / "rtl.npz").read_bytes() == (tmp_path / "golden.npz").read_bytes()
    assert new.history[-1] == dict(gold.history[-1], on="rtl")


def test_session_engine_requests_and_unlabelled_images(tmp_path, capsys):
    """The chip's engine from power-up, several updating images in one call (no writes
    between them), against the golden engine fed with the golden model's logits and FC
    inputs: wrong labels (every image updates, the margin being far above the gaps);
    then labels outside 0..n_out-1 (the label port's top value included), which update
    nothing and leave the accumulators as they were."""
    state = _state(tmp_path, capsys)
    d = data.load(None)
    rng = np.random.default_rng(7)
    pick = rng.choice(len(d.test_images), 5, replace=False)
    images, ids = d.test_images[pick], rng.integers(0, 2**32, 5)
    x = hybrid.fc_inputs(state, images, ids)
    logits = hybrid.fc_logits(state.chip, x, ids)
    wrong = (np.argmax(logits, axis=1) + 1 + rng.integers(0, 9, 5)) % 10
    eng = UpdateEngine(engine_training.engine_params(state), THRESHOLD, MARGIN)
    with ChipSession(state.chip, EngineRule(THRESHOLD, MARGIN)) as s:
        a = s.run(images[:3], ids[:3], labels=wrong[:3])
        b = s.run(images, ids, labels=[10, 15, 10, 15, 11])
        c = s.run(images[3:], ids[3:], labels=wrong[3:])
    np.testing.assert_array_equal(a.logits, logits[:3])
    for ans, sl in ((a, slice(0, 3)), (c, slice(3, 5))):
        want = [(j, r.out, r.inp, int(r.down)) for j, i in enumerate(range(5)[sl])
                for r in eng.image(logits[i], int(wrong[i]), x[i])]
        assert len({w[0] for w in want}) == len(ans.labels)      # every image updated
        assert ans.requests.tolist() == [list(w) for w in want]
    assert len(b.requests) == 0 and len(b.labels) == 5
    assert c.meta["updates_done"] == 10
    assert c.meta["requests_seen"] == len(a.requests) + len(c.requests)


def test_cli_engine_on_rtl_matches_golden(tmp_path, capsys):
    """`cim hybrid --engine --on rtl` (the same chip and rule as above: the same build) ends
    in the chip-state file of `cim hybrid --engine`, byte for byte; the manifests differ only
    in where the run was."""
    _state(tmp_path, capsys)
    run = ["hybrid", "--chip", str(tmp_path / "r1"), "--engine", "--threshold", str(THRESHOLD),
           "--margin", str(MARGIN), "--images", "12", "--epochs", "1", "--seed", "4", "--json"]
    outs = {}
    for on in ("golden", "rtl"):
        assert main([*run, "--on", on, "--out", str(tmp_path / on)]) == 0
        outs[on] = json.loads(capsys.readouterr().out)
    gold, rtl = outs["golden"], outs["rtl"]
    assert rtl["requests"] == gold["requests"] > 0
    assert rtl["pulses"] == gold["pulses"] and rtl["updates"] == gold["updates"]
    assert all(rtl[k] == 0 for k in ("fc_mismatches", "input_mismatches",
                                     "request_mismatches", "final_mismatches"))
    assert (tmp_path / "rtl.npz").read_bytes() == (tmp_path / "golden.npz").read_bytes()
    mg = json.loads((tmp_path / "golden.json").read_text())
    mr = json.loads((tmp_path / "rtl.json").read_text())
    assert mr["history"][-1].pop("on") == "rtl"
    for m in (mg, mr):
        m.pop("checksum")
    assert mr == mg
