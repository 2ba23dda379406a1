"""The coverage section of `cim report`: the merged coverage report that
`benchmarks/coverage_run.py --out RUN` writes (RUN/coverage.json, testbench/coverage.py):
functional bins hit per group, with the bins not hit, and Verilator's line, toggle and
branch coverage (cim_flows.report calls it; primitives from report_page)."""

from __future__ import annotations

from .report_page import _e, _missing, _table, load_json


def section(pg) -> str:
    rep = load_json(pg.run / "coverage.json")
    if not rep or "functional" not in rep:
        pg.status["coverage"] = "missing"
        return _missing("coverage report", "python benchmarks/coverage_run.py --out RUN")
    pg.status["coverage"] = "ok"
    rows = [[group, f"{g['hit']}/{g['bins']}",
             f"{100 * g['hit'] / g['bins']:.1f}%" if g["bins"] else "-",
             ", ".join(g["missed"][:8]) + (" ..." if len(g["missed"]) > 8 else "") or "none"]
            for group, g in rep["functional"].items()]
    out = ("<h3>Functional bins</h3>"
           + _table(["group", "bins hit", "coverage", "not hit"], rows))
    struct = rep.get("structural") or {}
    if struct:
        out += "<h3>Verilator (RTL structure)</h3>" + _table(
            ["kind", "points hit", "points", "coverage"],
            [[k, s["hit"], s["points"], f"{s['percent']:.1f}%"] for k, s in struct.items()])
    runs = rep.get("runs") or []
    if runs:
        out += "<h3>Runs</h3>" + _table(
            ["chip", "images", "bit-exact", "cell writes", "gain writes", "build (s)",
             "simulation (s)"],
            [[r["name"], r["images"], r["bitexact"], r["writes"], r.get("gain_writes", 0),
              r["build_s"], r["sim_s"]] for r in runs])
    return out + f"<p>{_e('Made by python benchmarks/coverage_run.py --out RUN.')}</p>"
