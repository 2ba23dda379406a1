"""The energy/area model: the paper-core calibration, and event counts from the mapping."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from cim_cli.main import main
from cim_flows import energy as E
from cim_spec.config import SystemConfig
from cim_spec.mapping import map_network
from cim_spec.network import MCNN

EXAMPLES = Path(__file__).parents[2] / "examples"


def test_paper_core_reproduces_11014_gops_per_w_within_5_percent():
    b = E.benchmark()
    assert b["gops_per_w"] == pytest.approx(E.PAPER_GOPS_PER_W, rel=0.05)


def test_the_calibration_needs_the_shift_add_and_the_per_cell_op_count():
    """docs/energy.md: without the digital shift-add the paper's figure is missed, and
    counting a differential pair as one MAC halves the ops: neither convention is it."""
    no_digital = E.benchmark(E.EnergyParams(add_pj_per_bit_45=0.0))
    assert no_digital["gops_per_w"] / E.PAPER_GOPS_PER_W - 1 > 0.05
    ev = E.benchmark_events()
    pairs = replace(ev, macs=ev.macs // 2)
    pj = sum(E.energy(pairs).values())
    assert pairs.ops / pj * 1e3 < 0.6 * E.PAPER_GOPS_PER_W


def test_paper_core_energy_breakdown_is_the_per_slot_figures():
    e = E.benchmark()["energy_pj"]
    assert e["array"] == pytest.approx(8 * 0.91)
    assert e["drivers_mux"] == pytest.approx(8 * 1.72)
    assert e["sample_hold"] == pytest.approx(8 * 19.2)
    assert e["adc"] == pytest.approx(8 * 128 * 2.55)


def test_area_model_is_calibrated_to_1164_gops_per_mm2():
    b = E.benchmark()
    assert b["gops"] == pytest.approx(2 * 128 * 128 / 400e-9 / 1e9)
    assert b["gops_per_mm2"] == pytest.approx(E.PAPER_GOPS_PER_MM2, rel=1e-9)
    assert 0 < b["area_um2"]["adc"] / 32 < 5000          # a plausible 8-bit ADC, um^2


def test_impossible_area_assumptions_are_refused():
    with pytest.raises(ValueError, match="exceed"):
        E.calibrated_adc_um2(E.AreaParams(sample_hold_um2=1000.0))


def test_mcnn_events_from_the_mapping():
    cfg = SystemConfig()
    ev = E.network_events(map_network(cfg, MCNN))
    # Useful MACs of the network: positions x inputs x outputs.
    assert ev["C1"].macs == 26 * 26 * 9 * 8
    assert ev["C3"].macs == 7 * 7 * 72 * 12
    assert ev["FC"].macs == 192 * 10
    # Every read converts each selected line once per input bit.
    assert ev["C1"].conversions == 676 * 8 * 16
    assert ev["C3"].conversions == 49 * 8 * 8 * 24
    assert ev["FC"].conversions == 12 * 8 * 20
    assert ev["C3"].psum_adds == 49 * 12 * 7
    assert ev["FC"].requants == 0 and ev["C1"].requants == 676 * 8
    # S2: 9 x 9 windows of 3 x 3 on 26 x 26 (the last row and column hold 2): 8 channels.
    assert ev["C1"].pool_compares == 8 * (64 * 8 + 16 * 5 + 3)


def test_replication_speeds_up_but_does_not_change_energy_per_image():
    one = E.system(SystemConfig(replication=1))
    three = E.system(SystemConfig(replication=3))
    assert one["energy_per_image_uj"] == pytest.approx(three["energy_per_image_uj"])
    assert three["images_per_s"] > 2.5 * one["images_per_s"]
    assert three["gops_per_mm2"] > 2.5 * one["gops_per_mm2"]
    assert one["gops_per_w"] == pytest.approx(three["gops_per_w"])


def test_measured_cycles_and_digital_area_enter_the_figures():
    base = E.system(SystemConfig())
    slow = E.system(SystemConfig(), cycles_per_image=2 * base["cycles_per_image"],
                    digital_nand2_eq=10_000)
    assert slow["cycles_source"] == "measured"
    assert slow["gops"] == pytest.approx(base["gops"] / 2)
    assert slow["area_um2"]["digital"] == pytest.approx(10_000 * 5.0 / 0.7)
    assert slow["macro_gops_per_mm2"] == pytest.approx(base["gops_per_mm2"] / 2)


def test_energy_takes_counts_from_anyone():
    ev = E.Events(conversions=10, shift_adds=10) + E.Events(conversions=5)
    e = E.energy(ev)
    assert e["adc"] == pytest.approx(15 * 2.55)
    assert e["shift_add"] == pytest.approx(10 * E.EnergyParams().add_pj(16))


def test_cim_energy_command(capsys, tmp_path):
    assert main(["energy", "--json", "--run", str(tmp_path)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["systems"]) == {"1", "3"}
    assert out["benchmark"]["gops_per_w"] == pytest.approx(11014, rel=0.05)
    assert len(out["assumptions"]) >= 8
    assert json.loads((tmp_path / "energy.json").read_text())["systems"]["3"]["replication"] \
        == 3
    assert main(["energy"]) == 0
    assert "11,014" in capsys.readouterr().out


def test_measured_cycles_go_to_their_replication(capsys, tmp_path):
    (tmp_path / "sim.json").write_text(json.dumps({"replication": 3, "cycles_per_image": 8000.0,
                                                   "images": 4, "bitexact": 4}))
    assert main(["energy", "--json", "--run", str(tmp_path)]) == 0
    s = json.loads(capsys.readouterr().out)["systems"]
    assert s["3"]["cycles_source"] == "measured" and s["3"]["cycles_per_image"] == 8000
    assert s["1"]["cycles_source"] == "mapping lower bound"
    # A stand-in simulation measured nothing.
    (tmp_path / "sim.json").write_text(json.dumps({"replication": 3, "cycles_per_image": 1,
                                                   "stand_in": "test"}))
    assert main(["energy", "--json", "--run", str(tmp_path), "--force"]) == 0
    s = json.loads(capsys.readouterr().out)["systems"]
    assert s["3"]["cycles_source"] == "mapping lower bound"


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """The shipped networks as model files (`cim import`, their own scales: instant)."""
    from golden import data
    d, out = Path(data.__file__).parent / "data", tmp_path_factory.mktemp("nets")
    for name in ("resnet6", "lenet5"):
        assert main(["import", str(d / f"{name}.onnx"), "--out", str(out / f"{name}.npz"),
                     "--json"]) == 0
    return out


@pytest.mark.parametrize("name, pes, bound", [("resnet6", 12, 46000), ("lenet5", 32, 47480)])
def test_cim_energy_of_an_imported_network(imported, capsys, name, pes, bound):
    """Energy per image, its breakdown, PEs and cycles of a shipped network; the slot bound is
    docs/onnx.md's (the mapping's slot_bound per layer x pulse_cycles)."""
    from cim_flows import stages
    from cim_spec.config import SystemConfig as Cfg
    capsys.readouterr()
    weights, config = imported / f"{name}.npz", EXAMPLES / f"{name}.toml"
    assert main(["energy", "--weights", str(weights), "--config", str(config), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["systems"]) == {"1"}
    s = out["systems"]["1"]
    assert s["network"] == name and s["used_pes"] == pes and s["cycles_bound"] == bound
    net = stages.network(stages.load_model(weights))
    want = E.system(Cfg.load(config), network=net)
    assert s["energy_total_pj"] == pytest.approx(want["energy_total_pj"], rel=1e-12)
    assert sum(s["energy_breakdown_pj"].values()) == pytest.approx(s["energy_total_pj"])
    assert s["energy_per_image_uj"] > 0.626          # bigger than the mCNN's
    assert main(["energy", "--weights", str(weights), "--config", str(config)]) == 0
    text = capsys.readouterr().out
    assert f"{name} on the configured chip, replication 1 ({pes} of {pes} PEs used)" in text
    assert "uJ/image" in text and "by part: array" in text and "area" in text


@pytest.mark.parametrize("argv, says", [
    (["--weights", "missing.npz"], "missing.npz: no such model file"),
    (["--weights", "{resnet6}"], "needs 12 PEs of 128 x 16 at replication 1"),
    (["--weights", "{resnet6}", "--config", "{toml}", "--replicate", "fc"],
     "not conv layers of 'resnet6'"),
    (["--chip", "x", "--weights", "{resnet6}"], "--weights does not apply with --chip"),
])
def test_cim_energy_bad_input_is_one_line(imported, capsys, argv, says):
    argv = [a.format(resnet6=imported / "resnet6.npz", toml=EXAMPLES / "resnet6.toml")
            for a in argv]
    capsys.readouterr()
    assert main(["energy", *argv]) == 2
    err = capsys.readouterr().err
    assert says in err and len(err.strip().splitlines()) == 1, err
