"""A board top for the FPGA view: a PE with a self-test host, for the ULX3S (ECP5 85F).

The self-test programs every cell of the PE through its programming port from an xorshift32
sequence, runs `reads` array reads whose inputs come from the same sequence, folds the partial
sums into a 32-bit signature and compares it with the signature its builder gives
(cim_flows.board computes it with the golden model from `selftest_stimulus`). LEDs show the
verdict; the FTDI serial line (115200 8N1) says ``PASS xxxxxxxx`` or ``FAIL xxxxxxxx``;
FIRE1 (btn[1]) runs it again. constraints/ulx3s_v20.lpf has the pins; `cim timing --board
ulx3s` makes the bitstream. The whole chip with its host link is hdl/board_chip.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from amaranth import Cat, ClockDomain, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from cim_spec.config import SystemConfig

from .params import CrossbarForm, PEParams
from .pe import PE
from .uart import UartTx

SEED = 0x2545F491
# Every read varies where it starts (row0 steps by ROW_STEP modulo the valid starts), how many
# lines it reads and its gain: with constant inputs synthesis would specialize the PE (a
# row0 that is a multiple of 8 alone shrinks every read multiplexer 8-fold), and the board
# would not hold the general PE.
ROW_STEP = 5
GAIN_JITTER_BITS = 12


def xorshift32(x: int) -> int:
    x ^= (x << 13) & 0xFFFFFFFF
    x ^= x >> 17
    x ^= (x << 5) & 0xFFFFFFFF
    return x


def _xorshift32_hw(x):
    x = x ^ (x << 13)[:32]
    x = x ^ (x >> 17)
    return x ^ (x << 5)[:32]


def test_gain(cfg: SystemConfig) -> int:
    """Base ADC gain, full scale at 3/8 of the largest current: typical reads stay in range,
    the brightest clamp (both ADC paths are exercised). Each read adds up to
    2**GAIN_JITTER_BITS - 1 from the sequence."""
    return (cfg.adc_max << cfg.adc_gain_frac_bits) // (cfg.array_cols * cfg.code_max * 3 // 8)


def _fold32(value: int, width: int) -> int:
    out = 0
    for i in range(0, width, 32):
        out ^= (value >> i) & 0xFFFFFFFF
    return out


def _rotl5(s: int) -> int:
    return ((s << 5) | (s >> 27)) & 0xFFFFFFFF


@dataclass(frozen=True)
class SelfTestRead:
    """One read of the self-test: inputs, the block's first source line, lines, gain."""

    x: np.ndarray            # (cols,) unsigned inputs
    row0: int
    n_lines: int
    gain: int


