"""Stimulus for a PE and what it must answer, computed with the golden integer model.

Shared by the amaranth.sim tests (tests/hdl) and the cocotb testbenches (testbench/), so
both compare the gateware against the same independent computation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from amaranth import Const

from cim_spec.config import SystemConfig
from golden import chip_model
from hdl import layouts
from hdl.params import PEParams


@dataclass(frozen=True)
class Request:
    x: tuple[int, ...]
    row0: int
    n_lines: int
    gain: int
    nonce: int
    first: bool
    last: bool

    def fields(self) -> dict:
        return dict(x=list(self.x), row0=self.row0, n_lines=self.n_lines, gain=self.gain,
                    nonce=self.nonce, first=int(self.first), last=int(self.last))


def pack(layout, value: dict) -> int:
    """The bits of a payload as Amaranth lays them out (and as the Verilog port carries them)."""
    return Const.cast(layout.const(value)).value


def unpack_sums(p: PEParams, bits: int) -> list[int]:
    w = p.acc_bits
    out = []
    for o in range(p.max_outputs):
        v = (bits >> (o * w)) & ((1 << w) - 1)
        out.append(v - (1 << w) if v >> (w - 1) else v)
    return out


def pack_request(p: PEParams, req: Request) -> int:
    return pack(layouts.read_request(p), req.fields())


def random_requests(rng: np.random.Generator, p: PEParams, n: int, *,
                    max_chunks: int = 4) -> list[Request]:
    """Groups of 1..max_chunks reads (first ... last), random lines, gains and inputs, with
    edge cases mixed in: all-zero and all-ones inputs, full line groups, saturating gains."""
    top = 2 ** p.input_bits - 1
    reqs: list[Request] = []
    while len(reqs) < n:
        chunks = int(rng.integers(1, max_chunks + 1))
        n_lines = 2 * int(rng.integers(1, p.max_outputs + 1))
        if rng.random() < 0.2:
            n_lines = p.max_lines
        row0 = int(rng.integers(0, p.rows - n_lines + 1))
        # Gains around the contract's calibration: full scale between 1/8 and 2x the
        # largest possible current, so that some slots saturate and most do not.
        full_max = p.cols * (2 ** p.code_bits - 1)
        fs = full_max * 2.0 ** rng.uniform(-3, 1)
        gain = max(1, int((2 ** p.adc_bits - 1) * 2 ** p.gain_frac_bits / fs))
        for c in range(chunks):
            kind = rng.random()
            if kind < 0.08:
                x = np.zeros(p.cols, dtype=int)
            elif kind < 0.16:
                x = np.full(p.cols, top)
            else:
                x = rng.integers(0, top + 1, size=p.cols)
                x[rng.random(p.cols) < 0.3] = 0
            reqs.append(Request(tuple(int(v) for v in x), row0, n_lines, gain,
                                int(rng.integers(0, 2 ** 32)), c == 0, c == chunks - 1))
    # Finish with a complete group.
    while not reqs[-1].last:
        reqs.pop()
    return reqs


def golden_config(cfg: SystemConfig, p: PEParams) -> SystemConfig:
    """The system configuration whose datapath the PE implements (for read_block)."""
    return cfg.with_(input_bits=p.input_bits, act_bits=p.input_bits, adc_bits=p.adc_bits,
                     adc_gain_frac_bits=p.gain_frac_bits)


def expected_sums(cfg: SystemConfig, p: PEParams, g: np.ndarray,
                  reqs: list[Request]) -> list[list[int]]:
    """Partial sums the PE must emit: one list of max_outputs values per `last` request."""
    out, acc = [], None
    for r in reqs:
        block = g[r.row0:r.row0 + r.n_lines]
        kw = dict(read_noise=p.read_noise, seed=p.pe_seed, nonce=np.array([r.nonce]),
                  row0=r.row0) if p.read_noise else {}
        d = chip_model.read_block(np.array([r.x]), block, r.gain, cfg, **kw)[0]
        d = np.concatenate([d, np.zeros(p.max_outputs - len(d), dtype=np.int64)])
        acc = d if r.first else acc + d
        if r.last:
            out.append([int(v) for v in acc])
    return out


def random_array(rng: np.random.Generator, p: PEParams, stuck: float = 0.02) -> np.ndarray:
    """Random codes with some cells stuck at 0 and at the top code (edge cases)."""
    g = rng.integers(0, 2 ** p.code_bits, size=(p.rows, p.cols))
    g[rng.random(g.shape) < stuck] = 0
    g[rng.random(g.shape) < stuck] = 2 ** p.code_bits - 1
    return g
