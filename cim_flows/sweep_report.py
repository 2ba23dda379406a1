"""The sweep section of `cim report`: accuracy against each axis of a `cim sweep` table, with
the spread over chip instances (cim_flows.report calls it; primitives from report_page)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .report_page import _e, _missing, _table, load_json
from .sweep import read_table


def sweep_dir(run: Path) -> Path | None:
    """Where `cim sweep --out` put its table: the run directory or RUN/sweep."""
    for d in (Path(run), Path(run) / "sweep"):
        if (d / "sweep.json").is_file() and (d / "sweep.parquet").is_file():
            return d
    return None


def section(pg) -> str:
    """The report section: accuracy against each axis with the spread over chips."""
    d = sweep_dir(pg.run)
    meta = load_json(d / "sweep.json") if d else None
    if not meta or "spec" not in meta:
        pg.status["sweep"] = "missing"
        return _missing("sweep table", "cim sweep SPEC.toml --out RUN/sweep")
    axes = list(meta["spec"]["axes"])
    stages = [c for c in meta["columns"] if c.startswith("accuracy_")]
    rows = [r for r in read_table(d / "sweep.parquet") if r["status"] == "ok"]
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault(tuple(r[a] for a in axes), []).append(r)
    fig, axs = pg.plt.subplots(1, len(axes), figsize=(4 * len(axes) + 1, 3.2), squeeze=False)
    for i, (ax, name) in enumerate(zip(axs[0], axes, strict=True)):
        xs = sorted({k[i] for k in groups})
        for s in stages:
            # Per combination: mean and spread over the chips; per x: their mean over the
            # combinations of the other axes.
            per = [[100 * np.array([r[s] for r in g]) for k, g in groups.items() if k[i] == x]
                   for x in xs]
            ax.errorbar(xs, [np.mean([a.mean() for a in p]) for p in per],
                        yerr=[np.mean([a.std() for a in p]) for p in per], marker="o",
                        capsize=3, label=s.removeprefix("accuracy_"))
        ax.set(xlabel=name, ylabel="accuracy (%)")
    axs[0][0].legend(fontsize=7)
    pg.status["sweep"] = "ok"
    head = [*axes, "chips", *(s.removeprefix("accuracy_") + " (%)" for s in stages),
            "uJ/image", "area (mm^2)"]
    table = []
    for k, g in list(groups.items())[:60]:
        acc = [100 * np.array([r[s] for r in g]) for s in stages]
        table.append([*k, len(g), *(f"{a.mean():.2f} +- {a.std():.2f}" for a in acc),
                      f"{g[0]['energy_per_image_uj']:.3f}", f"{g[0]['area_mm2']:.3f}"])
    return (f"<p>{len(rows)} points of <code>{_e(meta['spec'].get('path'))}</code> "
            f"({meta['done']} done, {meta['failed']} failed, {meta['remaining']} not run), "
            f"{len(meta['spec']['seeds'])} chips per combination, "
            f"{rows[0]['images'] if rows else '?'} test images. Each point: mean over the "
            f"other axes; error bars: the standard deviation over chips.</p>"
            + pg.figure(fig, "sweep") + _table(head, table, left=0)
            + ("<p>(first 60 combinations)</p>" if len(groups) > 60 else ""))