def selftest_stimulus(cfg: SystemConfig, reads: int) -> tuple[np.ndarray, list[SelfTestRead]]:
    """The codes the self-test programs and the reads it makes, as the gateware's xorshift
    sequence produces them; whoever checks the board computes the expected signature from
    these with the golden model (cim_flows.board)."""
    p = PEParams.from_config(cfg)
    rng = SEED
    codes = np.zeros((p.rows, p.cols), dtype=np.int64)
    for idx in range(p.rows * p.cols):
        codes[idx // p.cols, idx % p.cols] = rng & (2 ** p.code_bits - 1)
        rng = xorshift32(rng)
    words = -(-p.cols * p.input_bits // 32)
    starts = p.rows - p.max_lines + 1
    out = []
    for k in range(reads):
        xint = 0
        for j in range(words):
            xint |= rng << (32 * j)
            rng = xorshift32(rng)
        x = np.array([(xint >> (p.input_bits * i)) & (2 ** p.input_bits - 1)
                      for i in range(p.cols)])
        gain = test_gain(cfg) + (rng & (2 ** GAIN_JITTER_BITS - 1))
        out.append(SelfTestRead(x, (k * ROW_STEP) % starts, 2 * (1 + k % p.max_outputs), gain))
    return codes, out


def fold_signature(cfg: SystemConfig, outputs) -> int:
    """The 32-bit signature of the reads' signed outputs (one list of n_lines/2 per read),
    folded as the gateware folds them."""
    p = PEParams.from_config(cfg)
    sig = 0
    for d in outputs:
        raw = 0
        for o, v in enumerate(d):
            raw |= (int(v) & (2 ** p.acc_bits - 1)) << (o * p.acc_bits)
        sig = _rotl5(sig) ^ _fold32(raw, p.max_outputs * p.acc_bits)
    return sig


class SelfTest(wiring.Component):
    """Program, read, fold, compare: `done` then `passed`, and the `signature`."""

    def __init__(self, cfg: SystemConfig, expected: int, reads: int = 64,
                 form: CrossbarForm = CrossbarForm.AMARANTH):
        if reads < 1:
            raise ValueError(f"reads must be at least 1, got {reads}")
        if not 0 <= expected < 2 ** 32:
            raise ValueError(f"expected signature must be a 32-bit word, got {expected!r}")
        self.cfg, self.reads, self.expected = cfg, reads, expected
        self.p = PEParams.from_config(cfg)
        self.pe = PE(self.p, form=form)
        super().__init__({"done": Out(1), "passed": Out(1), "running": Out(1),
                          "sig": Out(32)})

    def elaborate(self, platform):
        m = Module()
        p, pe = self.p, self.pe
        m.submodules.pe = pe
        rng = Signal(32, init=SEED)
        nxt = _xorshift32_hw(rng)
        cells = p.rows * p.cols
        idx = Signal(range(cells))
        words = -(-p.cols * p.input_bits // 32)
        xreg = Signal(32 * words)
        word = Signal(range(words + 1))
        starts = p.rows - p.max_lines + 1
        step = ROW_STEP % starts
        row0 = Signal(range(max(starts, 2)))
        half = Signal(range(p.max_outputs))       # n_lines / 2 - 1
        sent = Signal(range(self.reads + 1))
        got = Signal(range(self.reads + 1))
        sig = Signal(32)

        req = pe.i.payload
        m.d.comb += [
            pe.prog.payload.row.eq(idx >> p.col_bits),
            pe.prog.payload.col.eq(idx[:p.col_bits]),
            pe.prog.payload.code.eq(rng[:p.code_bits]),
            req.x.as_value().eq(xreg[:p.cols * p.input_bits]),
            req.row0.eq(row0),
            req.n_lines.eq((half + 1) * 2),
            req.gain.eq(test_gain(self.cfg) + rng[:GAIN_JITTER_BITS]),
            req.nonce.eq(sent),
            req.first.eq(1),
            req.last.eq(1),
            pe.o.ready.eq(1),
            self.sig.eq(sig),
        ]
        raw = pe.o.payload.as_value()
        fold = Const(0, 32)
        for i in range(0, len(raw), 32):
            fold = fold ^ raw[i:i + 32]
        with m.If(pe.o.valid):
            m.d.sync += [sig.eq(Cat(sig[27:], sig[:27]) ^ fold), got.eq(got + 1)]

        with m.FSM():
            with m.State("PROG"):
                m.d.comb += [pe.prog.valid.eq(1), self.running.eq(1)]
                with m.If(pe.prog.ready):
                    m.d.sync += [idx.eq(idx + 1), rng.eq(nxt)]
                    with m.If(idx == cells - 1):
                        m.next = "FILL"
            with m.State("FILL"):
                m.d.comb += self.running.eq(1)
                m.d.sync += [xreg.eq(Cat(xreg[32:], rng)), rng.eq(nxt), word.eq(word + 1)]
                with m.If(word == words - 1):
                    m.d.sync += word.eq(0)
                    m.next = "READ"
            with m.State("READ"):
                m.d.comb += [pe.i.valid.eq(1), self.running.eq(1)]
                with m.If(pe.i.ready):
                    m.d.sync += [sent.eq(sent + 1),
                                 row0.eq(Mux(row0 + step >= starts, row0 + step - starts,
                                             row0 + step)),
                                 half.eq(Mux(half == p.max_outputs - 1, 0, half + 1))]
                    with m.If(sent == self.reads - 1):
                        m.next = "DRAIN"
                    with m.Else():
                        m.next = "FILL"
            with m.State("DRAIN"):
                m.d.comb += self.running.eq(1)
                with m.If(got == self.reads):
                    m.next = "DONE"
            with m.State("DONE"):
                m.d.comb += [self.done.eq(1), self.passed.eq(sig == self.expected)]
        return m


def _hex_char(nibble):
    return Mux(nibble < 10, nibble + ord("0"), nibble - 10 + ord("a"))


class Reporter(wiring.Component):
    """Once `start` is high, sends "PASS xxxxxxxx\\r\\n" or "FAIL ..." over a UartTx."""

    def __init__(self, divisor: int):
        self.divisor = divisor
        super().__init__({"start": In(1), "passed": In(1), "sig": In(32),
                          "tx": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.uart = uart = UartTx(self.divisor)
        n = Signal(range(16))
        word = Mux(self.passed, Const(int.from_bytes(b"PASS ", "little"), 40),
                   Const(int.from_bytes(b"FAIL ", "little"), 40))
        chars = [word[8 * i:8 * i + 8] for i in range(5)]
        chars += [_hex_char(self.sig[28 - 4 * i:32 - 4 * i]) for i in range(8)]
        chars += [Const(ord("\r"), 8), Const(ord("\n"), 8)]
        char = Signal(8)
        with m.Switch(n):
            for i, c in enumerate(chars):
                with m.Case(i):
                    m.d.comb += char.eq(c)
        m.d.comb += [uart.data.eq(char), uart.valid.eq(self.start & (n < len(chars))),
                     self.tx.eq(uart.tx)]
        with m.If(uart.valid & uart.ready):
            m.d.sync += n.eq(n + 1)
        return m


class Ulx3sTop(wiring.Component):
    """ULX3S pins: 25 MHz clock, buttons, LEDs, FTDI serial. led[0] pass, led[1] fail,
    led[2] running, led[7:3] the signature's low bits."""

    def __init__(self, cfg: SystemConfig, expected: int, reads: int = 64,
                 clock_hz: float = 25e6, baud: int = 115200):
        self.core = SelfTest(cfg, expected, reads)
        self.divisor = round(clock_hz / baud)
        super().__init__({"clk_25mhz": In(1), "btn": In(7), "led": Out(8),
                          "ftdi_rxd": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = sync = ClockDomain("sync")
        m.domains.por = por = ClockDomain("por", reset_less=True)
        # Power-on reset (FPGA registers start at their init values), then FIRE1 restarts.
        count = Signal(8)
        press = Signal(2)
        m.d.comb += [sync.clk.eq(self.clk_25mhz), por.clk.eq(self.clk_25mhz)]
        with m.If(count != 255):
            m.d.por += count.eq(count + 1)
        m.d.por += press.eq(Cat(self.btn[1], press[0]))
        m.d.comb += sync.rst.eq((count != 255) | press[1])

        m.submodules.core = core = self.core
        m.submodules.report = rep = Reporter(self.divisor)
        m.d.comb += [
            rep.start.eq(core.done), rep.passed.eq(core.passed),
            rep.sig.eq(core.sig), self.ftdi_rxd.eq(rep.tx),
            self.led.eq(Cat(core.done & core.passed, core.done & ~core.passed, core.running,
                            core.sig[:5])),
        ]
        return m


def ulx3s_top(cfg: SystemConfig, expected: int, design: str = "pe",
              reads: int = 64) -> Ulx3sTop:
    if design != "pe":
        raise ValueError(f"the ULX3S board top holds the PE for now, not {design!r}")
    return Ulx3sTop(cfg, expected, reads)
