"""The RTL's assertions are on in the Verilator builds used for verification, and a failing
one fails the cocotb test: a DAC driver that withdraws `valid` while its output is stalled
(testbench/formal/broken.py) stops the simulation with its stream-contract assertion, while
the real driver passes the same test."""

from __future__ import annotations

import pytest

from hdl import build
from hdl.dac import DacDriver
from testbench import runner
from testbench.formal.broken import DroppingDac
from testbench.formal.pe_specs import TINY

REQUESTS = 6


def run_dac(cls, tmp_path):
    build_dir = runner.BUILD_ROOT / f"assert_{cls.__name__}_{build.digest(TINY)}"
    sources = build.generate(cls(TINY), "dac", build_dir, asserts=True)
    assert "assert (" in sources[0].read_text()
    runner.build(sources[:1], "dac", build_dir, quiet=True)
    runner.test("dac", "testbench.assert_tests", build_dir, test_dir=tmp_path, quiet=True,
                env={"CIM_REQUESTS": REQUESTS, "CIM_SLOTS": TINY.input_bits})
    return (tmp_path / "sim.log").read_text()


def test_the_dac_keeps_its_assertions(tmp_path):
    log = run_dac(DacDriver, tmp_path)
    assert "Assertion failed" not in log


def test_a_failing_assertion_fails_the_cocotb_test(tmp_path):
    with pytest.raises(AssertionError, match="simulation of testbench.assert_tests stopped"):
        run_dac(DroppingDac, tmp_path)
    log = (tmp_path / "sim.log").read_text()
    assert "dac.o: valid withdrawn before ready" in log, log[-2000:]


def test_only_verification_builds_carry_assertions(tmp_path):
    """Synthesis and the exported Verilog read plain Verilog, which has no `assert`: the
    assertions are in the text only when asked for."""
    plain = build.verilog_text(DacDriver(TINY), "dac")
    checked = build.verilog_text(DacDriver(TINY), "dac", asserts=True)
    assert "assert" not in plain
    assert checked.count("assert (") >= 5 and "dac.o: valid withdrawn before ready" in checked
