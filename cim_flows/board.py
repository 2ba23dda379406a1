"""The board self-test's expected signature, from the golden model.

The gateware (hdl/board.py) generates its stimulus with an xorshift sequence and folds what
the PE reads into a signature; this computes the same reads with the golden model's
`read_block` and folds them the same way, so the board compares against an independent
computation.
"""

from __future__ import annotations

import numpy as np

from cim_spec.config import SystemConfig
from golden.chip_model import read_block
from hdl.board import fold_signature, selftest_stimulus, ulx3s_top


def expected_signature(cfg: SystemConfig, reads: int) -> int:
    """What the self-test must find after `reads` reads."""
    codes, stimulus = selftest_stimulus(cfg, reads)
    outputs = []
    for r in stimulus:
        g = codes[r.row0:r.row0 + r.n_lines]
        outputs.append(read_block(np.asarray(r.x)[None], g, r.gain, cfg)[0])
    return fold_signature(cfg, outputs)


# The chip board's clock (the EHXPLLL's output) and serial rate: 2 Mbaud is 25 cycles per
# bit at 50 MHz, and a rate the ULX3S's FTDI FT231X makes exactly (3 MHz / 1.5).
CHIP_CLOCK_MHZ = 50.0
CHIP_BAUD = 2_000_000


def board_top(cfg: SystemConfig, design: str = "pe", reads: int = 64,
              clock_mhz: float = CHIP_CLOCK_MHZ, baud: int = CHIP_BAUD):
    """The ULX3S top: for `pe` the self-test with its expected signature filled in; for
    `chip` the chip (FPGA view, the bundled model's ideal program as its cells, its features
    stream on) behind the serial host link (hdl/board_chip.py)."""
    if design == "chip":
        from cim_flows.stages import ideal_program, load_model
        from hdl.board_chip import Ulx3sChipTop, board_clock
        from hdl.chip import CimChip, has_features
        from hdl.chip_plan import plan_chip
        from hdl.params import CrossbarForm
        board_clock(clock_mhz, baud)      # a clock the board cannot make builds nothing
        mapping, prog = ideal_program(cfg, load_model())
        plan = plan_chip(prog.chip(mapping))
        # With the features stream: the board answers IMAGE_FEATURES frames for hybrid
        # training (cim hybrid --on board).
        return Ulx3sChipTop(CimChip(plan, CrossbarForm.AMARANTH, features=has_features(plan)),
                            clock_mhz, baud)
    return ulx3s_top(cfg, expected_signature(cfg, reads), design, reads)
