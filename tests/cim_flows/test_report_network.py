"""`cim report` of an imported network: the page is of the run's chip state's network.

The run directory is made by the real commands: `cim import` of the shipped resnet6, `cim
program` of it onto its 12 PEs, `cim demo` of it on 20 images (no chip, no RTL). The RTL's
figures are sim.json files written here (a resnet6 simulation builds the whole chip with
Verilator, minutes): one of resnet6, one of the mCNN, so that the page takes measured cycles
from the first only. Every figure on the page is read back from its HTML tables and compared
with the energy model on the chip state's own mapping.
"""

from __future__ import annotations

import contextlib
import html
import io
import json
import re
import shutil
from pathlib import Path

import pytest

from cim_cli.main import main
from cim_flows import energy, report
from cim_spec import chipstate

ROOT = Path(__file__).resolve().parents[2]
# Extra cycles per layer of the written resnet6 simulation over the mapping's bound, as a
# real run has them (the pipeline's fill and drain); distinct per layer so a mix-up shows.
OVER = [11, 23, 5, 42, 17, 8, 3]


def _cim(*argv) -> str:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main([str(a) for a in argv]) == 0
    return buf.getvalue()


def _section(page: str, sid: str) -> str:
    return re.search(rf"<section id='{sid}'>(.*?)</section>", page, re.S).group(1)


