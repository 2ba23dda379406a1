"""8N1 serial port: a transmitter and a receiver at `divisor` clock cycles per bit.

The ULX3S's FTDI chip is the other end (docs/board.md). Neither side stalls the line: the
receiver hands on each byte as a one-cycle strobe, so whoever takes it must keep up (the link
takes a byte in one cycle, and a byte lasts 10 * divisor cycles).
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out


def check_divisor(divisor: int, least: int) -> int:
    if isinstance(divisor, bool) or not isinstance(divisor, int) or divisor < least:
        raise ValueError(f"UART divisor must be an integer of at least {least} clock cycles "
                         f"per bit, got {divisor!r}")
    return divisor


class UartTx(wiring.Component):
    """8N1 transmitter: takes a byte when `ready`, `divisor` clock cycles per bit."""

    def __init__(self, divisor: int):
        self.divisor = check_divisor(divisor, 1)
        super().__init__({"data": In(8), "valid": In(1), "ready": Out(1), "tx": Out(1)})

    def elaborate(self, platform):
        m = Module()
        shift = Signal(10)
        bits = Signal(range(11))
        timer = Signal(range(self.divisor))
        m.d.comb += [self.ready.eq(bits == 0), self.tx.eq(Mux(bits == 0, 1, shift[0]))]
        with m.If(bits == 0):
            with m.If(self.valid):
                m.d.sync += [shift.eq(Cat(Const(0, 1), self.data, Const(1, 1))),
                             bits.eq(10), timer.eq(0)]
        with m.Else():
            m.d.sync += timer.eq(timer + 1)
            with m.If(timer == self.divisor - 1):
                m.d.sync += [timer.eq(0), shift.eq(shift >> 1), bits.eq(bits - 1)]
        return m


class UartRx(wiring.Component):
    """8N1 receiver. The line passes two flip-flops (it comes from another clock domain);
    a falling edge starts a byte, each bit is sampled in its middle, and a byte whose stop
    bit is low is dropped and flagged (`error` strobe) instead of handed on (`valid` strobe
    with `data`)."""

    def __init__(self, divisor: int):
        self.divisor = check_divisor(divisor, 4)
        super().__init__({"rx": In(1, init=1), "data": Out(8), "valid": Out(1),
                          "error": Out(1)})

    def elaborate(self, platform):
        m = Module()
        d = self.divisor
        sync_ff = Signal(2, init=0b11)
        line = sync_ff[1]
        m.d.sync += sync_ff.eq(Cat(self.rx, sync_ff[0]))
        timer = Signal(range(d + d // 2 + 1))
        bit = Signal(range(10))
        shift = Signal(8)
        m.d.sync += [self.valid.eq(0), self.error.eq(0)]
        with m.FSM():
            with m.State("IDLE"):
                with m.If(~line):
                    # The middle of bit 0 is 1.5 bits after the start bit's edge.
                    m.d.sync += [timer.eq(d + d // 2 - 1), bit.eq(0)]
                    m.next = "BITS"
            with m.State("BITS"):
                m.d.sync += timer.eq(timer - 1)
                with m.If(timer == 0):
                    m.d.sync += [timer.eq(d - 1), bit.eq(bit + 1)]
                    with m.If(bit == 8):
                        with m.If(line):
                            m.d.sync += [self.data.eq(shift), self.valid.eq(1)]
                        with m.Else():
                            m.d.sync += self.error.eq(1)
                        m.next = "STOP"
                    with m.Else():
                        m.d.sync += shift.eq(Cat(shift[1:], line))
            with m.State("STOP"):
                # Wait for the line to idle, so a break or a low stop bit starts no byte.
                with m.If(line):
                    m.next = "IDLE"
        return m
