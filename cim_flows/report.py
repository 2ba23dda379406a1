"""`cim report`: one HTML page (and the PNGs it shows) from a run directory.

A run directory holds the JSON artifacts the other commands write (docs/synthesis.md):
``stages.json``, ``sim.json`` and a chip state (``*.json`` + ``*.npz``) from `cim demo --out`
(or `cim sim --json`, `cim program`, `cim hybrid`), ``synth_<design>_<target>_<view>.json``
(`cim synth`), ``timing_<design>[_<board>].json`` (`cim timing`), ``hwa_sweep.json`` and
``drift.json`` (tools/device_sweeps.py). What is cheap (mapping,
energy) is computed here. A section whose artifact is missing says which command makes it.
"""

from __future__ import annotations

import html
import io
import json
import string
import sys
import time
from pathlib import Path

import numpy as np

from cim_spec import files
from cim_spec.config import ConfigError, SystemConfig

TEMPLATE = Path(__file__).resolve().parent / "report_template.html"
SECTIONS = [("artifacts", "Run"), ("mapping", "Mapping"), ("conductance", "Conductances"),
            ("accuracy", "Accuracy per stage"), ("device", "Device errors and drift"),
            ("rtl", "RTL vs golden"),
            ("cycles", "Cycles per layer"), ("resources", "Resources per module"),
            ("timing", "Fmax"), ("energy", "Energy and area"), ("sweep", "Sweep"),
            ("coverage", "Verification coverage")]
# What the paper reports for the stages `cim demo` prints (README.md, Results), by replication.
PAPER_STAGES = {1: {"float (software)": 0.9799, "after transfer": 0.9507,
                    "after hybrid training": 0.9619},
                3: {"float (software)": 0.9799, "after transfer": 0.9386,
                    "after hybrid training": 0.9583}}


def load_json(path: Path) -> dict | None:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def chip_states(run: Path) -> list[Path]:
    return sorted(p for p in Path(run).glob("*.json")
                  if (load_json(p) or {}).get("schema") == "cim-chip-state")


def digital_nand2_eq(run: Path) -> tuple[float | None, str | None]:
    """NAND2 equivalents of the digital periphery from the ASIC-view synthesis (generic
    target), leaving out the ADC module: in silicon the ADC and its gain are analog (counted
    by the macro model). A PE-only result counts once per PE. The ASIC flow's real cells
    (`cim asic`), when the run has them, come first."""
    from cim_flows.asic_report import nand2_eq
    gates, name = nand2_eq(run)
    if gates is not None:
        return gates, name
    for name, per_pe in (("synth_chip_generic_asic.json", False),
                         ("synth_pe_generic_asic.json", True)):
        r = load_json(Path(run) / name)
        if not r:
            continue
        try:
            adc = sum(row["total"].get("nand2_eq", 0) for row in r["modules"]
                      if row["module"].split(".")[-1] == "adc")
            gates = float(r["totals"].get("nand2_eq", 0) - adc)
            if per_pe:
                gates *= SystemConfig.from_dict(r["config"]).n_pe
        except (KeyError, TypeError, AttributeError, ValueError) as e:
            raise ConfigError(f"{Path(run) / name}: not a synthesis result "
                              f"({type(e).__name__}: {e})") from None
        if not (np.isfinite(gates) and gates >= 0):
            raise ConfigError(f"{Path(run) / name}: digital periphery of {gates} NAND2 eq.")
        return gates, name
    return None, None


def measured_cycles(run: Path) -> dict[int, int]:
    """Cycles per image the RTL simulation measured ({replication: cycles}); a stand-in
    sim.json measured nothing."""
    path = Path(run) / "sim.json"
    sim = load_json(path) or {}
    if not isinstance(sim, dict):
        raise ConfigError(f"{path}: must hold a JSON object")
    if sim.get("stand_in") or not sim.get("cycles_per_image"):
        return {}
    cycles, rep = sim["cycles_per_image"], sim.get("replication", 1)
    if isinstance(cycles, bool) or not isinstance(cycles, (int, float)) \
            or not np.isfinite(cycles) or cycles < 1:
        raise ConfigError(f"{path}: cycles_per_image must be a number >= 1, got {cycles!r}")
    if isinstance(rep, bool) or not isinstance(rep, int) or rep < 1:
        raise ConfigError(f"{path}: replication must be an integer >= 1, got {rep!r}")
    return {rep: round(cycles)}