def _tables(fragment: str) -> list[list[list[str]]]:
    """Every table of an HTML fragment as rows of cell texts (header row first)."""
    def text(c):
        return html.unescape(re.sub(r"<[^>]+>", "", c))
    return [[[text(c) for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", tr, re.S)]
             for tr in re.findall(r"<tr>(.*?)</tr>", t, re.S)]
            for t in re.findall(r"<table>(.*?)</table>", fragment, re.S)]


def _table(fragment: str, *head: str) -> list[list[str]]:
    """The body of the table whose header starts with `head`."""
    found = [t for t in _tables(fragment) if tuple(t[0][:len(head)]) == head]
    assert len(found) == 1, (head, [t[0] for t in _tables(fragment)])
    return found[0][1:]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("r6")
    run, weights, config = tmp / "run", tmp / "resnet6.npz", ROOT / "examples" / "resnet6.toml"
    _cim("import", ROOT / "golden" / "data" / "resnet6.onnx", "--out", weights, "--json")
    _cim("program", "--weights", weights, "--config", config, "--seed", 1, "--out",
         run / "chip", "--json")
    (run / "stages.json").write_text(_cim("demo", "--weights", weights, "--config", config,
                                          "--limit", 20, "--no-chip", "--rtl-images", 0,
                                          "--json"))
    return run


@pytest.fixture(scope="module")
def state(run):
    return chipstate.load(run / "chip")


def _sim(state, **kw) -> dict:
    bound = energy.mapping_cycles(state.mapping)
    assert len(bound) == len(OVER)
    layers = {n: c + o for (n, c), o in zip(bound.items(), OVER, strict=True)}
    return {"network": state.mapping.network.name, "images": 2, "bitexact": 2,
            "replication": 1, "cycles_per_layer": layers,
            "cycles_per_image": sum(layers.values()) + 100} | kw


def _page(run, out, sim: dict) -> tuple[dict, str]:
    (run / "sim.json").write_text(json.dumps(sim))
    res = json.loads(_cim("report", "--run", run, "--out", out, "--json", "--quiet"))
    return res, (out / "index.html").read_text()


@pytest.fixture(scope="module")
def page(run, state, tmp_path_factory):
    return _page(run, tmp_path_factory.mktemp("page"), _sim(state))


def test_the_page_is_of_the_chip_states_network(page):
    res, text = page
    assert res["network"] == "resnet6"
    assert {k: res["sections"][k] for k in ("mapping", "conductance", "accuracy", "rtl",
                                            "cycles", "energy")} == dict.fromkeys(
        ("mapping", "conductance", "accuracy", "rtl", "cycles", "energy"), "ok")
    assert "run report: resnet6" in text
    for sid in ("mapping", "cycles", "energy", "accuracy"):
        assert "mCNN" not in _section(text, sid)


def test_mapping_is_the_chip_states_with_its_pes(page, state):
    _, text = page
    m = _section(text, "mapping")
    blocks = _table(m, "block", "layer", "chunk", "group", "copy", "PE")
    assert [(int(r[0]), r[1], int(r[5])) for r in blocks] == \
        [(b.id, b.layer, b.pe) for b in state.mapping.blocks]
    layers = _table(m, "layer", "kind")
    assert [r[0] for r in layers] == [lm.name for lm in state.mapping.layers]
    for r, lm in zip(layers, state.mapping.layers, strict=True):
        assert r[7] == ", ".join(str(p) for p in sorted({b.pe for b in state.mapping.blocks
                                                         if b.layer == lm.name}))
    used = len(state.mapping.used_pes())
    assert used == state.config.n_pe == 12
    assert f"{used} of 12 PEs" in m


def test_cycles_are_the_mappings_bound_and_the_same_networks_measurement(page, state):
    _, text = page
    bound = energy.mapping_cycles(state.mapping)
    rows = _table(_section(text, "cycles"), "layer", "lower bound", "measured")
    assert rows[:-1] == [[n, f"{c:,}", f"{c + o:,}"]
                         for (n, c), o in zip(bound.items(), OVER, strict=True)]
    total = sum(bound.values())
    assert rows[-1] == ["per image", f"{total:,}", f"{total + sum(OVER) + 100:,}"]
    # The bound again from the page's own block table: per layer, the busiest PE's reads x
    # input bits, each slot the longer of the pulse and the ADC rounds of its widest block.
    cfg = state.config
    blocks = _table(_section(text, "mapping"), "block", "layer")
    for name, c in bound.items():
        mine = [r for r in blocks if r[1] == name]
        reads = {}
        for r in mine:
            reads[r[5]] = reads.get(r[5], 0) + int(r[9])
        lines = max(int(r[6].split("-")[1]) - int(r[6].split("-")[0]) + 1 for r in mine)
        slot = max(cfg.pulse_cycles, -(-lines // cfg.adcs_per_pe) * cfg.adc_conv_cycles + 1)
        assert c == max(reads.values()) * cfg.input_bits * slot, name


def test_energy_is_the_energy_model_of_the_chip_states_mapping(page, state):
    _, text = page
    e = _section(text, "energy")
    measured = sum(_sim(state)["cycles_per_layer"].values()) + 100
    want = energy.system_for(state.mapping, cycles_per_image=measured)
    rows = _table(e, "part", "nJ/image", "share")
    total = sum(want["energy_breakdown_pj"].values())
    assert rows == [[name, f"{want['energy_breakdown_pj'][k] / 1e3:,.3f}",
                     f"{100 * want['energy_breakdown_pj'][k] / total:.1f}%"]
                    for k, name in report_parts().items()] + [
        ["total", f"{total / 1e3:,.3f}", "100.0%"]]
    assert f"{want['energy_per_image_uj']:.3f} uJ per image" in e
    assert f"{measured:,} cycles per image (measured)" in e
    # One row for the network at its own replication: no mCNN replications 1 and 3.
    systems = [r for r in _table(e, "", "GOPS/W") if not r[0].startswith("paper")]
    assert systems == [["resnet6, replication 1 (measured)", f"{want['gops_per_w']:,.0f}",
                        f"{want['gops_per_mm2']:,.2f}", f"{want['macro_gops_per_mm2']:,.2f}",
                        f"{want['gops']:.3f}", f"{want['energy_per_image_uj']:.3f} uJ/image"]]
    layer_rows = _table(e, "layer", "nJ/image")
    assert layer_rows == [[k, f"{v / 1e3:,.3f}"] for k, v in want["energy_per_layer_pj"].items()]
    assert f"total {want['area_mm2']:.3f} mm^2" in e


def report_parts() -> dict:
    from cim_flows.report_network import BREAKDOWN
    assert list(BREAKDOWN) == ["array", "dac", "readout", "adc", "shift_add", "digital",
                               "buffer"]
    return BREAKDOWN


def test_accuracy_of_another_network_is_not_compared_with_the_paper(page, run):
    _, text = page
    a = _section(text, "accuracy")
    stages = json.loads((run / "stages.json").read_text())
    assert stages["network"] == "resnet6"
    assert _table(a, "stage", "accuracy") == [[n, f"{100 * v:.2f}%"]
                                              for n, v in stages["stages"].items()]
    assert "paper</th>" not in a and "no comparison" in a


def test_a_simulation_of_another_network_gives_no_measured_cycles(run, state, tmp_path):
    """sim.json of the mCNN (its layer names, no network named: an older `cim sim`) or of
    resnet6 at another replication, next to a replication-1 resnet6 chip state: the bound
    only, and the page says whose simulation it is."""
    bound = energy.mapping_cycles(state.mapping)
    mcnn = {"images": 2, "bitexact": 2, "replication": 1, "cycles_per_image": 60_000,
            "cycles_per_layer": {"C1": 40_000, "C3": 19_000, "FC": 1_000}}
    for i, sim in enumerate((mcnn, _sim(state, replication=3))):
        res, text = _page(run, tmp_path / str(i), sim)
        c = _section(text, "cycles")
        assert res["sections"]["cycles"] == "missing"
        assert _table(c, "layer", "lower bound", "measured")[:-1] == \
            [[n, f"{v:,}", "-"] for n, v in bound.items()]
        assert "not of resnet6" in c and "cim sim --chip RUN/chip --json &gt; RUN/sim.json" in c
        e = _section(text, "energy")
        assert f"{sum(bound.values()):,} cycles per image (mapping lower bound)" in e
        assert "not of this run's network" in _section(text, "rtl")


def test_cim_energy_run_takes_cycles_of_the_same_network_only(run, state, tmp_path):
    sim = _sim(state)
    (tmp_path / "sim.json").write_text(json.dumps(sim))
    out = json.loads(_cim("energy", "--chip", run / "chip", "--run", tmp_path, "--json"))
    assert out["systems"]["1"]["cycles_per_image"] == sim["cycles_per_image"]
    (tmp_path / "sim.json").write_text(json.dumps(sim | {"network": "mcnn"}))
    out = json.loads(_cim("energy", "--chip", run / "chip", "--run", tmp_path, "--json",
                          "--force"))
    assert out["systems"]["1"]["cycles_source"] == "mapping lower bound"
    # The mCNN's own measurement still counts for the mCNN.
    out = json.loads(_cim("energy", "--run", tmp_path, "--json", "--force"))
    assert out["systems"]["1"]["cycles_per_image"] == sim["cycles_per_image"]


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs chromium (.ci/run "
                    "installs it)")
def test_page_renders_in_chromium(page):
    res, text = page
    dom = report.dump_dom(Path(res["page"]))
    n = text.count("<img ")
    assert n >= 5
    assert f'data-sections="{len(report.SECTIONS)}"' in dom
    assert f'data-images="{n}"' in dom and f'data-images-ok="{n}"' in dom
