"""The serial port and the link's framing under amaranth.sim, against cim_spec.link."""

import numpy as np
import pytest
from amaranth import Module
from amaranth.lib import wiring

from cim_spec import link
from hdl.link import FrameRx, FrameTx
from hdl.uart import UartRx, UartTx

from .sim_helpers import run


def line_waveform(data: bytes, divisor: int, rng, stop_bits=None):
    """8N1 levels, one per clock cycle, with idle gaps; stop_bits[i] = 0 breaks byte i."""
    out = [1] * 7
    for i, b in enumerate(data):
        stop = 1 if stop_bits is None else stop_bits[i]
        for level in [0, *[(b >> k) & 1 for k in range(8)], stop]:
            out += [level] * divisor
        out += [1] * int(rng.integers(0, 3 * divisor))
    return out + [1] * (3 * divisor)


@pytest.mark.parametrize("divisor", [4, 9])
def test_uart_rx_decodes_a_waveform_and_drops_bad_stop_bits(divisor):
    rng = np.random.default_rng(divisor)
    data = bytes(rng.integers(0, 256, 16, dtype=np.uint8))
    stops = [0 if i in (5, 11) else 1 for i in range(len(data))]
    wave = line_waveform(data, divisor, rng, stops)
    dut = UartRx(divisor)
    got, errors = [], []

    async def bench(ctx):
        for level in wave:
            ctx.set(dut.rx, level)
            _, _, valid, data_, err = await ctx.tick().sample(dut.valid, dut.data, dut.error)
            if valid:
                got.append(data_)
            if err:
                errors.append(len(got))
    run(dut, bench)
    assert bytes(got) == bytes(b for b, s in zip(data, stops, strict=True) if s)
    assert errors == [5, 10]


def test_uart_tx_into_rx_loopback():
    class Loop(wiring.Component):
        def __init__(self):
            self.tx, self.rx = UartTx(5), UartRx(5)
            super().__init__({})

        def elaborate(self, platform):
            m = Module()
            m.submodules.tx, m.submodules.rx = self.tx, self.rx
            m.d.comb += self.rx.rx.eq(self.tx.tx)
            return m
    dut = Loop()
    data = bytes(np.random.default_rng(3).integers(0, 256, 12, dtype=np.uint8))
    got = []

    async def send(ctx):
        for b in data:
            ctx.set(dut.tx.data, b)
            ctx.set(dut.tx.valid, 1)
            await ctx.tick().until(dut.tx.ready)
        ctx.set(dut.tx.valid, 0)

    async def receive(ctx):
        while len(got) < len(data):
            _, _, valid, d = await ctx.tick().sample(dut.rx.valid, dut.rx.data)
            if valid:
                got.append(d)
    run(dut, send, receive)
    assert bytes(got) == data


COMMANDS = {link.Cmd.IMAGE: 12, link.Cmd.PROG: 5, link.Cmd.STATUS: 0}


def rx_run(stream: bytes, gaps=None, timeout=50):
    """Bytes into a FrameRx, one every 3 cycles (or after gaps[i] idle cycles); returns the
    payloads and verdicts it reports."""
    dut = FrameRx(COMMANDS, timeout)
    frames, current = [], {}

    async def bench(ctx):
        for i, b in enumerate([*stream, None]):
            wait = 3 if gaps is None else gaps.get(i, 3)
            for _ in range(wait + (2 * timeout if b is None else 0)):
                ctx.set(dut.valid, 0)
                await step(ctx)
            if b is not None:
                ctx.set(dut.data, b)
                ctx.set(dut.valid, 1)
                await step(ctx)

    async def step(ctx):
        _, _, bv, idx, byte, done, ok, reason, kind = await ctx.tick().sample(
            dut.byte_valid, dut.index, dut.byte, dut.done, dut.ok, dut.reason, dut.kind)
        if bv:
            current[idx] = byte
        if done:
            payload = bytes(current[k] for k in sorted(current))
            frames.append((kind, payload if ok else None, ok, reason))
            current.clear()
    run(dut, bench)
    return frames


def test_frame_rx_accepts_good_frames_and_names_each_bad_one():
    img = link.encode(link.Cmd.IMAGE, bytes(range(12)))
    prog = link.prog_frame(3, 100, 7, 255)
    status = link.encode(link.Cmd.STATUS)
    bad_crc = bytearray(img)
    bad_crc[9] ^= 1
    stream = (b"\x00\xff" + img + status + bytes(bad_crc) + link.encode(0x44, b"ab")
              + link.encode(link.Cmd.PROG, b"\x01\x02") + prog)
    got = rx_run(stream)
    assert got[0] == (link.Cmd.IMAGE, bytes(range(12)), 1, 0)
    assert got[1] == (link.Cmd.STATUS, b"", 1, 0)
    assert got[2][2:] == (0, link.Nak.CRC)
    assert got[3][::2] == (0x44, 0) and got[3][3] == link.Nak.TYPE
    assert got[4][::2] == (link.Cmd.PROG, 0) and got[4][3] == link.Nak.LENGTH
    # The rejected frames' payload bytes (the type's "ab", the short PROG's) are skipped as
    # noise until the next sync byte.
    assert got[-1] == (link.Cmd.PROG, prog[4:-2], 1, 0)
    assert len(got) == 6


def test_frame_rx_times_out_on_a_lost_byte():
    img = link.encode(link.Cmd.IMAGE, bytes(range(12)))
    cut = img[:-3]                                   # the last payload byte and CRC lost
    got = rx_run(cut + link.encode(link.Cmd.STATUS), gaps={len(cut): 200}, timeout=50)
    assert got[0][2:] == (0, link.Nak.TIMEOUT)
    assert got[1] == (link.Cmd.STATUS, b"", 1, 0)


@pytest.mark.parametrize("length", [0, 9, 61])
def test_frame_tx_sends_what_the_decoder_accepts(length):
    payload = bytes(np.random.default_rng(length).integers(0, 256, length, dtype=np.uint8))
    dut = FrameTx()
    sent = bytearray()

    async def bench(ctx):
        ctx.set(dut.kind, link.Reply.RESULT)
        ctx.set(dut.length, length)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        stall = np.random.default_rng(9)
        while True:
            idx = ctx.get(dut.index)
            ctx.set(dut.byte, payload[idx] if idx < length else 0)
            ready = bool(stall.random() < 0.6)
            ctx.set(dut.ready, ready)
            _, _, valid, data, busy = await ctx.tick().sample(dut.valid, dut.data, dut.busy)
            if valid and ready:
                sent.append(data)
            if not busy:
                break
    run(dut, bench)
    dec = link.Decoder()
    assert dec.feed(bytes(sent)) == [(link.Reply.RESULT, payload)]
    assert bytes(sent) == link.encode(link.Reply.RESULT, payload)
