"""The host link's framing in gateware: frames of cim_spec.link in and out of byte streams.

`FrameRx` parses received bytes: it checks the type and the length against the commands it is
given as soon as the header is in, hands on each payload byte with its index, and ends every
frame with one `done` strobe, either `ok` or with a `reason` (cim_spec.link.Nak). Whoever
uses the payload bytes must hold them until `ok`: a frame is valid only as a whole.
`FrameTx` sends a frame whose payload bytes its user supplies by index.
"""

from __future__ import annotations

from types import SimpleNamespace

from amaranth import Cat, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from cim_spec import link

from . import checks


def _crc_step(crc: int, byte: int) -> int:
    return link.crc16(bytes([byte]), crc)


# The CRC step is linear over GF(2) in (register, byte): output bit i is the XOR of the
# register and byte bits whose unit vectors set it. XOR trees keep the logic (and the
# simulator's code) small, where unrolling the shifts nests a multiplexer per bit.
_TAPS = [([k for k in range(16) if _crc_step(1 << k, 0) >> i & 1],
          [k for k in range(8) if _crc_step(0, 1 << k) >> i & 1]) for i in range(16)]


def crc16_byte(crc, byte):
    """CRC-16/CCITT-FALSE of `crc` followed by one byte, as cim_spec.link.crc16."""
    bits = []
    for reg_taps, byte_taps in _TAPS:
        terms = [crc[k] for k in reg_taps] + [byte[k] for k in byte_taps]
        bit = terms[0]
        for t in terms[1:]:
            bit = bit ^ t
        bits.append(bit)
    return Cat(*bits)


class FrameRx(wiring.Component):
    """Bytes in (`data` with a `valid` strobe); payload bytes and frame verdicts out.

    `commands` maps each accepted type to its payload length. A frame silent for `timeout`
    cycles midway ends with reason TIMEOUT.
    """

    def __init__(self, commands: dict[int, int], timeout: int):
        if not commands or any(not 0 <= n <= link.MAX_PAYLOAD for n in commands.values()):
            raise ValueError(f"commands must map types to payload lengths, got {commands!r}")
        if timeout < 1:
            raise ValueError(f"timeout must be positive, got {timeout}")
        self.commands, self.timeout = dict(commands), timeout
        super().__init__({
            "data": In(8), "valid": In(1),
            "kind": Out(8), "length": Out(16),
            "byte": Out(8), "index": Out(16), "byte_valid": Out(1),
            "done": Out(1), "ok": Out(1), "reason": Out(8),
        })

    def elaborate(self, platform):
        m = Module()
        crc = Signal(16, init=link.CRC_INIT)
        got = Signal(16)
        count = Signal(16)
        idle = Signal(range(self.timeout + 1))
        byte, valid = self.data, self.valid
        m.d.sync += [self.byte_valid.eq(0), self.done.eq(0), self.ok.eq(0)]

        def finish(ok, reason=0):
            m.d.sync += [self.done.eq(1), self.ok.eq(ok), self.reason.eq(reason),
                         framing.eq(0)]
            m.next = "HUNT"

        known = 0
        right_length = 0
        for kind, n in self.commands.items():
            known = known | (self.kind == kind)
            right_length = right_length | ((self.kind == kind) & (self.length == n))

        # Silence midway through a frame (a lost byte, a host that gave up) ends it.
        framing = Signal()
        stale = Signal()
        m.d.comb += stale.eq(framing & ~valid & (idle == self.timeout - 1))
        with m.If(framing & ~valid):
            m.d.sync += idle.eq(idle + 1)
        with m.Else():
            m.d.sync += idle.eq(0)

        with m.FSM():
            with m.State("HUNT"):
                with m.If(valid & (byte == link.SYNC)):
                    m.d.sync += [crc.eq(link.CRC_INIT), framing.eq(1)]
                    m.next = "TYPE"
            with m.State("TYPE"):
                with m.If(stale):
                    finish(0, link.Nak.TIMEOUT)
                with m.Elif(valid):
                    m.d.sync += [self.kind.eq(byte), crc.eq(crc16_byte(crc, byte))]
                    m.next = "LEN0"
            with m.State("LEN0"):
                with m.If(stale):
                    finish(0, link.Nak.TIMEOUT)
                with m.Elif(valid):
                    m.d.sync += [self.length[:8].eq(byte), crc.eq(crc16_byte(crc, byte))]
                    m.next = "LEN1"
            with m.State("LEN1"):
                with m.If(stale):
                    finish(0, link.Nak.TIMEOUT)
                with m.Elif(valid):
                    m.d.sync += [self.length[8:].eq(byte), crc.eq(crc16_byte(crc, byte)),
                                 count.eq(0)]
                    m.next = "CHECK"
            with m.State("CHECK"):
                # The header decides whether the payload is worth reading (a byte cannot
                # arrive in this cycle: one lasts 10 * divisor cycles).
                with m.If(~known):
                    finish(0, link.Nak.TYPE)
                with m.Elif(~right_length):
                    finish(0, link.Nak.LENGTH)
                with m.Elif(self.length == 0):
                    m.next = "CRC0"
                with m.Else():
                    m.next = "PAYLOAD"
            with m.State("PAYLOAD"):
                with m.If(stale):
                    finish(0, link.Nak.TIMEOUT)
                with m.Elif(valid):
                    m.d.sync += [self.index.eq(count), self.byte.eq(byte),
                                 self.byte_valid.eq(1), count.eq(count + 1),
                                 crc.eq(crc16_byte(crc, byte))]
                    with m.If(count + 1 == self.length):
                        m.next = "CRC0"
            with m.State("CRC0"):
                with m.If(stale):
                    finish(0, link.Nak.TIMEOUT)
                with m.Elif(valid):
                    m.d.sync += got[:8].eq(byte)
                    m.next = "CRC1"
            with m.State("CRC1"):
                with m.If(stale):
                    finish(0, link.Nak.TIMEOUT)
                with m.Elif(valid):
                    with m.If(Cat(got[:8], byte) == crc):
                        finish(1)
                    with m.Else():
                        finish(0, link.Nak.CRC)
        return m


