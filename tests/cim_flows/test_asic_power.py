"""Switching activity from SAIF into OpenSTA commands, and the measured periphery energy in
the energy model: hand-written inputs with hand-computed answers (the real netlist's power
is tests/cim_flows/test_asic.py's)."""

from __future__ import annotations

import json

import pytest

from cim_flows import asic_power, asic_report, energy
from cim_spec.config import SystemConfig

SAIF = """(SAIFILE
(SAIFVERSION "2.0")
(DIRECTION "backward")
(DESIGN "foo")
(TIMESCALE 10 ps)
(DURATION 40000)
(INSTANCE TOP
  (INSTANCE top
    (NET
      (clk (T0 20000) (T1 20000) (TZ 0) (TX 0) (TC 80))
      (\\bus\\[3\\] (T0 30000) (T1 10000) (TC 7))
    )
    (INSTANCE _12_
      (NET
        (A (T0 40000) (T1 0) (TC 0))
        (Y (T0 10000) (T1 30000) (TX 0) (TC 12) (IG 0))
        (internal (T1 1) (TC 99))
      )
    )
    (INSTANCE sub
      (INSTANCE _3_ (NET (Q (T0 20000) (T1 20000) (TC 20))))
    )
  )
)
)
"""


def test_saif_toggles_and_times_in_seconds(tmp_path):
    f = tmp_path / "dump.saif"
    f.write_text(SAIF)
    duration, nets = asic_power.read_saif(f)
    assert duration == pytest.approx(400e-9)              # 40,000 x 10 ps
    assert nets["TOP/top/clk"] == (80, pytest.approx(200e-9))
    assert nets["TOP/top/bus[3]"] == (7, pytest.approx(100e-9))
    assert nets["TOP/top/_12_/Y"] == (12, pytest.approx(300e-9))
    assert asic_power.find_scope(nets, "top") == "TOP/top"
    # 400 ns at a 10 ns clock: 40 cycles. Only cell pins the netlist has are kept.
    acts = asic_power.pin_activity(nets, duration, 10e-9, "TOP/top",
                                   {"_12_": {"A", "Y"}, "sub/_3_": {"Q", "D"}})
    assert acts == {"_12_/A": (0.0, 0.0), "_12_/Y": (0.3, pytest.approx(0.75)),
                    "sub/_3_/Q": (0.5, pytest.approx(0.5))}
    cmds = asic_power.activity_commands(acts)
    assert len(cmds) == 3 and "[get_pins {_12_/Y}] -activity 0.3 -duty 0.75" in cmds[1]


def test_difference_leaves_the_longer_runs_extra_activity():
    long = (500e-9, {"a": (30, 200e-9), "b": (4, 0.0)})
    short = (100e-9, {"a": (10, 50e-9)})
    d, nets = asic_power.difference(long, short)
    assert d == pytest.approx(400e-9)
    assert nets == {"a": (20, pytest.approx(150e-9)), "b": (4, 0.0)}
    with pytest.raises(ValueError):
        asic_power.difference(short, long)


def test_netlist_cells_follow_the_hierarchy(tmp_path):
    v = tmp_path / "mapped.v"
    v.write_text("module top(a, y);\n  input a;\n  output y;\n  INVX1 _1_ (\n    .A(a),\n"
                 "    .Y(n)\n  );\n  \\top.sub  sub (\n    .a(n),\n    .y(y)\n  );\nendmodule\n"
                 "module \\top.sub (a, y);\n  input a;\n  output y;\n  BUFX2 _7_ (\n"
                 "    .A(a),\n    .Y(y)\n  );\nendmodule\n")
    assert asic_power.netlist_cells(v, {"INVX1", "BUFX2"}, "top") == {"_1_": "INVX1",
                                                                       "sub/_7_": "BUFX2"}


def test_report_power_total_row():
    text = ("Group  Internal  Switching  Leakage  Total\n"
            "Total                3.228975e-02 1.338496e-02 1.449955e-06 4.567615e-02 100.0%\n")
    assert asic_power.parse_report_power(text) == {
        "internal_w": 3.228975e-02, "switching_w": 1.338496e-02, "leakage_w": 1.449955e-06,
        "total_w": 4.567615e-02}


def test_measured_periphery_enters_the_energy_model(tmp_path):
    (tmp_path / "asic_chip.json").write_text(json.dumps(
        {"config": {"replication": 1}, "gate_level": {"power": {"uj_per_image": 2.0}}}))
    pj, src, rep = asic_report.periphery_energy(tmp_path)
    # 2 uJ at 0.18 um / 1.8 V is 2e6 pJ x (0.13 / 0.18) x (1.2 / 1.8)^2 at 130 nm / 1.2 V.
    assert pj == pytest.approx(2e6 * 0.13 / 0.18 * (1.2 / 1.8) ** 2) and rep == 1
    assert src == "asic_chip.json"
    s = energy.system(SystemConfig(), periphery_pj_per_image=pj)
    e = s["energy_pj"]
    analog = e["array"] + e["drivers_mux"] + e["sample_hold"] + e["adc"]
    ops = s["events"]["ops"]
    assert s["gops_per_w_measured_periphery"] == pytest.approx(ops / ((analog + pj) * 1e-12)
                                                               / 1e9)
    assert "gops_per_w_measured_periphery" not in energy.system(SystemConfig())
    assert asic_report.periphery_energy(tmp_path / "none") == (None, None, None)
