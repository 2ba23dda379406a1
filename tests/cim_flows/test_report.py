"""`cim report`: the page renders in a real browser and shows every section.

The run directory is made by the real commands on quick settings: 100 test images without the
transfer/hybrid rows and without RTL, a transferred chip state, the PE's ASIC view on ECP5, and
place and route of a small PE (whose result is checked here too). The one stand-in is
sim.json: `cim demo` / `cim sim` build the whole chip with Verilator (minutes), so it is
written here from the golden model and says so (`stand_in`), which the page shows.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from cim_cli.main import main
from cim_flows import report
from cim_spec.config import SystemConfig

SECTION_IDS = [sid for sid, _ in report.SECTIONS]
TOOLS = Path(__file__).resolve().parents[2] / "tools"


def _cim(*argv) -> str:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(list(argv)) == 0
    return buf.getvalue()


def _stand_in_sim(run, n=50):
    from cim_flows import stages
    from cim_flows.energy import mapping_cycles
    from cim_spec.mapping import map_network
    from cim_spec.network import MCNN
    from golden import chip_model, data
    cfg = SystemConfig()
    mapping, prog = stages.ideal_program(cfg, stages.load_model())
    d = data.load_bundled()
    res = chip_model.run(prog.chip(mapping), d.test_images[:n])
    bound = mapping_cycles(map_network(cfg, MCNN))
    (run / "sim.json").write_text(json.dumps({
        "stand_in": "written by tests/cim_flows/test_report.py from the golden model; no RTL "
                    "ran (make the real one with cim sim --json)",
        "images": n, "bitexact": n,
        "accuracy": float((res.predictions == d.test_labels[:n]).mean()),
        "cycles_per_image": sum(bound.values()), "cycles_per_layer": bound,
        "sim_images_per_s": None}))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    (run / "stages.json").write_text(_cim("demo", "--limit", "100", "--no-chip",
                                          "--rtl-images", "0", "--json"))
    _cim("program", "--out", str(run / "chip"), "--json")
    _cim("synth", "--target", "ecp5", "--view", "asic", "--out", str(run), "--quiet")
    tiny = run / "tiny.toml"
    tiny.write_text("[system]\nn_pe = 1\narray_rows = 8\narray_cols = 8\nadcs_per_pe = 2\n")
    printed = _cim("timing", "--config", str(tiny), "--out", str(run), "--quiet", "--json")
    assert json.loads(printed) == json.loads((run / "timing_pe.json").read_text())
    _stand_in_sim(run)
    spec = run / "sweep.toml"
    spec.write_text("[sweep]\nseeds = [1, 2]\nimages = 50\n[axes]\n"
                    "'device.relax_sigma_us' = [0.3, 0.9]\n")
    _cim("sweep", str(spec), "--out", str(run / "sweep"), "--workers", "0", "--json")
    # The device figures on quick settings (tools/device_sweeps.py; the bundled subset).
    tool = importlib.util.spec_from_file_location("device_sweeps", TOOLS / "device_sweeps.py")
    device_sweeps = importlib.util.module_from_spec(tool)
    tool.loader.exec_module(device_sweeps)
    assert device_sweeps.main(["hwa", "--run", str(run), "--sigmas", "0.5,1.0", "--seeds", "1",
                               "--limit", "100"]) == 0
    assert device_sweeps.main(["drift", "--run", str(run), "--chip", str(run / "chip"),
                               "--ages", "0,86400", "--limit", "100", "--recalibrate",
                               "50"]) == 0
    _functional_coverage(run)
    return run


def _functional_coverage(run):
    """RUN/coverage.json with the functional bins only (the real one also has Verilator's
    coverage: benchmarks/coverage_run.py); the golden side of the chip regression's chip."""
    from cim_flows import stages
    from cim_spec import files
    from golden import data
    from testbench import coverage
    mapping, prog = stages.ideal_program(SystemConfig(), stages.load_model())
    images = data.load_bundled().test_images[:3]
    func = coverage.functional([("mCNN r1", prog.chip(mapping), images, np.arange(3), {})])
    files.write_json(run / "coverage.json", coverage.report(func, None, []))


@pytest.fixture(scope="module")
def page(run):
    t0 = time.time()
    res = json.loads(_cim("report", "--run", str(run), "--json", "--quiet"))
    return res, time.time() - t0