def _e(x) -> str:
    return html.escape(str(x))


def _table(head: list, rows: list[list], left: int = 1) -> str:
    th = "".join(f"<th class='{'l' if i < left else ''}'>{_e(h)}</th>" for i, h in
                 enumerate(head))
    body = "".join("<tr>" + "".join(f"<td class='{'l' if i < left else ''}'>{_e(c)}</td>"
                                    for i, c in enumerate(r)) + "</tr>" for r in rows)
    return f"<table><tr>{th}</tr>{body}</table>"


def _missing(what: str, cmd: str) -> str:
    return (f"<p class='missing'>No {_e(what)} in this run directory. Make it with "
            f"<code>{_e(cmd)}</code>.</p>")


class _Page:
    def __init__(self, run: Path, out: Path):
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        self.plt, self.run, self.out = plt, run, out
        self.status: dict[str, str] = {}

    def figure(self, fig, name: str) -> str:
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=90)
        files.write_bytes(self.out / f"{name}.png", buf.getvalue())
        self.plt.close(fig)
        return f"<img src='{name}.png' alt='{_e(name)}'>"


# --------------------------------------------------------------------------------------------
# Sections: each returns its HTML and records "ok" or "missing" in page.status.

def s_artifacts(pg: _Page, cfg: SystemConfig, ctx: dict) -> str:
    rows = []
    for label, pattern, cmd in [
            ("accuracy per stage", "stages.json", "cim demo --out RUN"),
            ("chip state", "*.npz", "cim demo --out RUN, or cim program --out RUN/chip"),
            ("RTL simulation", "sim.json", "cim demo --out RUN, or cim sim --json > "
                                           "RUN/sim.json"),
            ("synthesis", "synth_*.json", "cim synth --target ecp5 --view fpga --out RUN"),
            ("place and route", "timing*.json", "cim timing --out RUN"),
            ("ASIC flow (OSU018 cells, STA)", "asic_*.json", "cim asic --out RUN")]:
        found = sorted(p.name for p in pg.run.glob(pattern))
        rows.append([label, ", ".join(found) if found else "missing", cmd])
    pg.status["artifacts"] = "ok"
    conf = ", ".join(f"{k}={v}" for k, v in cfg.to_dict().items())
    return (f"<p>Run directory <code>{_e(pg.run.resolve())}</code> "
            f"(RUN below). Configuration ({_e(ctx['cfg_source'])}): <code>{_e(conf)}</code></p>"
            + _table(["artifact", "files", "made by"], rows, left=3))


def s_mapping(pg: _Page, cfg: SystemConfig, ctx: dict) -> str:
    m = ctx["mapping"]
    rows = []
    for b in m.blocks:
        reads = int((m.assign(b.layer) == b.id).sum())
        rows.append([b.id, b.layer, b.chunk, b.group, b.copy, b.pe,
                     f"{b.row0}-{b.row0 + b.n_rows - 1}", f"0-{b.n_in - 1}",
                     f"{b.in0}-{b.in0 + b.n_in - 1}", reads])
    fig, ax = pg.plt.subplots(figsize=(9, 3))
    layers = [lm.name for lm in m.layers]
    bottom = np.zeros(cfg.n_pe)
    for name in layers:
        rows_used = np.zeros(cfg.n_pe)
        for b in m.blocks_of(name):
            rows_used[b.pe] += b.n_rows
        ax.bar(range(cfg.n_pe), rows_used, bottom=bottom, label=name)
        bottom += rows_used
    ax.axhline(cfg.array_rows, color="k", lw=0.8, ls="--")
    ax.set(xlabel="PE", ylabel="source lines used", title="array occupancy per PE")
    ax.legend(fontsize=8)
    pg.status["mapping"] = "ok"
    return (pg.figure(fig, "mapping") + _table(
        ["block", "layer", "chunk", "group", "copy", "PE", "source lines", "bit lines",
         "inputs", "reads/image"], rows, left=2))


