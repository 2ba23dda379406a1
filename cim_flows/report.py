"""`cim report`: one HTML page (and the PNGs it shows) from a run directory.

A run directory holds the JSON artifacts the other commands write (docs/synthesis.md):
``stages.json``, ``sim.json`` and a chip state (``*.json`` + ``*.npz``) from `cim demo --out`
(or `cim sim --json`, `cim program`, `cim hybrid`), ``synth_<design>_<target>_<view>.json``
(`cim synth`), ``timing_<design>[_<board>].json`` (`cim timing`), ``hwa_sweep.json`` and
``drift.json`` (tools/device_sweeps.py). The page is of the run's network: the newest chip
state's, on its own mapping (any network `cim import` brought in), else the bundled mCNN
(cim_flows.report_run). What is cheap (mapping, cycles bound, energy) is computed here. A
section whose artifact is missing says which command makes it.

Modules: report_page (primitives), report_run (reading the run directory), report_network
(mapping, cycles, energy), report_results (conductances, accuracy, device, RTL), report_impl
(resources, timing), sweep_report, coverage_report; this one assembles the page and drives
the browser.
"""

from __future__ import annotations

import string
import sys
import time
from pathlib import Path

from cim_spec import files
from cim_spec.config import ConfigError, SystemConfig

from .report_impl import s_resources, s_timing
from .report_network import s_cycles, s_energy, s_mapping
from .report_page import _e, _Page, _table, load_json  # noqa: F401 (interface)
from .report_results import PAPER_STAGES, s_accuracy, s_conductance, s_device, s_rtl  # noqa: F401
from .report_run import (  # noqa: F401 (interface: cim energy --run reads these)
    RunInfo,
    chip_states,
    digital_nand2_eq,
    measured_cycles,
    read_run,
)

TEMPLATE = Path(__file__).resolve().parent / "report_template.html"
SECTIONS = [("artifacts", "Run"), ("mapping", "Mapping"), ("conductance", "Conductances"),
            ("accuracy", "Accuracy per stage"), ("device", "Device errors and drift"),
            ("rtl", "RTL vs golden"),
            ("cycles", "Cycles per layer"), ("resources", "Resources per module"),
            ("timing", "Fmax"), ("energy", "Energy and area"), ("sweep", "Sweep"),
            ("coverage", "Verification coverage")]


def s_artifacts(pg: _Page, ri: RunInfo) -> str:
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
    conf = ", ".join(f"{k}={v}" for k, v in ri.cfg.to_dict().items())
    return (f"<p>Run directory <code>{_e(pg.run.resolve())}</code> "
            f"(RUN below). Network: <b>{_e(ri.label)}</b> ({_e(ri.network_source)}). "
            f"Configuration ({_e(ri.cfg_source)}): <code>{_e(conf)}</code></p>"
            + _table(["artifact", "files", "made by"], rows, left=3))


def s_sweep(pg: _Page, ri: RunInfo) -> str:
    from .sweep_report import section
    return section(pg)


def s_coverage(pg: _Page, ri: RunInfo) -> str:
    from .coverage_report import section
    return section(pg)


_BUILDERS = {"artifacts": s_artifacts, "mapping": s_mapping, "conductance": s_conductance,
             "accuracy": s_accuracy, "device": s_device, "rtl": s_rtl, "cycles": s_cycles,
             "resources": s_resources, "timing": s_timing, "energy": s_energy,
             "sweep": s_sweep, "coverage": s_coverage}


def page_dir(run: Path, out: Path | None = None) -> Path:
    return Path(out) if out is not None else Path(run) / "report"


def check_output(run: Path, out: Path | None = None, force: bool = False) -> None:
    """Before any work: the page (index.html, the last file written) is new, or `force`."""
    d = page_dir(run, out)
    files.check_output(d, {files.DIRECTORY}, force)
    files.check_output(d / "index.html", {files.OTHER}, force)


def build(run: Path, out: Path | None = None, cfg: SystemConfig | None = None,
          progress: bool = True) -> dict:
    """Write RUN/report/index.html (or OUT/index.html) and its PNGs; the sections' status
    and the network the page is of."""
    run = Path(run)
    if not run.is_dir():
        raise ConfigError(f"run directory {run} does not exist (the flow commands create it: "
                          f"their --out / --run default is build/run)")
    out = page_dir(run, out)
    ri = read_run(run, cfg)
    pg = _Page(run, out)
    parts = []
    for sid, title in SECTIONS:
        t0 = time.time()
        body = _BUILDERS[sid](pg, ri)
        parts.append(f"<section id='{sid}'><h2>{_e(title)}</h2>{body}</section>")
        if progress:
            print(f"report: {title}: {pg.status[sid]} ({time.time() - t0:.1f} s)",
                  file=sys.stderr)
    nav = "".join(f"<a href='#{sid}'>{_e(t)}</a>" for sid, t in SECTIONS)
    page = string.Template(TEMPLATE.read_text()).substitute(
        title=f"Memristor CIM run report: {_e(ri.label)}", nav=nav,
        sections="\n".join(parts),
        meta=_e(f"generated {time.strftime('%Y-%m-%d %H:%M:%S')} from {run}"))
    files.write_text(out / "index.html", page)
    return {"page": str(out / "index.html"), "network": ri.network.name,
            "sections": dict(pg.status)}


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
