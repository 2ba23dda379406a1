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



def _framed(body_hex: str) -> str:
    body = bytes.fromhex(body_hex)
    return "a5" + body_hex + struct.pack("<H", crc_bitwise_reflected_check(body)).hex()


def test_older_frames_keep_their_bytes():
    """The frames of the protocol before the feature and gain frames, byte for byte, the
    CRC by the independent division (a host of the earlier protocol still speaks to this
    board)."""
    assert link.image_frame(0x01020304, [0, 255, 7]).hex() == _framed("0107000403020100ff07")
    assert link.prog_frame(3, 300, 15, 200).hex() == _framed("020500032c010fc8")
    assert link.encode(link.Cmd.STATUS).hex() == _framed("030000")
    # The new frames: IMAGE_FEATURES is IMAGE's payload under type 4; GAIN is u8 + u32.
    assert link.image_frame(9, [1, 2], features=True).hex() == _framed("04060009000000"
                                                                        "0102")
    assert link.gain_frame(2, 70000).hex() == _framed("0505000270110100")


@pytest.mark.parametrize("bits", [8, 6, 3])
def test_result_features_unpack_the_map_in_the_golden_order(bits):
    """The feature field: words of `channels` values, word 0 first, LSB first, padded to a
    byte; parsed into the golden model's channel-major order. The packing here is built bit
    by bit, independently of the parser; edge values 0 and the largest included."""
    channels, depth = 3, 5
    rng = np.random.default_rng(bits)
    x = rng.integers(0, 2 ** bits, size=(channels, depth))      # golden (c, p)
    x[0, 0], x[2, 4] = 2 ** bits - 1, 0
    stream = []
    for p in range(depth):
        for c in range(channels):
            stream += [(int(x[c, p]) >> k) & 1 for k in range(bits)]
    stream += [0] * (-len(stream) % 8)
    field = bytes(sum(b << k for k, b in enumerate(stream[i:i + 8]))
                  for i in range(0, len(stream), 8))
    assert len(field) == link.features_length(channels, depth, bits)
    head = struct.pack("<IB2iI2I", 4, 1, -3, 9, 500, 300, 200)
    r, feats = link.parse_result_features(head + field, 2, 2, channels, depth, bits)
    assert r == link.Result(4, 1, (-3, 9), 500, (300, 200))
    assert feats == x.reshape(-1).tolist()
    with pytest.raises(link.LinkError, match="RESULT_FEATURES"):
        link.parse_result_features(head + field[:-1], 2, 2, channels, depth, bits)
