"""Hybrid training with the board in the loop (`cim hybrid --on board --sim`): the simulated
board (Verilator behind a pseudo-terminal, the real protocol) ends in the same chip state as
the golden model, byte for byte; GAIN frames set the ADC gain registers as the golden model
with those gains predicts. Both tests use one board build (the same chip state)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from cim_cli.main import main
from cim_flows import board_link
from cim_spec import chipstate, link, program
from golden import data
from hdl.chip_plan import plan_chip
from testbench import board_sim

# As tests/cim_flows/test_hybrid_loop.py: few batches, pulses fire in both epochs (checked).
HYBRID = ["--images", "40", "--batch", "10", "--epochs", "2", "--seed", "3", "--json"]


def _state(tmp_path, capsys):
    stem = tmp_path / "r1"
    assert main(["program", "--seed", "5", "--out", str(stem), "--json"]) == 0
    capsys.readouterr()
    return stem


def test_board_loop_matches_golden_loop(tmp_path, capsys):
    stem = _state(tmp_path, capsys)
    outs = {}
    for on, extra in (("golden", []), ("board", ["--sim"])):
        assert main(["hybrid", "--chip", str(stem), "--out", str(tmp_path / on), "--on", on,
                     *extra, *HYBRID]) == 0
        outs[on] = json.loads(capsys.readouterr().out)
    gold, board = outs["golden"], outs["board"]
    assert board["pulses"] == gold["pulses"] > 0
    assert board["train_accuracy"] == gold["train_accuracy"]
    assert board["fc_mismatches"] == board["input_mismatches"] == 0
    assert board["times"]["batches"] in (8, 9) and board["times"]["writes"] > 0
    assert (tmp_path / "board.npz").read_bytes() == (tmp_path / "golden.npz").read_bytes()
    mg = json.loads((tmp_path / "golden.json").read_text())
    mb = json.loads((tmp_path / "board.json").read_text())
    assert mb["history"][-1].pop("on") == "board"
    assert mb["checksum"]["arrays"] == mg["checksum"]["arrays"]
    mb.pop("checksum"), mg.pop("checksum")
    assert mb == mg
    chipstate.load(tmp_path / "board")


def test_gain_frames_set_the_gain_registers(tmp_path, capsys):
    """Images with features, then new gains for every layer over the link (C1 and C3 up
    10%, FC at the register's largest value): the next images' logits and features are the
    golden model's with those gains, and differ from the old ones. A gain the register cannot
    hold and a damaged GAIN frame are refused and change nothing."""
    state = chipstate.load(_state(tmp_path, capsys))
    chip = state.chip
    names = [layer.name for layer in chip.mapping.network.weight_layers()]
    top = 2 ** plan_chip(chip).pes[0].params.gain_bits - 1
    old = chip.digital.adc_gain
    gains = {names[0]: round(old[names[0]] * 1.1), names[1]: round(old[names[1]] * 1.1),
             names[2]: top}
    new = program.Chip(chip.mapping, chip.conductance, replace(chip.digital, adc_gain=gains))
    bundle = data.load_bundled()
    images, labels = bundle.test_images[:4], bundle.test_labels[:4]
    with board_sim.simulated_board(chip) as path:
        port = board_link.Port(path)
        s = board_link.Session(port)
        try:
            run = board_link.run_images(s, chip, images[:2], labels[:2], [70, 71],
                                        timeout=120, features=True)
            assert (run.images, run.bitexact, run.lost) == (2, 2, 0), run.mismatches
            with pytest.raises(link.LinkError, match="RANGE"):
                s.set_gains([(2, top + 1)], 60)
            bad = bytearray(link.gain_frame(0, 1))
            bad[6] ^= 0x40
            s.send(bytes(bad))
            assert s.wait_for(link.Reply.NAK, 60) == bytes([link.Nak.CRC, link.Cmd.GAIN])
            assert s.set_gains([(names.index(n), g) for n, g in gains.items()], 60) == 3
            ids = [72, 73]
            run2 = board_link.run_images(s, new, images[2:], labels[2:], ids, timeout=120,
                                         features=True)
            assert (run2.images, run2.bitexact) == (2, 2), run2.mismatches
            # Against the old gains the same answers would have been wrong.
            stale = board_link.run_images(s, chip, images[2:], labels[2:], ids, timeout=120)
            assert stale.bitexact == 0 and len(stale.mismatches) == 2
            st = s.status(60)
            assert (st.images_done, st.rejected) == (6, 2)
        finally:
            port.close()
