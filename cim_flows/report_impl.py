"""The implementation sections of `cim report`: resources per module from synthesis
(`cim synth`, `cim asic`) and the maximum clock from place and route or static timing (`cim
timing`, `cim asic`), with the board and post-synthesis runs that the run directory holds.
"""

from __future__ import annotations

from pathlib import Path

from .report_page import _e, _missing, _Page, _table, load_json
from .report_run import RunInfo


def s_resources(pg: _Page, ri: RunInfo) -> str:
    from . import asic_report
    from .synth import _label
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


def s_timing(pg: _Page, ri: RunInfo) -> str:
    from . import asic_report
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
