"""Deterministic Verilog generation.

Amaranth elaborates parameters away, so every parameter set is its own Verilog file. Files are
written atomically and only when their text changed (so simulator builds stay cached), under a
lock, so that parallel tests can generate into the same directory.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from contextlib import contextmanager
from pathlib import Path

from amaranth.back import verilog

from . import checks
from .crossbar import BEHAVIORAL_SOURCE, BLACKBOX_SOURCE
from .params import CrossbarForm, check_form

WAIVERS = Path(__file__).resolve().parent / "verilator_waivers.vlt"


def verilog_text(component, name: str, asserts: bool = False) -> str:
    """The component's Verilog; no source locations, so the text depends only on the design.
    With `asserts` the blocks' invariants are in it as SystemVerilog immediate assertions
    (hdl/checks.py): for simulators only, as yosys's plain Verilog reader refuses them."""
    return verilog.convert(component, name=name, emit_src=False,
                           platform=checks.ASSERTS if asserts else None)


@contextmanager
def locked(directory: Path, name: str = ".lock"):
    """An exclusive lock on `directory` (a file `name` in it) across processes: parallel test
    workers share build directories."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / name, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def write_if_changed(path: Path, text: str) -> bool:
    if path.exists() and path.read_text() == text:
        return False
    tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
    tmp.write_text(text)
    tmp.replace(path)
    return True


def generate(component, name: str, out_dir: Path,
             form: CrossbarForm = CrossbarForm.VERILOG, asserts: bool = False) -> list[Path]:
    """Write `<name>_gen.v` and return the Verilog sources a simulator or synthesizer needs
    (`asserts`: with the invariants, for verification builds)."""
    out_dir = Path(out_dir)
    with locked(out_dir):
        path = out_dir / f"{name}_gen.v"
        write_if_changed(path, verilog_text(component, name, asserts))
    return [path, *macro_sources(form)]


def macro_sources(form: CrossbarForm) -> list[Path]:
    """The crossbar macro's Verilog that goes with a generated design of this form."""
    return {CrossbarForm.VERILOG: [BEHAVIORAL_SOURCE], CrossbarForm.BLACKBOX: [BLACKBOX_SOURCE],
            CrossbarForm.AMARANTH: []}[check_form(form)]


def digest(*parts) -> str:
    """A short stable name for a parameter set (build directory names)."""
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:12]
