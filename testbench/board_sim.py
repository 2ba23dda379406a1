"""The chip board on Verilator, reached through a pseudo-terminal (testbench/board_tests.py).

`simulated_board(chip)` builds the board top (hdl/board_chip.py: the chip with the behavioral
crossbar and its features stream, the PLL bypassed, a UART of `divisor` cycles per bit),
starts the simulation in a thread and yields the terminal's path; a host opens it like a
serial port.
"""

from __future__ import annotations

import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import cim_spec
import hdl
from cim_spec import program
from hdl import build
from hdl.board_chip import Ulx3sChipTop
from hdl.chip import CimChip, has_features
from hdl.chip_plan import plan_chip
from hdl.params import CrossbarForm

from . import runner
from .chip_sim import chip_digest

TOPLEVEL = "board"
# Cycles per bit in simulation: the receiver needs at least 4; 8 keeps an image frame at
# about 64,000 cycles.
SIM_DIVISOR = 8
SIM_CLOCK_MHZ = 100.0


def board_top(chip: program.Chip, divisor: int = SIM_DIVISOR) -> Ulx3sChipTop:
    """The board top as the bitstream has it (the chip with its `features` stream when its
    network has one, cim_flows.board.board_top), with the simulation's clock and UART."""
    plan = plan_chip(chip)
    return Ulx3sChipTop(CimChip(plan, CrossbarForm.VERILOG, features=has_features(plan)),
                        SIM_CLOCK_MHZ, pll=False, divisor=divisor)


def build_board(chip: program.Chip, divisor: int = SIM_DIVISOR) -> Path:
    build_dir = runner.BUILD_ROOT / (f"board_{chip_digest(chip, CrossbarForm.VERILOG)}_"
                                     f"{divisor}_{runner.package_digest(hdl, cim_spec)[:6]}")
    stamp = build_dir / "generated.ok"
    sources = [build_dir / f"{TOPLEVEL}_gen.v", *build.macro_sources(CrossbarForm.VERILOG)]
    if not stamp.exists():
        sources = build.generate(board_top(chip, divisor), TOPLEVEL, build_dir,
                                 CrossbarForm.VERILOG, asserts=True)
        stamp.write_text("")
    runner.build(sources, TOPLEVEL, build_dir, quiet=True)
    return build_dir


@contextmanager
def simulated_board(chip: program.Chip, divisor: int = SIM_DIVISOR, start_timeout: float = 120):
    """Yields the path of the terminal that reaches the simulated board's serial port."""
    build_dir = build_board(chip, divisor)
    run_dir = Path(tempfile.mkdtemp(prefix="link-", dir=build_dir))
    pty_file, stop = run_dir / "pty", run_dir / "stop"
    failure: list[BaseException] = []

    def simulate():
        try:
            runner.test(TOPLEVEL, "testbench.board_tests", build_dir, test_dir=run_dir,
                        quiet=True, env={"CIM_LINK_DIVISOR": divisor, "CIM_LINK_STOP": stop,
                                         "CIM_LINK_PTY_FILE": pty_file})
        except BaseException as e:       # reported to the caller below
            failure.append(e)

    thread = threading.Thread(target=simulate, daemon=True)
    thread.start()
    t0 = time.monotonic()
    while not pty_file.exists() or not pty_file.read_text():
        if failure or not thread.is_alive():
            raise RuntimeError(f"the board simulation stopped before it opened its terminal "
                               f"(log {run_dir / 'sim.log'}): {failure[0] if failure else ''}")
        if time.monotonic() - t0 > start_timeout:
            stop.write_text("")
            raise RuntimeError(f"the board simulation did not open its terminal in "
                               f"{start_timeout:.0f} s (log {run_dir / 'sim.log'})")
        time.sleep(0.05)
    try:
        yield pty_file.read_text()
    finally:
        stop.write_text("")
        thread.join(timeout=60)
    if failure:
        raise RuntimeError(f"the board simulation failed (log {run_dir / 'sim.log'}): "
                           f"{failure[0]}")
