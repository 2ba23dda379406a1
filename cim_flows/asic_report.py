"""The ASIC flow's results as text (`cim asic`) and in `cim report`: area per module and the
critical path.

The report's "Resources per module" and "Fmax" sections call these with the run directory's
``asic_<design>.json`` files (written by `cim asic --out RUN`).
"""

from __future__ import annotations

import json
from pathlib import Path

from .report_page import _e, _table


def results(run: Path) -> list[tuple[Path, dict]]:
    out = []
    for f in sorted(Path(run).glob("asic_*.json")):
        try:
            r = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        if "modules" in r and "timing" in r:
            out.append((f, r))
    return out


NAND2_CELL = "NAND2X1"


def nand2_eq(run: Path) -> tuple[float | None, str | None]:
    """The digital periphery in NAND2 equivalents from `cim asic` (chip, else PE x n_pe):
    the standard cells' area without the ADC module (its gain is analog in silicon), over the
    OSU018 NAND2X1's area. The energy model then prices a NAND2 at its own node (130 nm), so
    the node scaling is the ratio of the two libraries' NAND2 areas (docs/asic.md)."""
    from cim_spec.config import SystemConfig

    from .asic import cell_areas
    for name, per_pe in (("asic_chip.json", False), ("asic_pe.json", True)):
        f = Path(run) / name
        try:
            r = json.loads(f.read_text())
            nand2 = cell_areas(Path(r["work_dir"]) / "osu018_stdcells.lib")[NAND2_CELL]
        except (OSError, ValueError, KeyError):
            continue
        adc = sum(row["total"]["area_um2"] for row in r["modules"]
                  if row["module"].split(".")[-1] == "adc")
        gates = (r["totals"]["area_um2"] - adc) / nand2
        if per_pe:
            gates *= SystemConfig.from_dict(r["config"]).n_pe
        return gates, name
    return None, None


# E ~ C V^2 with C ~ feature size: OSU018 (0.18 um, 1.8 V) -> the energy model's node (130 nm,
# 1.2 V), as the energy model scales Horowitz's 45 nm figures (docs/energy.md).
OSU018_TO_130NM = (0.13 / 0.18) * (1.2 / 1.8) ** 2


def periphery_energy(run: Path) -> tuple[float | None, str | None, int | None]:
    """The chip periphery's energy per image in pJ at the energy model's node, from `cim asic
    --design chip --images N --power` (OpenSTA's report_power with the activity of N - 1
    MNIST images through the netlist, scaled by OSU018_TO_130NM), the file and the chip's
    replication; Nones without one."""
    f = Path(run) / "asic_chip.json"
    try:
        r = json.loads(f.read_text())
        uj = float(r["gate_level"]["power"]["uj_per_image"])
        replication = int(r["config"].get("replication", 1))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None, None, None
    return uj * 1e6 * OSU018_TO_130NM, f.name, replication


def resources_html(pg, run: Path) -> str:
    """One table (and a bar chart) per ASIC result: cells, flip-flops and um^2 per module."""
    parts = []
    for f, r in results(run):
        t = r["totals"]
        logic = t["area_um2"] or 1.0
        rows = [["\u00a0\u00a0" * row["depth"] + row["module"].split(".")[-1],
                 f"{row['own']['cells']:,}", f"{row['own']['ff']:,}",
                 f"{row['own']['area_um2']:,.0f}", f"{row['total']['area_um2']:,.0f}",
                 f"{100 * row['total']['area_um2'] / logic:.1f}%"] for row in r["modules"]]
        m = r["macro"]
        rows += [["standard cells", f"{t['cells']:,}", f"{t['ff']:,}",
                  f"{t['area_um2']:,.0f}", "", ""],
                 [f"crossbar macros ({m['rows']} x {m['cols']}, assumed)", f"{t['macros']}",
                  "", f"{t['macro_area_um2']:,.0f}", "", ""]]
        parts.append(f"<h3>{_e(r['design'])} on {_e(r['library'])}, ASIC view (crossbar = "
                     f"hard macro), area in um^2</h3>"
                     + _table(["module", "cells", "flip-flops", "area", "with submodules",
                               "share"], rows))
        mods = [row for row in r["modules"] if row["depth"] == 1]
        if mods and len(mods) <= 60:
            fig, ax = pg.plt.subplots(figsize=(6, 1.2 + 0.22 * len(mods)))
            ax.barh([x["module"] for x in mods], [x["total"]["area_um2"] / 1e6 for x in mods])
            ax.set(xlabel="mm^2 (standard cells)", title=f"{r['design']} / OSU018")
            parts.append(pg.figure(fig, f.stem))
    return "".join(parts)


