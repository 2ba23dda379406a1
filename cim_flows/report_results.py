"""The sections of `cim report` that show what was measured on the run's chip: the
programmed conductances of the chip state, the accuracy per stage (against the paper's where
the network is the mCNN), the device errors and drift (tools/device_sweeps.py), and the RTL
against the golden model (sim.json).
"""

from __future__ import annotations

import numpy as np

from .report_page import _e, _missing, _Page, _table, load_json
from .report_run import RunInfo

# What the paper reports for the stages `cim demo` prints (README.md, Results), by replication:
# the mCNN's, so only an mCNN run is compared with them.
PAPER_STAGES = {1: {"float (software)": 0.9799, "after transfer": 0.9507,
                    "after hybrid training": 0.9619},
                3: {"float (software)": 0.9799, "after transfer": 0.9386,
                    "after hybrid training": 0.9583}}


def s_conductance(pg: _Page, ri: RunInfo) -> str:
    st = ri.state
    if st is None:
        pg.status["conductance"] = "missing"
        return _missing("chip state", "cim demo --out RUN (or cim program --out RUN/chip)")
    used = np.zeros(st.codes.shape, dtype=bool)
    for b in st.mapping.blocks:
        used[b.pe, b.row0:b.row0 + b.n_rows, :b.n_in] = True
    pes = [pe for pe in range(st.config.n_pe) if used[pe].any()]
    cols = 4
    n_rows = -(-len(pes) // cols)
    fig, axes = pg.plt.subplots(n_rows, cols, figsize=(12, 2.6 * n_rows), squeeze=False)
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
    return (f"<p>Chip state <code>{_e(ri.state_path.name)}</code> ({_e(ri.label)}), stage "
            f"{_e(st.stage)}, seed {st.seed}, preset {_e(st.device.name)}; used cells only.</p>"
            + pg.figure(fig, "conductance")
            + _table(["PE", "cells used", "mean error (uS)", "std (uS)",
                      "off by > half a state"], rows))


def s_accuracy(pg: _Page, ri: RunInfo) -> str:
    st = load_json(pg.run / "stages.json")
    if not isinstance(st, dict) or "stages" not in st:
        pg.status["accuracy"] = "missing"
        return _missing("stages.json", "cim demo --out RUN")
    rep = int(st.get("replication", 1))
    # The stages' network: the one stages.json names (`cim demo` records it), else the run's.
    name = st.get("network")
    if name is None or name == ri.network.name:
        mcnn, label = ri.is_mcnn, ri.label
    else:
        mcnn, label = name == "mcnn", "mCNN" if name == "mcnn" else name
    paper = PAPER_STAGES.get(rep, {}) if mcnn else {}
    names = list(st["stages"])
    fig, ax = pg.plt.subplots(figsize=(8, 3))
    y = [100 * st["stages"][n] for n in names]
    ax.bar(range(len(names)), y, color="#3465a4", label="this run")
    px = [i for i, n in enumerate(names) if n in paper]
    if px:
        ax.scatter(px, [100 * paper[names[i]] for i in px], color="#cc0000", zorder=3,
                   label="paper")
    ax.set_xticks(range(len(names)), names, fontsize=8)
    ax.set(ylim=(min(y + [90]) - 2, 100), ylabel="accuracy (%)", title=label)
    ax.legend(fontsize=8)
    pg.status["accuracy"] = "ok"
    if mcnn:
        rows = [[n, f"{100 * st['stages'][n]:.2f}%",
                 f"{100 * paper[n]:.2f}%" if n in paper else "-"] for n in names]
        table = _table(["stage", "accuracy", "paper"], rows)
    else:
        table = _table(["stage", "accuracy"],
                       [[n, f"{100 * st['stages'][n]:.2f}%"] for n in names])
    return (f"<p>{_e(label)} on {_e(st.get('images', '?'))} MNIST test images, replication "
            f"{rep}" + ("" if mcnn else " (the paper's stages are of its own network: no "
                           "comparison)")
            + ".</p>" + pg.figure(fig, "accuracy") + table)


def s_device(pg: _Page, ri: RunInfo) -> str:
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


def s_rtl(pg: _Page, ri: RunInfo) -> str:
    sim = ri.sim
    if not sim:
        pg.status["rtl"] = "missing"
        return _missing("sim.json", "cim demo --out RUN (or cim sim --json > RUN/sim.json)")
    pg.status["rtl"] = "ok"
    note = ("<p class='missing'>This sim.json is a stand-in: " + _e(sim["stand_in"])
            + "</p>") if sim.get("stand_in") else ""
    if not ri.sim_of_network():
        note += (f"<p class='missing'>This sim.json is not of this run's network at its "
                 f"replication ({_e(ri.label)}, replication {ri.cfg.replication}).</p>")
    be, n = sim.get("bitexact"), sim.get("images")
    # `cim sim` counts the bit-exact images; a bool is accepted too.
    exact = be is True or (not isinstance(be, bool) and isinstance(be, int) and be == n)
    verdict = ("<span class='good'>bit-exact on every image</span>" if exact else
               f"<span class='bad'>NOT bit-exact: {_e(be)} of {_e(n)} images agree</span>")
    rows = [[k, sim[k]] for k in ("network", "images", "bitexact", "accuracy",
                                  "golden_accuracy", "cycles_per_image", "hw_images_per_s",
                                  "sim_images_per_s")
            if k in sim]
    return note + f"<p>RTL against the golden model: {verdict}.</p>" + _table(
        ["quantity", "value"], rows)
