"""The host link's frames: CRC, encoding, decoding with corruption and noise between frames."""

import struct

import numpy as np
import pytest

from cim_spec import link


def crc_bitwise_reflected_check(data: bytes) -> int:
    """An independent CRC-16/CCITT-FALSE: long division of the message by the polynomial
    x^16 + x^12 + x^5 + 1, with the register preset to all ones (the augmented-message form)."""
    bits = []
    for b in data:
        bits += [(b >> (7 - i)) & 1 for i in range(8)]
    reg = 0xFFFF
    for bit in bits:
        top = (reg >> 15) & 1
        reg = ((reg << 1) & 0xFFFF)
        if top ^ bit:
            reg ^= 0x1021
    return reg


def test_crc16_check_value_and_independent_division():
    assert link.crc16(b"123456789") == 0x29B1      # the catalogued check value
    assert link.crc16(b"") == 0xFFFF
    rng = np.random.default_rng(1)
    for n in [1, 2, 7, 64, 789]:
        data = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        assert link.crc16(data) == crc_bitwise_reflected_check(data)


def test_frames_round_trip_between_noise():
    rng = np.random.default_rng(2)
    frames = [(link.Cmd.IMAGE, bytes(rng.integers(0, 256, 788, dtype=np.uint8))),
              (link.Cmd.STATUS, b""), (link.Cmd.PROG, struct.pack(link.PROG_FORMAT, 7, 127,
                                                                  15, 200))]
    stream = b"\x00\x13"           # line noise before the first sync byte
    for kind, payload in frames:
        stream += link.encode(kind, payload)
    dec = link.Decoder()
    got = []
    for k in range(0, len(stream), 37):        # arbitrary chunking
        got += dec.feed(stream[k:k + 37])
    assert got == [(int(k), p) for k, p in frames]
    assert dec.skipped == 2 and dec.errors == []


@pytest.mark.parametrize("where", [1, 2, 3, 10, -2, -1],
                         ids=["type", "length-low", "length-high", "payload", "crc-low",
                              "crc-high"])
def test_a_corrupted_frame_is_dropped_and_the_next_ones_decoded(where):
    """One flipped bit anywhere: the frame is never delivered, and decoding recovers (a
    corrupted length first swallows what follows until its CRC fails)."""
    good = link.image_frame(5, range(20))
    bad = bytearray(link.image_frame(6, range(20)))
    bad[where] ^= 0x04
    dec = link.Decoder()
    got = dec.feed(bytes(bad) + good * 40)
    assert got and set(got) == {(link.Cmd.IMAGE, struct.pack("<I", 5) + bytes(range(20)))}
    assert dec.errors


def test_result_and_status_payloads():
    logits = (-5, 2**31 - 1, -2**31, 0, 1, 2, 3, 4, 5, 6)
    payload = struct.pack("<IB10iI3I", 9, 1, *logits, 7000, 4000, 2900, 100)
    r = link.parse_result(payload, 10, 3)
    assert r == link.Result(9, 1, logits, 7000, (4000, 2900, 100))
    with pytest.raises(link.LinkError):
        link.parse_result(payload[:-1], 10, 3)
    assert link.parse_status(struct.pack(link.STATUS_FORMAT, 3, 4, 5, 1)) == link.Status(
        3, 4, 5, True)
