"""The options of hardware-aware training and drift compensation: misuse is refused in one
line with exit status 2 before any work, and `cim compensate` writes a state that
`cim eval --chip` reads with the new gains."""

from __future__ import annotations

import contextlib
import io
import json

import pytest

from cim_cli.main import main


def _run(*argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(list(argv))
    return rc, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("argv, message", [
    (["train", "--hwa-scale", "2"], "--hwa-scale/--hwa-age do not apply without --hwa"),
    (["train", "--hwa-age", "3600"], "--hwa-scale/--hwa-age do not apply without --hwa"),
    (["train", "--hwa", "yao2020", "--hwa-scale", "-1"], "--hwa-scale must be in"),
    (["train", "--hwa", "yao2020", "--qat-epochs", "0"], "--hwa needs quantization-aware"),
    (["train", "--hwa", "nosuch"], "unknown device preset 'nosuch'"),
    (["eval", "--compensate"], "--compensate needs a chip state"),
    (["eval", "--recalibrate", "100"], "--recalibrate applies with --compensate"),
])
def test_misuse_refused(tmp_path, argv, message):
    rc, out, err = _run(*argv, "--out", str(tmp_path / "w.npz")) if argv[0] == "train" \
        else _run(*argv)
    assert rc == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "w.npz").exists()


def test_compensate_writes_a_state_eval_reads(tmp_path):
    chip, comp = tmp_path / "chip", tmp_path / "chip_1d"
    assert _run("program", "--out", str(chip), "--json")[0] == 0
    rc, out, _ = _run("compensate", "--chip", str(chip), "--age", "86400", "--out", str(comp),
                      "--json")
    assert rc == 0
    res = json.loads(out)
    assert all(res["gains_after"][k] > res["gains_before"][k] for k in res["gains_after"])
    state = json.loads(comp.with_suffix(".json").read_text())
    assert [h["stage"] for h in state["history"]] == ["transfer", "aged", "compensated"]
    assert state["digital"]["adc_gain"] == res["gains_after"]
    # `cim eval --age --compensate` computes the same chip in memory
    rc, out, _ = _run("eval", "--chip", str(chip), "--age", "86400", "--compensate",
                      "--limit", "200", "--json")
    same = json.loads(_run("eval", "--chip", str(comp), "--limit", "200", "--json")[1])
    assert rc == 0 and json.loads(out)["compensation"]["gains_after"] == res["gains_after"]
    assert json.loads(out)["accuracy"] == same["accuracy"]
    assert _run("compensate", "--chip", str(chip), "--out", str(comp))[0] == 2  # no --force


def test_recalibrate_retrains_the_fc_cells(tmp_path):
    """`cim compensate --recalibrate N`: new gains, then hybrid training of the FC cells on N
    labelled images (pulses applied, FC codes changed, conv codes not); `cim eval
    --compensate --recalibrate N` computes the same chip in memory."""
    import numpy as np
    chip, rec = tmp_path / "chip", tmp_path / "chip_rec"
    assert _run("program", "--out", str(chip), "--json")[0] == 0
    rc, out, _ = _run("compensate", "--chip", str(chip), "--age", "86400", "--out", str(rec),
                      "--recalibrate", "200", "--json")
    assert rc == 0
    res = json.loads(out)
    assert res["recalibration"]["images"] == 200 and res["recalibration"]["pulses"] > 0
    state = json.loads(rec.with_suffix(".json").read_text())
    assert [h["stage"] for h in state["history"]] == ["transfer", "aged", "compensated",
                                                      "hybrid"]
    assert state["digital"]["adc_gain"] == res["gains_after"]
    from cim_spec import chipstate
    from golden import drift
    aged, new = drift.aged(chipstate.load(chip), 86400.0), chipstate.load(rec)
    changed = np.argwhere(aged.codes != new.codes)
    fc_pes = {b.pe for b in new.mapping.blocks_of("FC")}
    assert len(changed) and set(changed[:, 0]) <= fc_pes
    rc, out, _ = _run("eval", "--chip", str(chip), "--age", "86400", "--compensate",
                      "--recalibrate", "200", "--limit", "200", "--json")
    same = json.loads(_run("eval", "--chip", str(rec), "--limit", "200", "--json")[1])
    assert rc == 0 and json.loads(out)["accuracy"] == same["accuracy"]
    assert json.loads(out)["recalibration"]["pulses"] == res["recalibration"]["pulses"]
