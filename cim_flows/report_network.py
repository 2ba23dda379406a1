"""The sections of `cim report` that are computed from the run's network on its chip (the
newest chip state's mapping, else the bundled mCNN; cim_flows.report_run): the mapping onto the
PEs, the cycles per layer (the mapping's lower bound, and the RTL's when sim.json is of the same
network and replication), and the energy per image with its breakdown and the chip's area.
"""

from __future__ import annotations

import numpy as np

from .report_page import _e, _missing, _Page, _table
from .report_run import RunInfo, digital_nand2_eq, measured_cycles

# The energy breakdown's parts (cim_flows.energy.breakdown) as the page names them.
BREAKDOWN = {"array": "array", "dac": "DAC (bit-line drivers)",
             "readout": "readout (output MUX, sample-and-hold)", "adc": "ADC",
             "shift_add": "shift-add", "digital": "digital (partial sums, biases, "
             "requantization, pooling, residual adds)", "buffer": "buffers"}


def s_mapping(pg: _Page, ri: RunInfo) -> str:
    m, cfg = ri.mapping, ri.mapping.config
    rows = []
    for b in m.blocks:
        reads = int((m.assign(b.layer) == b.id).sum())
        rows.append([b.id, b.layer, b.chunk, b.group, b.copy, b.pe,
                     f"{b.row0}-{b.row0 + b.n_rows - 1}", f"0-{b.n_in - 1}",
                     f"{b.in0}-{b.in0 + b.n_in - 1}", reads])
    layers = []
    for lm in m.layers:
        blocks = m.blocks_of(lm.name)
        layers.append([lm.name, lm.kind, f"{lm.n_in} x {lm.n_out}", lm.n_chunks,
                       lm.positions, "yes" if lm.replicated else "no", len(blocks),
                       ", ".join(str(p) for p in sorted({b.pe for b in blocks})),
                       f"{int(m.reads_per_pe(lm.name).sum()):,}"])
    fig, ax = pg.plt.subplots(figsize=(9, 3))
    bottom = np.zeros(cfg.n_pe)
    for lm in m.layers:
        rows_used = np.zeros(cfg.n_pe)
        for b in m.blocks_of(lm.name):
            rows_used[b.pe] += b.n_rows
        ax.bar(range(cfg.n_pe), rows_used, bottom=bottom, label=lm.name)
        bottom += rows_used
    ax.axhline(cfg.array_rows, color="k", lw=0.8, ls="--")
    ax.set(xlabel="PE", ylabel="source lines used",
           title=f"{ri.label}: array occupancy per PE")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    pg.status["mapping"] = "ok"
    used = m.used_pes()
    return (f"<p>Network <b>{_e(ri.label)}</b> ({_e(ri.network_source)}): "
            f"{len(ri.network.layers)} layers, {len(m.layers)} on the arrays, "
            f"{len(m.blocks)} blocks on <b>{len(used)} of {cfg.n_pe} PEs</b> "
            f"({cfg.array_rows} x {cfg.array_cols} cells, replication {cfg.replication}).</p>"
            + _table(["layer", "kind", "inputs x outputs", "chunks", "positions", "replicated",
                      "blocks", "PEs", "reads/image"], layers, left=2)
            + pg.figure(fig, "mapping") + _table(
                ["block", "layer", "chunk", "group", "copy", "PE", "source lines", "bit lines",
                 "inputs", "reads/image"], rows, left=2))


def s_cycles(pg: _Page, ri: RunInfo) -> str:
    from .energy import mapping_cycles
    bound = mapping_cycles(ri.mapping)
    sim = ri.sim or {}
    meas = (sim.get("cycles_per_layer") or {}) if ri.sim_of_network() else {}
    layers = list(bound)
    fig, ax = pg.plt.subplots(figsize=(max(7, 0.8 * len(layers) + 2), 3))
    x = np.arange(len(layers))
    ax.bar(x - 0.2, [bound[n] for n in layers], 0.4, label="mapping lower bound")
    if meas:
        ax.bar(x + 0.2, [meas.get(n, 0) for n in layers], 0.4, label="RTL simulation")
    ax.set_xticks(x, layers)
    ax.set(ylabel="cycles per image", title=ri.label)
    ax.legend(fontsize=8)
    rows = [[n, f"{bound[n]:,}", f"{meas[n]:,}" if n in meas else "-"] for n in layers]
    per_image = sim.get("cycles_per_image") if meas else None
    rows.append(["per image", f"{sum(bound.values()):,}",
                 f"{round(per_image):,}" if isinstance(per_image, (int, float)) else "-"])
    pg.status["cycles"] = "ok" if meas else "missing"
    if meas:
        note = ""
    elif ri.sim and not ri.sim_of_network():
        layers = ", ".join(sim.get("cycles_per_layer") or {})
        other = sim.get("network") or (f"layers {layers}" if layers else "the mCNN")
        note = (f"<p class='missing'>sim.json is of another network or replication "
                f"({_e(other)}, replication {_e(sim.get('replication', 1))}), not of "
                f"{_e(ri.label)} at "
                f"replication {ri.cfg.replication}: no measured cycles. Make them with "
                f"<code>{_e(_sim_cmd(ri))}</code>.</p>")
    else:
        note = _missing("measured cycles (sim.json)", _sim_cmd(ri))
    return (note + f"<p>Cycles per image of {_e(ri.label)}: the mapping's lower bound (the "
            f"busiest PE's slots, layers one after another) and the RTL's.</p>"
            + pg.figure(fig, "cycles")
            + _table(["layer", "lower bound", "measured"], rows))


