"""What the ASIC flow runs on and where it is: the OSU018 cells (Debian's qflow-tech-osu018,
one corner), OpenSTA and Icarus; a missing one is named with the package that has it."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

from .synth import SynthError

OSU018_DIR = Path("/usr/share/qflow/tech/osu018")
LIBERTY = "osu018_stdcells.lib"          # the package's one corner: typical, 1.8 V, 25 C
CELL_MODELS = "osu018_stdcells.v"
MACRO_LIBERTY = "cim_crossbar.lib"
PACKAGES = {"sta": "opensta", "iverilog": "iverilog", "vvp": "iverilog"}


class AsicError(SynthError):
    """An ASIC flow request that cannot be carried out, or a tool run that failed."""


def library_dir() -> Path:
    d = OSU018_DIR
    if not (d / LIBERTY).is_file() or not (d / CELL_MODELS).is_file():
        raise AsicError(f"the OSU018 standard cells are not installed ({d / LIBERTY}): "
                        f"apt-get install qflow-tech-osu018")
    return d


def need_tool(name: str) -> str:
    path = shutil.which(name)
    if not path:
        raise AsicError(f"`{name}` is not on PATH: apt-get install {PACKAGES[name]}")
    return path


def run_sta(work: Path, script: str, what: str) -> tuple[str, float]:
    """OpenSTA on `work/script` (a Tcl script that ends by printing `=== end`); its output
    is kept as `work/<script stem>.log`. (output, seconds), or AsicError with the errors."""
    sta = need_tool("sta")
    t0 = time.time()
    proc = subprocess.run([sta, "-no_splash", "-exit", script], cwd=work,
                          capture_output=True, text=True)
    seconds = time.time() - t0
    log = proc.stdout + proc.stderr
    log_path = work / (Path(script).stem + ".log")
    log_path.write_text(log)
    errors = [ln for ln in log.splitlines() if ln.startswith("Error")]
    if proc.returncode or errors or "=== end" not in log:
        raise AsicError(f"OpenSTA {what} failed (exit {proc.returncode}); {log_path}:\n"
                        + "\n".join((errors or log.splitlines())[-8:]))
    return log, seconds
