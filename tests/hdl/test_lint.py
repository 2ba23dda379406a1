"""The generated Verilog passes `verilator --lint-only` with only the written-down waivers."""

import subprocess

import numpy as np
import pytest

from cim_spec import program
from cim_spec.config import SystemConfig
from cim_spec.mapping import map_network
from cim_spec.network import Conv, Dense, Network, Pool
from hdl import build
from hdl.chip import CimChip
from hdl.chip_plan import plan_chip
from hdl.crossbar import BEHAVIORAL_SOURCE
from hdl.harness import LOADER_SOURCE, SimHarness
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


# The smallest case of every width the plan derives: a 1 x 1 pooled map (a one-word memory),
# one chunk per PE, one read per position, two layers.
TINY = Network("tiny", (1, 4, 4), (Conv("A", 1, 2, 3), Pool("P", 2, 2), Dense("D", 2, 2)))


# One weight layer only: the layer counters are then one value wide (found by the random
# configurations, seed 1: the feeder's layer register came out as `wire [-1:0]`).
DENSE_ONLY = Network("dense", (1, 3, 5), (Dense("D", 15, 3),))


@pytest.mark.parametrize("net", [TINY, DENSE_ONLY], ids=["tiny", "dense-only"])
def test_chip_verilog_of_the_smallest_plan_lints_clean(tmp_path, net):
    cfg = SystemConfig(n_pe=2, array_rows=32, array_cols=16)
    mapping = map_network(cfg, net)
    names = [lm.name for lm in mapping.layers]
    chip = program.Chip(mapping, np.zeros((2, 32, 16), dtype=np.int64), program.Digital(
        adc_gain={n: 4000 for n in names}, requant_mult={n: 2 ** 15 for n in names[:-1]},
        requant_shift={n: 18 for n in names[:-1]}, read_noise=5, noise_seed=1))
    plan = plan_chip(chip)
    if net is TINY:
        assert plan.buffers["A_out"].depth == 1 and all(len(p.entries) == 1 for p in plan.pes)
    if net is DENSE_ONLY:
        # The simulation harness needs the chip's features stream, which a network whose
        # last layer reads the image has not: lint the chip itself.
        sources = build.generate(CimChip(plan), "chip", tmp_path)
        res = lint(sources, "chip")
    else:
        sources = build.generate(SimHarness(plan), "harness", tmp_path)
        res = lint([*sources, LOADER_SOURCE], "harness")
    assert res.returncode == 0 and "%Warning" not in res.stderr, res.stderr[-3000:]


def test_harness_around_a_chip_netlist_matches_its_ports(tmp_path):
    """SimHarness(netlist=...) instantiates a module with exactly the chip's top-level ports
    (the gate-level netlist's, docs/asic.md): linted together with the chip's own Verilog
    under that module name, every port connects at its width; the harness has no taps."""
    from hdl.chip import CimChip
    cfg = SystemConfig(n_pe=2, array_rows=32, array_cols=16)
    mapping = map_network(cfg, TINY)
    names = [lm.name for lm in mapping.layers]
    chip = program.Chip(mapping, np.zeros((2, 32, 16), dtype=np.int64), program.Digital(
        adc_gain={n: 4000 for n in names}, requant_mult={"A": 2 ** 15}, requant_shift={"A": 18}))
    plan = plan_chip(chip)
    harness = SimHarness(plan, CrossbarForm.BLACKBOX, netlist="cim_chip_asic")
    assert "tap" not in harness.signature.members
    h = build.generate(harness, "harness", tmp_path / "h", CrossbarForm.VERILOG)
    c = build.generate(CimChip(plan), "cim_chip_asic", tmp_path / "c")
    text = h[0].read_text()
    assert "cim_chip_asic chip (" in text and ".rst(in_reset)" in text
    res = lint([h[0], c[0], BEHAVIORAL_SOURCE, LOADER_SOURCE], "harness", "-Wall",
               "-Wno-fatal", "-Wno-UNUSEDSIGNAL", "-Wno-DECLFILENAME", "-Wno-UNUSEDPARAM")
    assert res.returncode == 0, res.stderr[-3000:]
    bad = [ln for ln in res.stderr.splitlines()
           if ln.startswith("%Warning-") and ("PIN" in ln or "WIDTH" in ln) and "harness" in ln]
    assert not bad, bad


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
