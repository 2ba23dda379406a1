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
from hdl.board import Ulx3sTop, fold_signature, selftest_stimulus, ulx3s_top


def expected_signature(cfg: SystemConfig, reads: int) -> int:
    """What the self-test must find after `reads` reads."""
    codes, stimulus = selftest_stimulus(cfg, reads)
    outputs = []
    for r in stimulus:
        g = codes[r.row0:r.row0 + r.n_lines]
        outputs.append(read_block(np.asarray(r.x)[None], g, r.gain, cfg)[0])
    return fold_signature(cfg, outputs)


def board_top(cfg: SystemConfig, design: str = "pe", reads: int = 64) -> Ulx3sTop:
    """The ULX3S top with its expected signature filled in."""
    return ulx3s_top(cfg, expected_signature(cfg, reads), design, reads)
