"""The second simulator: Icarus Verilog (Debian `iverilog`) runs the same cocotb testbenches
on the same generated Verilog as Verilator, through cocotb_tools.runner
(testbench/runner.py, `simulator="icarus"`), and both agree bit for bit with the golden model.
Kept small for CI: one PE configuration with fewer vectors, two images of the small chip."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from testbench import chip_sim, runner

from .test_chip import other_chip
from .test_pe import prepare

pytestmark = pytest.mark.skipif(shutil.which("iverilog") is None,
                                reason="needs Icarus Verilog (apt-get install iverilog)")


def test_pe_on_icarus():
    """The small PE (6-bit inputs and ADCs, 4 ADCs, 2-cycle pulses) with 300 random read
    requests, random gaps and back-pressure, every partial sum against the golden model."""
    sources, build_dir = prepare("small", vectors=300, stimulus_dir=None)
    icarus_dir = build_dir / "icarus"
    # Its own stimulus file (the Verilator run of the same build reads 2,000 vectors).
    prepare("small", vectors=300, stimulus_dir=icarus_dir)
    runner.build(sources, "pe", icarus_dir, simulator="icarus")
    runner.test("pe", "testbench.pe_tests", icarus_dir, simulator="icarus", quiet=True,
                env={"CIM_PE_STIMULUS": icarus_dir / "stimulus.npz"})


def test_chip_on_icarus_and_verilator_agree():
    """The small chip of test_chip.py (a second network, replication 2, read noise) on both
    simulators: the same logits, equal to the golden model's, and the same cycle count."""
    chip, images = other_chip()
    images, ids = images[:2], np.array([7, 2 ** 32 - 1])
    icarus = chip_sim.simulate(chip, images, ids, progress=False, simulator="icarus")
    verilator = chip_sim.simulate(chip, images, ids, progress=False)
    assert icarus.bitexact == verilator.bitexact == 2
    assert (icarus.logits == verilator.logits).all()
    assert (icarus.logits == icarus.golden_logits).all()
    assert icarus.cycles_image == verilator.cycles_image
