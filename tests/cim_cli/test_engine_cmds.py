"""`cim hybrid --engine`: misuse refused in one line with exit status 2 before any work; the
state it writes is engine_training.train's on the same images, its history records the rule;
`cim eval` and `cim energy --chip` read it."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest

from cim_cli.main import main
from cim_flows import engine_energy, stages
from cim_spec import chipstate
from golden import data, engine_training


def _run(*argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(list(argv))
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def chip(tmp_path_factory):
    stem = tmp_path_factory.mktemp("engine") / "chip"
    assert _run("program", "--seed", "2", "--out", str(stem), "--json")[0] == 0
    return stem


@pytest.mark.parametrize("extra, message", [
    (["--threshold", "0"], "--threshold must be in (0,"),
    (["--threshold", "2048"], "an integer in 1..2047"),
    (["--threshold", "100.5"], "an integer in 1..2047 (12-bit accumulators), got 100.5"),
    (["--margin", "-1"], "--margin must be an integer in 0..16777215"),
    (["--margin", str(1 << 24)], "--margin must be an integer in 0..16777215"),
    (["--lr", "0.1"], "--lr does not apply with --engine"),
    (["--batch", "10", "--lr", "0.1"], "--batch/--lr do not apply with --engine"),
    (["--on", "board"], "--on board"),
    (["--epochs", "0"], "--epochs must be"),
])
def test_bad_engine_parameters_refused(chip, tmp_path, extra, message):
    out = tmp_path / "e"
    rc, _, err = _run("hybrid", "--chip", str(chip), "--engine", "--out", str(out), *extra)
    assert rc == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not out.with_suffix(".json").exists() and not out.with_suffix(".npz").exists()


def test_margin_needs_engine(chip, tmp_path):
    rc, _, err = _run("hybrid", "--chip", str(chip), "--margin", "5", "--out",
                      str(tmp_path / "e"))
    assert rc == 2 and "--margin applies only with --engine" in err


def test_cli_equals_engine_training(chip, tmp_path):
    out = tmp_path / "e"
    rc, text, _ = _run("hybrid", "--chip", str(chip), "--engine", "--images", "80",
                       "--epochs", "2", "--threshold", "128", "--margin", "20000", "--seed", "4",
                       "--out", str(out), "--json")
    assert rc == 0
    res = json.loads(text)
    state = chipstate.load(chip)
    images, labels = stages.hybrid_subset(data.load(None), None, 80, 4)
    want, rep = engine_training.train(state, images, labels, 128, 20000, 2, 4)
    got = chipstate.load(out)
    assert np.array_equal(got.g_us, want.g_us) and np.array_equal(got.pulses, want.pulses)
    assert np.array_equal(got.codes, want.codes)
    assert got.history == want.history and got.stage == "engine"
    assert rep.pulses > 0 and res["pulses"] == rep.pulses and res["updates"] == rep.updates
    assert res["mode"] == "engine" and (res["threshold"], res["margin"]) == (128, 20000)
    assert got.history[-1]["requests"] == rep.requests
    # the defaults are engine_training's
    rc, text, _ = _run("hybrid", "--chip", str(chip), "--engine", "--images", "20",
                       "--epochs", "1", "--out", str(tmp_path / "d"), "--json")
    d = json.loads(text)
    assert rc == 0 and (d["threshold"], d["margin"]) == (engine_training.DEFAULT_THRESHOLD,
                                                         engine_training.DEFAULT_MARGIN)
    # eval reads the state; energy shows the run from its history
    rc, text, _ = _run("eval", "--chip", str(out), "--limit", "50", "--json")
    assert rc == 0 and json.loads(text)["stage"] == "engine"
    rc, text, _ = _run("energy", "--chip", str(out), "--json")
    assert rc == 0
    e = json.loads(text)["engine"]
    closed = engine_energy.engine_figures(got.config, run=got.history[-1])
    assert e["run"]["energy_pj"] == pytest.approx(closed["run"]["energy_pj"])
    assert e["run"]["per_update_pj"] == pytest.approx(closed["run"]["per_update_pj"])
    assert e["run"]["pulses"] == rep.pulses and e["run"]["updates"] == rep.updates
    # a state without an engine run: its network's figures, the engine's per event only
    rc, text, _ = _run("energy", "--chip", str(chip), "--json")
    out = json.loads(text)
    assert rc == 0 and "run" not in out["engine"] and set(out["systems"]) == {"1"}
    assert any("no update engine run" in n for n in out["inputs"])
    from cim_flows import energy
    assert out["systems"]["1"]["energy_total_pj"] == pytest.approx(
        energy.system(got.config)["energy_total_pj"])