class FrameTx(wiring.Component):
    """On `start` (while not `busy`), sends a frame of `kind` with `length` payload bytes;
    payload byte `index` must be on `byte` in the same cycle (a combinational lookup). The
    bytes go to a UartTx (`data`/`valid`/`ready`)."""

    def __init__(self):
        super().__init__({
            "start": In(1), "kind": In(8), "length": In(16), "busy": Out(1),
            "index": Out(16), "byte": In(8),
            "data": Out(8), "valid": Out(1), "ready": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        crc = Signal(16)
        kind = Signal(8)
        length = Signal(16)
        count = Signal(16)
        send = self.valid & self.ready
        m.d.comb += self.index.eq(count)
        with m.FSM() as fsm:
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [kind.eq(self.kind), length.eq(self.length), count.eq(0),
                                 crc.eq(link.CRC_INIT)]
                    m.next = "SYNC"
            for state, value, nxt in (("SYNC", link.SYNC, "TYPE"), ("TYPE", kind, "LEN0"),
                                      ("LEN0", length[:8], "LEN1"),
                                      ("LEN1", length[8:], "PAYLOAD")):
                with m.State(state):
                    m.d.comb += [self.data.eq(value), self.valid.eq(1)]
                    with m.If(send):
                        if state != "SYNC":
                            m.d.sync += crc.eq(crc16_byte(crc, value))
                        m.next = nxt
            with m.State("PAYLOAD"):
                with m.If(count == length):
                    m.next = "CRC0"
                with m.Else():
                    m.d.comb += [self.data.eq(self.byte), self.valid.eq(1)]
                    with m.If(send):
                        m.d.sync += [crc.eq(crc16_byte(crc, self.byte)), count.eq(count + 1)]
            with m.State("CRC0"):
                m.d.comb += [self.data.eq(crc[:8]), self.valid.eq(1)]
                with m.If(send):
                    m.next = "CRC1"
            with m.State("CRC1"):
                m.d.comb += [self.data.eq(crc[8:]), self.valid.eq(1)]
                with m.If(send):
                    m.next = "IDLE"
            m.d.comb += self.busy.eq(~fsm.ongoing("IDLE"))
        if checks.enabled(platform):
            # The byte to the UART is a stream without the stream signature.
            checks.stream_contract(m, SimpleNamespace(valid=self.valid, ready=self.ready,
                                                      payload=self.data), name="frame_tx")
        return m
