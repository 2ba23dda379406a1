"""The generated Verilog passes `verilator --lint-only` with only the written-down waivers."""

import subprocess

import pytest

from cim_spec.config import SystemConfig
from hdl import build
from hdl.crossbar import BEHAVIORAL_SOURCE
from hdl.params import CrossbarForm, PEParams
from hdl.pe import PE
from testbench import runner


def lint(sources, top, *flags):
    runner.setup_env()
    cmd = ["verilator", "--lint-only", *flags, str(build.WAIVERS), *map(str, sources),
           "--top-module", top]
    return subprocess.run(cmd, capture_output=True, text=True)


@pytest.mark.parametrize("cfg, noise, form", [
    (SystemConfig(), 119, CrossbarForm.VERILOG),
    (SystemConfig(adc_bits=6, adcs_per_pe=4, array_rows=64, input_bits=6, act_bits=6), 0,
     CrossbarForm.VERILOG),
    # The FPGA emulation at a reduced size: the same generator code, a shorter lint.
    (SystemConfig(array_rows=48, adcs_per_pe=8), 119, CrossbarForm.AMARANTH)])
def test_pe_verilog_lints_clean(tmp_path, cfg, noise, form):
    p = PEParams.from_config(cfg, max_lines=24, read_noise=noise)
    sources = build.generate(PE(p, form=form), "pe", tmp_path, form)
    res = lint(sources, "pe")
    assert res.returncode == 0 and "%Warning" not in res.stderr, res.stderr[-3000:]


def test_crossbar_model_lints_clean_under_wall():
    res = lint([BEHAVIORAL_SOURCE], "cim_crossbar", "-Wall")
    assert res.returncode == 0 and "%Warning" not in res.stderr, res.stderr[-3000:]


def test_waivers_are_needed():
    """Without the waiver file the Amaranth output does trip the width warnings (so the
    waivers are not stale)."""
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        sources = build.generate(PE(PEParams(), form=CrossbarForm.VERILOG), "pe", d)
        runner.setup_env()
        res = subprocess.run(["verilator", "--lint-only", *map(str, sources), "--top-module",
                              "pe"], capture_output=True, text=True)
    assert res.returncode != 0 and "WIDTH" in res.stderr