def test_place_and_route_of_a_small_pe(run):
    """The run's timing artifact: nextpnr-ecp5 out of context on a PE of 8 x 8 cells."""
    r = json.loads((run / "timing_pe.json").read_text())
    assert 5 < r["fmax_mhz"] < 500
    assert r["out_of_context"] and r["target_mhz"] == 100
    assert r["met"] == (r["fmax_mhz"] >= 100)
    cp = r["critical_path"]
    assert cp["start"] and cp["end"] and cp["through"]
    # The path's delay is the clock period that the achieved Fmax allows.
    assert cp["delay_ns"] == pytest.approx(1e3 / r["fmax_mhz"], rel=0.02)
    assert r["utilization"]["TRELLIS_FF"]["used"] > 0
    assert r["utilization"]["MULT18X18D"]["used"] >= 2     # the ADC gain multipliers


def test_every_section_is_built_from_the_artifacts(page):
    res, _ = page
    assert list(res["sections"]) == SECTION_IDS
    assert set(res["sections"].values()) == {"ok"}


def test_page_holds_every_section_and_its_figures(page, run):
    res, _ = page
    html = (run / "report" / "index.html").read_text()
    for sid in SECTION_IDS:
        assert f"<section id='{sid}'>" in html
    for png in ("mapping", "conductance", "accuracy", "cycles", "energy",
                "synth_pe_ecp5_asic", "sweep"):
        assert f"src='{png}.png'" in html
        assert (run / "report" / f"{png}.png").stat().st_size > 2000
    assert "stand-in" in html                          # the sim.json stand-in is flagged
    assert "11,014" in html and "GOPS/W" in html
    # The mCNN run: compared with the paper, energy at the paper's two replications.
    assert "<th class=''>paper</th>" in html and "Memristor CIM run report: mCNN" in html
    assert "mCNN, replication 1 (" in html and "mCNN, replication 3 (" in html
    # the drift figure and its table of means carry the recalibrated series
    assert "recalibrated</th>" in html and "recalibration: hybrid training" in html
    assert "shift_add" in html and "Fmax" in html
    assert "relax_sigma_us" in html and "4 points" in html
    assert "Functional bins" in html and "mCNN r1: C1 first chunk" not in html
    assert "pe_lines" in html and "programming between images" in html   # a bin not hit


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs chromium (.ci/run "
                    "installs it)")
def test_page_renders_in_chromium(page, run, tmp_path):
    from PIL import Image
    html = run / "report" / "index.html"
    png = report.screenshot(html, tmp_path / "shot.png", height=6000)
    im = np.asarray(Image.open(png).convert("L"), dtype=float)
    assert im.shape == (6000, 1280)
    # Not blank: dark text and figures on white, spread down the page.
    assert im.std() > 20
    rows_with_ink = (im < 128).any(axis=1)
    assert rows_with_ink[:3000].mean() > 0.1 and rows_with_ink[3000:].mean() > 0.05
    # The browser's own DOM after load: every section there, every figure decoded.
    dom = report.dump_dom(html)
    assert f'data-sections="{len(SECTION_IDS)}"' in dom
    n = html.read_text().count("<img ")
    assert f'data-images="{n}"' in dom and f'data-images-ok="{n}"' in dom


def test_bare_cim_report_names_the_commands(tmp_path, capsys, monkeypatch):
    """`cim report` on the bundled default, from nothing, in under a minute."""
    monkeypatch.chdir(tmp_path)
    t0 = time.time()
    assert main(["report", "--quiet"]) == 0
    assert time.time() - t0 < 60
    html = (tmp_path / "build" / "run" / "report" / "index.html").read_text()
    for cmd in ("cim demo --out RUN", "cim program --out RUN/chip",
                "cim sim --json &gt; RUN/sim.json", "cim timing --out RUN",
                "cim synth --target ecp5 --view fpga --out RUN"):
        assert cmd in html
    # Mapping and energy are computed, so they are there without artifacts.
    assert "reads/image" in html and "GOPS/W" in html
    assert "waiting for artifacts" in capsys.readouterr().out


def test_missing_run_directory_is_an_error(tmp_path, capsys):
    assert main(["report", "--run", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err