def timing_html(run: Path) -> str:
    """OpenSTA's figures per ASIC result and the critical path cell by cell."""
    res = results(run)
    if not res:
        return ""
    rows, paths = [], []
    for _, r in res:
        s = r["timing"]
        rows.append([r["design"], f"{s['clock_mhz']:g}", f"{s['worst_setup_slack_ns']:.3f}",
                     f"{s['wns_ns']:.3f}", f"{s['tns_ns']:.3f}", f"{s['fmax_mhz']:.1f}",
                     "met" if s["met"] else "NOT met"])
        cp = s["critical_path"]
        per = s.get("per_module", {})
        if per:
            paths.append(f"<h3>{_e(r['design'])}: worst path into each module's flip-flops"
                         f"</h3>" + _table(["module", "endpoint", "arrival (ns)", "slack (ns)",
                                            "Fmax (MHz)"],
                                           [[k, v["endpoint"], f"{v['arrival_ns']:.3f}",
                                             f"{v['slack_ns']:.3f}", f"{v['fmax_mhz']:.1f}"]
                                            for k, v in per.items()], left=2))
        pts = [[f"{p['arrival_ns']:.3f}", f"{p['incr_ns']:+.3f}", p["cell"], p["pin"],
                p["module"]] for p in cp["points"]
               if p["pin"].rsplit("/", 1)[-1] in ("Y", "Q", "YS", "YC") or p is cp["points"][-1]
               or p is cp["points"][0]]
        paths.append(f"<h3>{_e(r['design'])}: critical path <code>{_e(cp['startpoint'])}"
                     f"</code> to <code>{_e(cp['endpoint'])}</code>, slack "
                     f"{cp['slack_ns']:.3f} ns, through {_e(' -> '.join(s['critical_modules']))}"
                     f"</h3>" + _table(["arrival (ns)", "delay", "cell", "pin", "module"], pts,
                                       left=0))
    return ("<h3>ASIC: static timing (OpenSTA) on OSU018, typical corner</h3>"
            + _table(["design", "clock (MHz)", "worst slack (ns)", "WNS (ns)", "TNS (ns)",
                      "Fmax (MHz)", "timing"], rows) + "".join(paths))


def _label(row: dict) -> str:
    return "  " * row["depth"] + (row["module"].split(".")[-1] if row["depth"] else
                                  row["module"])


def table_text(r: dict) -> str:
    t = r["totals"]
    width = max(len(_label(row)) for row in r["modules"]) + 2
    head = (f"{'module':<{width}}{'cells':>9}{'flip-flops':>12}{'area um2':>13}"
            f"{'with submodules':>17}{'share':>8}")
    logic = t["area_um2"] or 1.0
    lines = [f"{r['design']} on {r['library']}, ASIC view (crossbar = hard macro)", "",
             head, "-" * len(head)]
    for row in r["modules"]:
        o, tt = row["own"], row["total"]
        lines.append(f"{_label(row):<{width}}{o['cells']:>9,}{o['ff']:>12,}"
                     f"{o['area_um2']:>13,.0f}{tt['area_um2']:>17,.0f}"
                     f"{100 * tt['area_um2'] / logic:>7.1f}%")
    lines.append("-" * len(head))
    lines.append(f"{'standard cells':<{width}}{t['cells']:>9,}{t['ff']:>12,}"
                 f"{t['area_um2']:>13,.0f}")
    m = r["macro"]
    lines.append(f"{'crossbar macros':<{width}}{t['macros']:>9,}{'':>12}"
                 f"{t['macro_area_um2']:>13,.0f}   ({m['rows']} x {m['cols']} cells each, "
                 f"assumed area)")
    lines.append(f"{'total':<{width}}{'':>21}{t['area_um2'] + t['macro_area_um2']:>13,.0f}")
    s = r["timing"]
    cp = s["critical_path"]
    lines += ["", f"static timing (OpenSTA, {s['corner']}) at {s['clock_mhz']:g} MHz:",
              f"  worst setup slack {s['worst_setup_slack_ns']:.3f} ns, WNS "
              f"{s['wns_ns']:.3f} ns, TNS {s['tns_ns']:.3f} ns, worst hold slack "
              f"{s['worst_hold_slack_ns']:.3f} ns: {'MET' if s['met'] else 'VIOLATED'}",
              f"  Fmax {s['fmax_mhz']:.1f} MHz",
              f"  critical path {cp['startpoint']} -> {cp['endpoint']}, "
              f"{cp['points'][-1]['arrival_ns'] if cp['points'] else 0:.3f} ns through "
              + " -> ".join(s["critical_modules"])]
    if s.get("per_module"):
        lines.append("  worst path into each module's flip-flops: " + ", ".join(
            f"{k} {v['arrival_ns']:.2f} ns ({v['fmax_mhz']:.0f} MHz)"
            for k, v in s["per_module"].items()))
    for pt in cp["points"]:
        if pt["pin"].endswith(("/Y", "/Q", "/YS", "/YC")) or "/" not in pt["pin"] \
                or pt is cp["points"][-1]:
            lines.append(f"    {pt['arrival_ns']:7.3f} {pt['incr_ns']:+7.3f}  "
                         f"{pt['cell']:<10} {pt['pin']}")
    g = r.get("gate_level")
    if g:
        lines += ["", f"gate-level simulation ({g['simulator']}, OSU018 cell models from the "
                      f"{g.get('models', 'package')} + behavioral crossbar):"]
        if "images" in g:
            lines.append(f"  {g['images']} images, {g['bitexact']}/{g['images']} bit-exact "
                         f"with the golden model after {g['cells_programmed']:,} cell writes; "
                         f"{g['cycles_image']:,} cycles per image")
        else:
            lines.append(f"  {g['vectors']} random vectors, {g['bitexact']}/{g['sums']} partial "
                         f"sums bit-exact with the golden model; {g['vector_cycles']:,} cycles "
                         f"at {g['cycles_per_s']:,.0f} cycles/s")
    tm = r["times"]
    lines += ["", "seconds: " + ", ".join(f"{k[:-2]} {v:g}" for k, v in tm.items())]
    return "\n".join(lines)
