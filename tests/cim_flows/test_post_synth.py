"""The post-synthesis check on a small chip: the harness mapped to ECP5 cells by synth_ecp5
(cim_flows.post_synth), simulated on Verilator with yosys' ECP5 cell models and the models of
testbench/ecp5_models.py, every logit compared with the golden model. The full-size chip is
benchmarks/post_synth_chip.py (minutes); the models' block-RAM and DSP modes are checked by
that run, this one keeps the flow itself in CI."""

from __future__ import annotations

import numpy as np

from cim_flows import post_synth
from cim_spec import program
from cim_spec.config import SystemConfig
from cim_spec.mapping import map_network
from cim_spec.network import Conv, Dense, Network, Pool

SMALL = Network("small", (1, 8, 8), (
    Conv("A", 1, 3, 3), Pool("P", 2, 2), Dense("D", 27, 4)))


def test_small_chip_netlist_is_bit_exact(tmp_path):
    cfg = SystemConfig(n_pe=2, array_rows=32, array_cols=12, adc_bits=6, input_bits=6,
                       act_bits=6, adcs_per_pe=4, pulse_cycles=2)
    mapping = map_network(cfg, SMALL)
    rng = np.random.default_rng(11)
    names = [lm.name for lm in mapping.layers]
    chip = program.Chip(
        mapping, rng.integers(0, cfg.code_max + 1, size=(cfg.n_pe, cfg.array_rows,
                                                         cfg.array_cols)),
        program.Digital(adc_gain={n: int(rng.integers(2000, 12000)) for n in names},
                        requant_mult={n: int(rng.integers(2 ** 14, 2 ** 16))
                                      for n in names[:-1]},
                        requant_shift={n: 18 for n in names[:-1]},
                        read_noise=300, noise_seed=3))
    images = rng.integers(0, 256, size=(4, 8, 8)).astype(np.uint8)
    res = post_synth.check(chip, images, tmp_path, progress=False)
    assert res["bitexact"] == 4, res["mismatches"]
    stat = (tmp_path / "stat.json").read_text()
    assert "TRELLIS_FF" in stat and "LUT4" in stat      # a mapped netlist, not the RTL