def _sim_cmd(ri: RunInfo) -> str:
    """The command that measures the run's own chip in the RTL."""
    if ri.state_path is None:
        return "cim demo --out RUN"
    return f"cim sim --chip RUN/{ri.state_path.stem} --json > RUN/sim.json"


def s_energy(pg: _Page, ri: RunInfo) -> str:
    from . import energy
    bench = energy.benchmark()
    cycles = measured_cycles(pg.run, ri.network)
    gates, src = digital_nand2_eq(pg.run)
    cfg = ri.cfg

    def one(r):
        kw = dict(digital_nand2_eq=gates, cycles_per_image=cycles.get(r))
        if r == cfg.replication:
            return energy.system_for(ri.mapping, **kw)
        return energy.system(cfg.with_(replication=r), **kw)

    # The mCNN at replication 1 and 3 (the paper's), another network at its own replication
    # only (it may need more PEs at another).
    reps = sorted({1, 3, cfg.replication}) if ri.is_mcnn else [cfg.replication]
    systems = {r: one(r) for r in reps}
    mine = systems[cfg.replication]
    parts = list(BREAKDOWN)
    fig, axes = pg.plt.subplots(1, 2, figsize=(11, 3.2))
    comp = list(bench["energy_pj"])
    axes[0].barh(comp, [bench["energy_pj"][k] for k in comp], color="#4e9a06")
    axes[0].set_title("benchmark core, pJ per 8-bit VMM", fontsize=9)
    axes[1].barh(parts, [mine["energy_breakdown_pj"][k] / 1e3 for k in parts], color="#4e9a06")
    axes[1].set_title(f"{ri.label}, nJ per image", fontsize=9)
    for ax in axes:
        ax.tick_params(labelsize=8)
    dev = bench["gops_per_w"] / energy.PAPER_GOPS_PER_W - 1
    rows = [["paper benchmark core", f"{bench['gops_per_w']:,.0f}",
             f"{bench['gops_per_mm2']:,.0f}", f"{bench['gops_per_mm2']:,.0f}",
             f"{bench['gops']:.2f}", f"11,014 ({100 * dev:+.1f}%) / 1,164 (calibrated)"]]
    for r, s in systems.items():
        rows.append([f"{ri.label}, replication {r} ({s['cycles_source']})",
                     f"{s['gops_per_w']:,.0f}", f"{s['gops_per_mm2']:,.2f}",
                     f"{s['macro_gops_per_mm2']:,.2f}", f"{s['gops']:.3f}",
                     f"{s['energy_per_image_uj']:.3f} uJ/image"])
    total = sum(mine["energy_breakdown_pj"].values())
    split = [[BREAKDOWN[k], f"{mine['energy_breakdown_pj'][k] / 1e3:,.3f}",
              f"{100 * mine['energy_breakdown_pj'][k] / total:.1f}%"] for k in parts]
    split.append(["total", f"{total / 1e3:,.3f}", "100.0%"])
    per_layer = [[k, f"{v / 1e3:,.3f}"] for k, v in mine["energy_per_layer_pj"].items()]
    area = mine["area_um2"]
    pg.status["energy"] = "ok"
    return (_table(["", "GOPS/W", "GOPS/mm^2", "GOPS/mm^2 (macros only)", "GOPS",
                    "paper / per image"], rows)
            + f"<p>{_e(ri.label)}, replication {cfg.replication}: "
              f"<b>{mine['energy_per_image_uj']:.3f} uJ per image</b>, "
              f"{mine['cycles_per_image']:,} cycles per image ({_e(mine['cycles_source'])}), "
              f"{mine['used_pes']} of {mine['n_pe']} PEs used.</p>"
            + pg.figure(fig, "energy")
            + "<h3>Energy per image by part of the chip (nJ)</h3>"
            + _table(["part", "nJ/image", "share"], split)
            + "<h3>Energy per image by weight layer (nJ; pools and adds booked to the layer "
              "they follow)</h3>" + _table(["layer", "nJ/image"], per_layer)
            + "<p>Area of the configured chip (um^2): " + _e(", ".join(
                f"{k} {v:,.0f}" for k, v in area.items()))
            + f"; total {mine['area_mm2']:.3f} mm^2"
            + (f" (digital periphery from {_e(src)})" if src else
               " (digital periphery not counted: run <code>cim synth --out RUN</code>)")
            + "</p><h3>Assumptions</h3><ul class='assumptions'>"
            + "".join(f"<li>{_e(a)}</li>" for a in energy.assumptions()) + "</ul>")
