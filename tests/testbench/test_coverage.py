"""The functional coverage model (testbench/coverage.py): its bins follow the mapping, its
counts follow the chip state, and a bin that the stimulus cannot reach stays empty."""

from __future__ import annotations

import dataclasses

import numpy as np

from cim_spec import program
from testbench import chip_sim, coverage
from testbench.chip_sim import GainWrite

from .test_chip import other_chip


def test_every_read_is_counted_once_and_every_datapath_bin_is_hit():
    chip, images = other_chip()
    images, ids = images[:4], np.arange(4)
    hits = coverage.datapath_hits(chip, images, ids)
    mapping = chip.mapping
    reads = sum(len(images) * lm.positions * lm.n_chunks for lm in mapping.layers)
    assert sum(hits["pe_lines"].values()) == reads
    assert sum(hits["chunk"].values()) == reads
    lines = sum(len(images) * b.n_rows * chip.config.input_bits *
                int((mapping.assign(b.layer)[:, b.chunk] == b.id).sum())
                for b in mapping.blocks)
    assert sum(hits["adc_clamp"].values()) == lines
    bins = coverage.all_bins(chip)
    for group in ("adc_clamp", "pe_lines", "chunk", "noise_sign", "replication"):
        assert set(hits[group]) <= set(bins[group])
        assert all(hits[group][b] > 0 for b in bins[group]), group


def test_clamp_bins_follow_the_gain():
    """A gain of 1 never reaches the top code of a 6-bit ADC; the largest gain clamps
    nearly every line that carries current."""
    chip, images = other_chip()
    for gain, clamped in ((1, False), (2 ** 32 - 1, True)):
        d = dataclasses.replace(chip.digital, adc_gain={n: gain for n in chip.digital.adc_gain})
        hot = program.Chip(chip.mapping, chip.conductance, d)
        hits = coverage.datapath_hits(hot, images[:2], np.arange(2))["adc_clamp"]
        n = sum(v for k, v in hits.items() if k.endswith("clamped"))
        assert (n > 0) == clamped


def test_report_lists_the_bins_not_hit():
    chip, images = other_chip()
    func = coverage.functional([("t", chip, images[:2], np.arange(2),
                                 {"prog_transfers": 3, "result_stalls": 1})])
    rep = coverage.report(func, None, [])
    traffic = rep["functional"]["traffic"]
    assert traffic["hit"] == 2 and "t: back-pressure on prog" in traffic["missed"]
    assert rep["functional"]["pe_lines"]["missed"] == []


def test_verilator_coverage_files_merge_by_point(tmp_path):
    """Counts of the same point add up across runs; a point is hit if any run hit it."""
    def point(page, line):
        return f"\x01f\x02a.v\x01l\x02{line}\x01page\x02{page}/harness\x01o\x02x"
    a, b = tmp_path / "a.dat", tmp_path / "b.dat"
    a.write_text("# SystemC::Coverage-3\n" + f"C '{point('v_line', 1)}' 3\n"
                 f"C '{point('v_toggle', 2)}' 0\nC '{point('v_toggle', 3)}' 0\n")
    b.write_text("# SystemC::Coverage-3\n" + f"C '{point('v_line', 1)}' 2\n"
                 f"C '{point('v_toggle', 2)}' 1\n")
    s = coverage.structural([a, b], tmp_path / "m.dat")
    assert s == {"line": dict(hit=1, points=1, percent=100.0),
                 "toggle": dict(hit=1, points=2, percent=50.0)}
    assert coverage.read_dat(tmp_path / "m.dat")[point("v_line", 1)] == 5


def test_gain_bins_count_the_images_run_at_each_gain():
    """Images per gain bin, written out by hand for a schedule of gain writes: one before the
    first image (not between images), one between images to 1, one to the register's top."""
    chip, images = other_chip()
    top = chip_sim.gain_register_max(chip)
    writes = [GainWrite(0, "A", 5), GainWrite(2, "B", 1), GainWrite(3, "A", top)]
    hits = coverage.gain_hits(chip, writes, 4)
    never, between, one, at_top = coverage.GAIN_BINS
    want = {("A", never): 0, ("A", between): 1, ("A", one): 0, ("A", at_top): 1,
            ("B", never): 2, ("B", between): 2, ("B", one): 2, ("B", at_top): 0,
            ("D", never): 4, ("D", between): 0, ("D", one): 0, ("D", at_top): 0}
    assert {k: hits[f"{k[0]} {k[1]}"] for k in want} == want
    assert set(hits) <= set(coverage.all_bins(chip)["gain_writes"])


def test_runs_with_writes_are_sampled_with_the_chip_as_written():
    """After a write of every gain to the register's top, the datapath bins count the later
    images' reads as that chip makes them (nearly all clamped), the earlier ones as built."""
    chip, images = other_chip()
    images, ids = images[:4], np.arange(4)
    top = chip_sim.gain_register_max(chip)
    writes = [GainWrite(2, n, top) for n in chip.digital.adc_gain]
    rep = coverage.report(coverage.functional([("w", chip, images, ids, {}, writes)]), None, [])
    hot = program.Chip(chip.mapping, chip.conductance, dataclasses.replace(
        chip.digital, adc_gain={n: top for n in chip.digital.adc_gain}))
    before = coverage.datapath_hits(chip, images[:2], ids[:2])["adc_clamp"]
    after = coverage.datapath_hits(hot, images[2:], ids[2:])["adc_clamp"]
    got = rep["functional"]["adc_clamp"]["hits"]
    assert all(got[f"w: {b}"] == before[b] + after[b] for b in before | after)
    assert sum(after[b] for b in after if b.endswith("clamped")) > sum(
        before[b] for b in before if b.endswith("clamped"))
    gains = rep["functional"]["gain_writes"]
    assert gains["hits"]["w: D gain at the register's top"] == 2
    assert "w: D gain 1" in gains["missed"]
