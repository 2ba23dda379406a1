"""pytest runners for the PE cocotb testbench, one Verilator build per configuration."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cim_spec.config import SystemConfig
from hdl import build
from hdl.params import CrossbarForm, PEParams
from hdl.pe import PE
from testbench import pe_model, runner

CONFIGS = {
    # The paper's PE: 128 x 16 cells, 8-bit inputs and ADCs, 32 ADCs, 50 ns pulses at 100 MHz;
    # read noise on (1% relative), so the seeded noise generator is checked too.
    "paper": (SystemConfig(), dict(max_lines=24, read_noise=119)),
    # A different PE: 64 x 12 cells, 6-bit ADCs, 4 ADCs (3 conversion rounds per slot),
    # 6-bit inputs, 2-cycle pulses and 2-cycle conversions, no noise.
    "small": (SystemConfig(array_rows=64, array_cols=12, adc_bits=6, adcs_per_pe=4,
                           input_bits=6, act_bits=6, pulse_cycles=2, adc_conv_cycles=2),
              dict(max_lines=12, read_noise=0)),
    # The crossbar's FPGA emulation (block RAM, lines summed over several cycles) instead of
    # the behavioral macro, and the ADC's gain multipliers shared over the slot (5, which
    # does not divide the 12 lines): the same answers, and the cycle formula of that form. A
    # 48 x 16 array keeps the Verilator build short; the paper-size emulation is checked
    # against the golden model in amaranth.sim (tests/hdl/test_pe_sim.py).
    "fpga": (SystemConfig(array_rows=48, adcs_per_pe=8),
             dict(max_lines=12, read_noise=119, gain_mults=5)),
}
FORMS = {"fpga": CrossbarForm.AMARANTH}     # crossbar form; VERILOG otherwise
# Random vectors per configuration; the FPGA form's Verilator build takes longer, so its run
# is shorter (amaranth.sim covers that form too: tests/hdl/test_pe_sim.py).
VECTORS = {"fpga": 1000}
DEFAULT_VECTORS = 2000


def prepare(name: str, seed: int = 1, vectors: int | None = None, stimulus_dir=None):
    cfg, extra = CONFIGS[name]
    rng = np.random.default_rng(seed)
    p = PEParams.from_config(cfg, pe_seed=int(rng.integers(0, 2 ** 32)), **extra)
    g = pe_model.random_array(rng, p)
    reqs = pe_model.random_requests(rng, p, vectors or VECTORS.get(name, DEFAULT_VECTORS))
    form = FORMS.get(name, CrossbarForm.VERILOG)
    build_dir = runner.BUILD_ROOT / f"pe_{name}_{build.digest(p, g.tobytes(), form.value)}"
    # The array's codes are elaborated into the Verilog (the macro's INIT parameter, or the
    # emulation's memory contents).
    sources = build.generate(PE(p, init=g, form=form), "pe", build_dir, form, asserts=True)
    meta = dict(config=cfg.to_dict(), params=p.__dict__, seed=seed, gap=0.15, stall=0.25,
                form=form.value)
    stimulus_dir = stimulus_dir or build_dir
    stimulus_dir.mkdir(parents=True, exist_ok=True)
    np.savez(stimulus_dir / "stimulus.npz", g=g, meta=json.dumps(meta),
             x=np.array([r.x for r in reqs]), row0=[r.row0 for r in reqs],
             n_lines=[r.n_lines for r in reqs], gain=[r.gain for r in reqs],
             nonce=np.array([r.nonce for r in reqs], dtype=np.uint64),
             first=[r.first for r in reqs], last=[r.last for r in reqs])
    return sources, build_dir


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_pe_verilator(name):
    sources, build_dir = prepare(name)
    runner.build(sources, "pe", build_dir)
    runner.test("pe", "testbench.pe_tests", build_dir,
                env={"CIM_PE_STIMULUS": build_dir / "stimulus.npz"})