def s_conductance(pg: _Page, cfg: SystemConfig, ctx: dict) -> str:
    paths = chip_states(pg.run)
    if not paths:
        pg.status["conductance"] = "missing"
        return _missing("chip state", "cim demo --out RUN (or cim program --out RUN/chip)")
    from cim_spec import chipstate
    path = max(paths, key=lambda p: p.stat().st_mtime)
    st = chipstate.load(path)
    used = np.zeros(st.codes.shape, dtype=bool)
    for b in st.mapping.blocks:
        used[b.pe, b.row0:b.row0 + b.n_rows, :b.n_in] = True
    pes = [pe for pe in range(st.config.n_pe) if used[pe].any()]
    cols = 4
    fig, axes = pg.plt.subplots(-(-len(pes) // cols), cols, figsize=(12, 2.6 * -(-len(pes)
                                                                              // cols)),
                                squeeze=False)
    top = int(max(st.codes[used].max(), st.target[used].max())) + 6
    bins = np.arange(0, top + 1) - 0.5
    rows = []
    for ax, pe in zip(axes.flat, pes, strict=False):
        t, c = st.target[pe][used[pe]], st.codes[pe][used[pe]]
        ax.hist(c, bins=bins, color="#f57900", label="programmed")
        ax.hist(t, bins=bins, histtype="step", color="#204a87", lw=1.2, label="target")
        ax.set_yscale("log")
        ax.set_title(f"PE {pe}", fontsize=9)
        ax.tick_params(labelsize=7)
        err = (c - t) * st.config.g_lsb_us
        rows.append([pe, int(used[pe].sum()), f"{err.mean():+.3f}", f"{err.std():.3f}",
                     int((np.abs(c - t) > st.config.state_step_code / 2).sum())])
    for ax in list(axes.flat)[len(pes):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.supxlabel("conductance code (x g_lsb_us)", fontsize=9)
    pg.status["conductance"] = "ok"
    return (f"<p>Chip state <code>{_e(path.name)}</code>, stage {_e(st.stage)}, seed "
            f"{st.seed}, preset {_e(st.device.name)}; used cells only.</p>"
            + pg.figure(fig, "conductance")
            + _table(["PE", "cells used", "mean error (uS)", "std (uS)",
                      "off by > half a state"], rows))


def s_accuracy(pg: _Page, cfg: SystemConfig, ctx: dict) -> str:
    st = load_json(pg.run / "stages.json")
    if not st or "stages" not in st:
        pg.status["accuracy"] = "missing"
        return _missing("stages.json", "cim demo --out RUN")
    rep = int(st.get("replication", 1))
    paper = PAPER_STAGES.get(rep, {})
    names = list(st["stages"])
    fig, ax = pg.plt.subplots(figsize=(8, 3))
    y = [100 * st["stages"][n] for n in names]
    ax.bar(range(len(names)), y, color="#3465a4", label="this run")
    px = [i for i, n in enumerate(names) if n in paper]
    ax.scatter(px, [100 * paper[names[i]] for i in px], color="#cc0000", zorder=3,
               label="paper")
    ax.set_xticks(range(len(names)), names, fontsize=8)
    ax.set(ylim=(min(y + [90]) - 2, 100), ylabel="accuracy (%)")
    ax.legend(fontsize=8)
    pg.status["accuracy"] = "ok"
    rows = [[n, f"{100 * st['stages'][n]:.2f}%",
             f"{100 * paper[n]:.2f}%" if n in paper else "-"] for n in names]
    return (f"<p>{st.get('images', '?')} MNIST test images, replication {rep}.</p>"
            + pg.figure(fig, "accuracy") + _table(["stage", "accuracy", "paper"], rows))


def s_device(pg: _Page, cfg: SystemConfig, ctx: dict) -> str:
    """Transfer accuracy against the programming error (default and hardware-aware weights),
    and accuracy against age without and with drift compensation."""
    sweep, dr = load_json(pg.run / "hwa_sweep.json"), load_json(pg.run / "drift.json")
    parts = []
    if sweep and dr:
        fig, (a1, a2) = pg.plt.subplots(1, 2, figsize=(11, 3.2))
    elif sweep or dr:
        fig, a1 = pg.plt.subplots(figsize=(6, 3.2))
        a2 = a1
    if sweep:
        for name, m in sweep["models"].items():
            a1.plot(sweep["x"], [100 * v for v in m["mean"]], "o-", label=name)
        a1.set(xlabel=f"{sweep['param']} (uS), preset {sweep['preset']}",
               ylabel="transfer accuracy (%)")
        a1.legend(fontsize=8)
        parts.append(f"<p>Transfer accuracy: {sweep['images']} test images, mean of chip seeds "
                     f"{', '.join(map(str, sweep['seeds']))}.</p>")
    else:
        parts.append(_missing("hwa_sweep.json", "python tools/device_sweeps.py hwa --run RUN"))
    if dr:
        for name, c in dr["chips"].items():
            ages = [max(a, 1.0) for a in c.get("ages_s", dr["ages_s"])]
            line, = a2.plot(ages, [100 * v for v in c["raw"]], "o--", label=f"{name}")
            a2.plot(ages, [100 * v for v in c["compensated"]], "s-", color=line.get_color(),
                    label=f"{name}, compensated")
            if c.get("recalibrated"):
                a2.plot(ages, [100 * v for v in c["recalibrated"]], "^:",
                        color=line.get_color(), label=f"{name}, recalibrated")
        a2.set(xscale="log", xlabel="age (s; 0 drawn at 1 s)", ylabel="accuracy (%)")
        a2.legend(fontsize=7)
        parts.append(f"<p>Drift: {dr['images']} test images per point"
                     + (f"; recalibration: hybrid training of the FC layer on "
                        f"{dr['recalibration_images']} labelled images after the new gains"
                        if dr.get("recalibration_images") else "") + ".</p>"
                     + _drift_table(dr))
    else:
        parts.append(_missing("drift.json", "python tools/device_sweeps.py drift --run RUN "
                              "--chip STATE"))
    pg.status["device"] = "ok" if sweep or dr else "missing"
    return "".join(parts) + (pg.figure(fig, "device") if sweep or dr else "")


def _drift_table(dr: dict) -> str:
    """Mean accuracy over the chips at each age (the chips that share the first one's ages)."""
    ages = dr["ages_s"]
    chips = [c for c in dr["chips"].values() if c.get("ages_s", ages) == ages]
    series = [k for k in ("raw", "compensated", "recalibrated")
              if chips and all(c.get(k) for c in chips)]
    rows = [[f"{a:g}"] + [f"{100 * sum(c[k][i] for c in chips) / len(chips):.2f}%"
                          for k in series] for i, a in enumerate(ages)]
    return (f"<p>Mean over {len(chips)} chip(s):</p>"
            + _table(["age (s)", *series], rows) if chips else "")


def s_rtl(pg: _Page, cfg: SystemConfig, ctx: dict) -> str:
    sim = ctx["sim"]
    if not sim:
        pg.status["rtl"] = "missing"
        return _missing("sim.json", "cim demo --out RUN (or cim sim --json > RUN/sim.json)")
    pg.status["rtl"] = "ok"
    note = ("<p class='missing'>This sim.json is a stand-in: " + _e(sim["stand_in"])
            + "</p>") if sim.get("stand_in") else ""
    be, n = sim.get("bitexact"), sim.get("images")
    # `cim sim` counts the bit-exact images; a bool is accepted too.
    exact = be is True or (not isinstance(be, bool) and isinstance(be, int) and be == n)
    verdict = ("<span class='good'>bit-exact on every image</span>" if exact else
               f"<span class='bad'>NOT bit-exact: {_e(be)} of {_e(n)} images agree</span>")
    rows = [[k, sim[k]] for k in ("images", "bitexact", "accuracy", "golden_accuracy",
                                  "cycles_per_image", "hw_images_per_s", "sim_images_per_s")
            if k in sim]
    return note + f"<p>RTL against the golden model: {verdict}.</p>" + _table(
        ["quantity", "value"], rows)


def s_cycles(pg: _Page, cfg: SystemConfig, ctx: dict) -> str:
    from cim_flows.energy import mapping_cycles
    bound = mapping_cycles(ctx["mapping"])
    meas = (ctx["sim"] or {}).get("cycles_per_layer") or {}
    layers = list(bound)
    fig, ax = pg.plt.subplots(figsize=(7, 3))
    x = np.arange(len(layers))
    ax.bar(x - 0.2, [bound[n] for n in layers], 0.4, label="mapping lower bound")
    if meas:
        ax.bar(x + 0.2, [meas.get(n, 0) for n in layers], 0.4, label="RTL simulation")
    ax.set_xticks(x, layers)
    ax.set(ylabel="cycles per image")
    ax.legend(fontsize=8)
    rows = [[n, f"{bound[n]:,}", f"{meas[n]:,}" if n in meas else "-"] for n in layers]
    pg.status["cycles"] = "ok" if meas else "missing"
    return ((_missing("measured cycles (sim.json)", "cim demo --out RUN")
             if not meas else "") + pg.figure(fig, "cycles")
            + _table(["layer", "lower bound", "measured"], rows))


def s_resources(pg: _Page, cfg: SystemConfig, ctx: dict) -> str:
    from cim_flows import asic_report
    from cim_flows.synth import _label
    files = sorted(pg.run.glob("synth_*.json"))
    if not files and not asic_report.results(pg.run):
        pg.status["resources"] = "missing"
        return _missing("synthesis result", "cim synth --target ecp5 --view fpga --out RUN")
    parts = [asic_report.resources_html(pg, pg.run)]
    for f in files:
        r = load_json(f)
        if not r or "modules" not in r:
            continue
        cols = r["columns"]
        rows = [[_label(row, "\u00a0\u00a0"),
                 *[f"{row['own'].get(c, 0):,.0f}" for c in cols]] for row in r["modules"]]
        rows.append(["total", *[f"{r['totals'].get(c, 0):,.0f}" for c in cols]])
        fit = "" if r["fits"] is None else (
            "<span class='good'>fits</span>" if r["fits"] else
            f"<span class='bad'>does not fit</span> ({_e(', '.join(r['over']))})")
        parts.append(f"<h3>{_e(r['design'])}, {_e(r['view'])} view, {_e(r['device'])} "
                     f"{fit}</h3>" + _table(["module", *cols], rows))
        key = cols[0]
        mods = [row for row in r["modules"] if row["depth"] == 1]
        if mods:
            fig, ax = pg.plt.subplots(figsize=(6, 1.2 + 0.22 * len(mods)))
            ax.barh([m["module"] for m in mods], [m["total"].get(key, 0) for m in mods])
            ax.set(xlabel=key, title=f"{r['target']} / {r['view']}")
            parts.append(pg.figure(fig, f.stem))
    pg.status["resources"] = "ok"
    return "".join(parts)


def s_timing(pg: _Page, cfg: SystemConfig, ctx: dict) -> str:
    from cim_flows import asic_report
    files = sorted(pg.run.glob("timing*.json"))
    asic = asic_report.timing_html(pg.run)
    if not files and not asic:
        pg.status["timing"] = "missing"
        return _missing("place-and-route result", "cim timing --out RUN")
    if not files:
        pg.status["timing"] = "ok"
        return asic
    rows, paths = [], []
    for f in files:
        r = load_json(f) or {}
        if "fmax_mhz" not in r:
            continue
        where = r.get("board") or "out of context"
        c = r.get("config", {})
        design = f"{r['design']} ({c.get('array_rows', '?')} x {c.get('array_cols', '?')}" + \
            (f", replication {c['replication']})" if r["design"] == "chip" and
             "replication" in c else ")")
        if r.get("fits") is False:
            rows.append([design, where, "-", "-", "does not fit: " + ", ".join(
                f"{k} {n:,} > {cap:,}" for k, (n, cap) in r["over"].items()), "-", "-", "-"])
            continue
        util = r.get("utilization", {})
        used = ", ".join(f"{k} {util[k]['used']:,}/{util[k]['available']:,}"
                         for k in ("TRELLIS_COMB", "TRELLIS_FF", "DP16KD", "MULT18X18D")
                         if k in util)
        rows.append([design, where, f"{r['fmax_mhz']:.1f}",
                     f"{r['target_mhz']:g}", "met" if r["met"] else "NOT met",
                     f"{Path(r['bitstream']).name} ({r['bitstream_bytes']:,} bytes)"
                     if r.get("bitstream") else "-",
                     used or "-", f"{r['seconds']:,.0f}" if r.get("seconds") else "-"])
        cp = r.get("critical_path")
        if cp:
            paths.append(f"<p>{_e(f.name)}: critical path {cp['delay_ns']:.2f} ns "
                         f"({cp.get('logic_ns', 0):.2f} logic, {cp.get('routing_ns', 0):.2f} "
                         f"routing) from "
                         f"<code>{_e(cp['start'])}</code> to <code>{_e(cp['end'])}</code> "
                         f"through {_e(' -> '.join(cp['through']) or '?')}</p>")
    for f in sorted(pg.run.glob("board_run*.json")):
        b = load_json(f) or {}
        if "images" in b:
            paths.append(f"<p>{_e(f.name)}: {b['images']} images over the board link "
                         f"({_e(str(b.get('port')))}), {b['bitexact']} bit-exact against the "
                         f"golden model, {b['images_per_s']} images/s measured; the link's "
                         f"rate allows {b.get('link_bound_images_per_s')} images/s "
                         f"(docs/board.md)</p>")
    for f in sorted(pg.run.glob("post_synth*.json")):
        b = load_json(f) or {}
        if "images" in b:
            paths.append(f"<p>{_e(f.name)}: the chip's ECP5 netlist (synth_ecp5, replication "
                         f"{b.get('replication', '?')}) on {_e(str(b.get('simulator')))}: "
                         f"{b['bitexact']} of {b['images']} images bit-exact against the "
                         f"golden model ({b.get('total_s', '?')} s: synthesis "
                         f"{b.get('synth_s', '?')}, build {b.get('build_s', '?')}, simulation "
                         f"{b.get('sim_s', '?')})</p>")
    pg.status["timing"] = "ok"
    return _table(["design", "placement", "Fmax (MHz)", "target (MHz)", "timing",
                   "bitstream", "used / available", "build (s)"], rows, left=2) + \
        "".join(paths) + asic


def s_energy(pg: _Page, cfg: SystemConfig, ctx: dict) -> str:
    from cim_flows import energy
    bench = energy.benchmark()
    cycles = measured_cycles(pg.run)
    gates, src = digital_nand2_eq(pg.run)
    systems = {r: energy.system(cfg.with_(replication=r), digital_nand2_eq=gates,
                                cycles_per_image=cycles.get(r))
               for r in sorted({1, 3, cfg.replication})}
    comp = list(bench["energy_pj"])
    fig, axes = pg.plt.subplots(1, 2, figsize=(11, 3.2))
    for ax, (title, e) in zip(axes, [("benchmark core, pJ per 8-bit VMM", bench["energy_pj"]),
                                     ("mCNN, nJ per image", {k: v / 1e3 for k, v in
                                      systems[cfg.replication]["energy_pj"].items()})],
                              strict=True):
        ax.barh(comp, [e[k] for k in comp], color="#4e9a06")
        ax.set_title(title, fontsize=9)
        ax.tick_params(labelsize=8)
    dev = bench["gops_per_w"] / energy.PAPER_GOPS_PER_W - 1
    rows = [["paper benchmark core", f"{bench['gops_per_w']:,.0f}",
             f"{bench['gops_per_mm2']:,.0f}", f"{bench['gops_per_mm2']:,.0f}",
             f"{bench['gops']:.2f}", f"11,014 ({100 * dev:+.1f}%) / 1,164 (calibrated)"]]
    for r, s in systems.items():
        rows.append([f"mCNN, replication {r} ({s['cycles_source']})",
                     f"{s['gops_per_w']:,.0f}", f"{s['gops_per_mm2']:,.2f}",
                     f"{s['macro_gops_per_mm2']:,.2f}", f"{s['gops']:.3f}",
                     f"{s['energy_per_image_uj']:.3f} uJ/image"])
    area = systems[cfg.replication]["area_um2"]
    pg.status["energy"] = "ok"
    return (_table(["", "GOPS/W", "GOPS/mm^2", "GOPS/mm^2 (macros only)", "GOPS",
                    "paper / per image"], rows)
            + pg.figure(fig, "energy")
            + "<p>Area of the configured chip (um^2): " + _e(", ".join(
                f"{k} {v:,.0f}" for k, v in area.items()))
            + (f" (digital periphery from {_e(src)})" if src else
               " (digital periphery not counted: run <code>cim synth --out RUN</code>)")
            + "</p><h3>Assumptions</h3><ul class='assumptions'>"
            + "".join(f"<li>{_e(a)}</li>" for a in energy.assumptions()) + "</ul>")


def s_sweep(pg: _Page, cfg: SystemConfig, ctx: dict) -> str:
    from .sweep_report import section
    return section(pg)


def s_coverage(pg: _Page, cfg: SystemConfig, ctx: dict) -> str:
    from .coverage_report import section
    return section(pg)


_BUILDERS = {"artifacts": s_artifacts, "mapping": s_mapping, "conductance": s_conductance,
             "accuracy": s_accuracy, "device": s_device, "rtl": s_rtl, "cycles": s_cycles,
             "resources": s_resources, "timing": s_timing, "energy": s_energy,
             "sweep": s_sweep, "coverage": s_coverage}


def _config(run: Path, cfg: SystemConfig | None) -> tuple[SystemConfig, str]:
    if cfg is not None:
        return cfg, "from the command line"
    for p in chip_states(run):
        return SystemConfig.from_dict(load_json(p)["config"]), f"from {p.name}"
    st = load_json(run / "stages.json")
    if st and "replication" in st:
        return SystemConfig(replication=int(st["replication"])), "stages.json's replication"
    return SystemConfig(), "default"


def page_dir(run: Path, out: Path | None = None) -> Path:
    return Path(out) if out is not None else Path(run) / "report"


def check_output(run: Path, out: Path | None = None, force: bool = False) -> None:
    """Before any work: the page (index.html, the last file written) is new, or `force`."""
    d = page_dir(run, out)
    files.check_output(d, {files.DIRECTORY}, force)
    files.check_output(d / "index.html", {files.OTHER}, force)


def build(run: Path, out: Path | None = None, cfg: SystemConfig | None = None,
          progress: bool = True) -> dict:
    """Write RUN/report/index.html (or OUT/index.html) and its PNGs."""
    from cim_spec.mapping import map_network
    from cim_spec.network import MCNN
    run = Path(run)
    if not run.is_dir():
        raise ConfigError(f"run directory {run} does not exist (the flow commands create it: "
                          f"their --out / --run default is build/run)")
    out = page_dir(run, out)
    cfg, source = _config(run, cfg)
    ctx = {"mapping": map_network(cfg, MCNN), "sim": load_json(run / "sim.json"),
           "cfg_source": source}
    pg = _Page(run, out)
    parts = []
    for sid, title in SECTIONS:
        t0 = time.time()
        body = _BUILDERS[sid](pg, cfg, ctx)
        parts.append(f"<section id='{sid}'><h2>{_e(title)}</h2>{body}</section>")
        if progress:
            print(f"report: {title}: {pg.status[sid]} ({time.time() - t0:.1f} s)",
                  file=sys.stderr)
    nav = "".join(f"<a href='#{sid}'>{_e(t)}</a>" for sid, t in SECTIONS)
    page = string.Template(TEMPLATE.read_text()).substitute(
        title="Memristor CIM run report", nav=nav, sections="\n".join(parts),
        meta=_e(f"generated {time.strftime('%Y-%m-%d %H:%M:%S')} from {run}"))
    files.write_text(out / "index.html", page)
    return {"page": str(out / "index.html"), "sections": dict(pg.status)}


def _browser(args: list[str], timeout: float = 120) -> str:
    """Run headless Chromium (a real browser) with a throwaway profile; its stdout."""
    import shutil
    import subprocess
    import tempfile
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        raise ConfigError("no chromium on PATH (Debian: apt-get install chromium)")
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run([exe, *BROWSER_FLAGS, f"--user-data-dir={profile}", *args],
                              check=True, timeout=timeout, capture_output=True,
                              text=True).stdout


def screenshot(page: Path, png: Path, width: int = 1280, height: int = 9000) -> Path:
    """The page as Chromium draws it, `width` x `height` pixels, into `png`."""
    _browser([f"--window-size={width},{height}", f"--screenshot={Path(png).resolve()}",
              Path(page).resolve().as_uri()])
    return Path(png)


def dump_dom(page: Path) -> str:
    """The DOM after the page's load event (the template records sections and figures)."""
    return _browser(["--virtual-time-budget=10000", "--dump-dom",
                     Path(page).resolve().as_uri()])


BROWSER_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--hide-scrollbars"]
