"""Hybrid training with the chip's RTL in the loop (`cim hybrid --on rtl`): the same seeds
give the same chip state as on the golden model, byte for byte, with the same pulses; the
chip session returns what the golden model computes (logits and the FC inputs the chip reads
out) before and after cells are re-written through the programming port."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cim_cli.main import main
from cim_spec import chipstate, program
from golden import chip_model, data, hybrid
from testbench.chip_session import ChipSession

# Few batches on the bundled subset; enough that pulses fire in both epochs (checked).
HYBRID = ["--images", "40", "--batch", "10", "--epochs", "2", "--seed", "3", "--json"]


def _state(tmp_path, replication: int, capsys):
    stem = tmp_path / f"r{replication}"
    assert main(["program", "--seed", "5", "--replication", str(replication), "--out",
                 str(stem), "--json"]) == 0
    capsys.readouterr()
    return stem


@pytest.mark.parametrize("replication", [1, 3])
def test_rtl_loop_matches_golden_loop(tmp_path, capsys, replication):
    stem = _state(tmp_path, replication, capsys)
    outs = {}
    for on in ("golden", "rtl"):
        assert main(["hybrid", "--chip", str(stem), "--out", str(tmp_path / on), "--on", on,
                     *HYBRID]) == 0
        outs[on] = json.loads(capsys.readouterr().out)
    gold, rtl = outs["golden"], outs["rtl"]
    assert rtl["pulses"] == gold["pulses"] > 0
    assert rtl["train_accuracy"] == gold["train_accuracy"]
    assert rtl["fc_mismatches"] == rtl["input_mismatches"] == 0
    # 2 epochs of 4 batches, and a call for the last batch's writes if it changed a code.
    assert rtl["times"]["batches"] in (8, 9)
    assert rtl["times"]["writes"] > 0
    # The arrays are byte-identical; the manifests differ only in where the run was.
    assert (tmp_path / "rtl.npz").read_bytes() == (tmp_path / "golden.npz").read_bytes()
    mg = json.loads((tmp_path / "golden.json").read_text())
    mr = json.loads((tmp_path / "rtl.json").read_text())
    assert mr["history"][-1].pop("on") == "rtl"
    assert "on" not in mg["history"][-1]
    assert mr["checksum"]["arrays"] == mg["checksum"]["arrays"]
    for k in ("checksum",):
        mr.pop(k), mg.pop(k)
    assert mr == mg
    chipstate.load(tmp_path / "rtl")        # the recorded run passes the file's checks


def test_session_reads_features_and_takes_writes(tmp_path, capsys):
    state = chipstate.load(_state(tmp_path, 1, capsys))
    chip = state.chip
    d = data.load(None)
    rng = np.random.default_rng(11)
    pick = rng.choice(len(d.test_images), 6, replace=False)
    images, ids = d.test_images[pick], rng.integers(0, 2**32, 6)
    # Random codes for random FC cells (both cells of pairs) and for a few C1 cells.
    pos, neg = hybrid.fc_cells(state)
    cells = np.concatenate([rng.choice(pos.ravel(), 20), rng.choice(neg.ravel(), 20)])
    cfg = state.config
    shape = (cfg.n_pe, cfg.array_rows, cfg.array_cols)
    c1 = state.mapping.blocks_of(state.mapping.network.weight_layers()[0].name)[0]
    cells = np.concatenate([cells, [np.ravel_multi_index((c1.pe, c1.row0, 0), shape)]])
    codes = rng.integers(0, cfg.code_max + 1, len(cells))
    codes[0] = cfg.code_max         # edge values
    codes[1] = 0
    g = chip.conductance.reshape(-1).copy()
    g[cells] = codes
    after = program.Chip(chip.mapping, g.reshape(shape), chip.digital)
    with ChipSession(chip) as s:
        a = s.run(images[:3], ids[:3])
        b = s.run(images[3:], ids[3:], s.writes_for(cells, codes))
    for ans, c, sl in ((a, chip, slice(0, 3)), (b, after, slice(3, 6))):
        want = chip_model.run(c, images[sl], image_ids=ids[sl])
        np.testing.assert_array_equal(ans.logits, want.logits)
        np.testing.assert_array_equal(ans.labels, np.argmax(want.logits, axis=1))
        # The FC inputs the chip streamed out are the golden model's S4 activations.
        x = hybrid.fc_inputs(state if c is chip else _with(state, c), images[sl], ids[sl])
        np.testing.assert_array_equal(ans.features, x)
    assert s.calls == 2


def _with(state, chip):
    """`state` with `chip`'s codes as its conductances (the codes' own values)."""
    from dataclasses import replace
    return replace(state, g_us=chip.conductance * state.config.g_lsb_us)
