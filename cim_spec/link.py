"""The host link of the chip's board (docs/board.md): frames, their CRC, and the payloads.

Plain Python, so that the host (cim_flows.board_link), the tests and the gateware's builder
(hdl/board_chip.py takes the constants from here) agree on one definition.

A frame, in either direction:

    0xA5 | type (1) | length (2, little-endian) | payload (length bytes) | CRC-16 (2, LE)

The CRC is CRC-16/CCITT-FALSE (polynomial 0x1021, initial value 0xFFFF, no reflection, no
final XOR) over type, length and payload. A receiver that finds a wrong CRC, an unknown type
or a length the type does not allow drops the frame whole; the board answers such a frame
with a NAK, the host raises LinkError.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

SYNC = 0xA5
HEADER = 4          # sync, type, length
TRAILER = 2         # CRC
MAX_PAYLOAD = 0xFFFF
CRC_INIT = 0xFFFF
CRC_POLY = 0x1021


class LinkError(Exception):
    """A frame that is corrupt, truncated, unexpected, or a NAK from the board."""


class Cmd(enum.IntEnum):
    """Host to board."""

    IMAGE = 0x01        # image id (u32) + one byte per pixel, raster order
    PROG = 0x02         # pe (u8), row (u16), col (u8), code (u8): one cell
    STATUS = 0x03       # no payload
    IMAGE_FEATURES = 0x04   # as IMAGE; answered with RESULT_FEATURES (a chip with features)
    GAIN = 0x05         # weight layer (u8), ADC gain (u32): one gain register


class Reply(enum.IntEnum):
    """Board to host."""

    RESULT = 0x81       # image id (u32), label (u8), logits (i32 each), cycles_image (u32),
    #                     cycles per layer (u32 each)
    PROG_ACK = 0x82     # pe, row, col, code of the cell written (as the PROG frame)
    STATUS = 0x83       # images done (u32), frames accepted (u16), frames rejected (u16),
    #                     busy (u8)
    RESULT_FEATURES = 0x84  # the RESULT payload, then the last weight layer's input map
    #                         (features_length bytes)
    GAIN_ACK = 0x85     # layer, gain of the register written (as the GAIN frame)
    NAK = 0x8F          # reason (u8, Nak), type of the rejected frame (u8)


class Nak(enum.IntEnum):
    CRC = 1             # the CRC does not match
    TYPE = 2            # no such command
    LENGTH = 3          # the payload length does not fit the command
    OVERRUN = 4         # an image arrived while the previous one was still being handed on
    TIMEOUT = 5         # the frame stopped arriving midway
    RANGE = 6           # a field outside what the chip holds (a gain frame's layer or gain)


PROG_FORMAT = "<BHBB"
GAIN_FORMAT = "<BI"


def crc16(data: bytes, crc: int = CRC_INIT) -> int:
    """CRC-16/CCITT-FALSE; crc16(b"123456789") == 0x29B1."""
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ CRC_POLY) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def encode(kind: int, payload: bytes = b"") -> bytes:
    """One frame."""
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes; a frame holds {MAX_PAYLOAD}")
    body = bytes([kind]) + struct.pack("<H", len(payload)) + payload
    return bytes([SYNC]) + body + struct.pack("<H", crc16(body))


def image_frame(image_id: int, pixels, features: bool = False) -> bytes:
    """An image; with `features` the board answers with RESULT_FEATURES."""
    data = bytes(int(v) for v in pixels)
    return encode(Cmd.IMAGE_FEATURES if features else Cmd.IMAGE,
                  struct.pack("<I", image_id & 0xFFFFFFFF) + data)


def gain_frame(layer: int, gain: int) -> bytes:
    """The ADC gain register of weight layer `layer` (its index in the network) set to
    `gain`."""
    return encode(Cmd.GAIN, struct.pack(GAIN_FORMAT, layer, gain))


def prog_frame(pe: int, row: int, col: int, code: int) -> bytes:
    return encode(Cmd.PROG, struct.pack(PROG_FORMAT, pe, row, col, code))


def result_length(n_logits: int, n_layers: int) -> int:
    return 4 + 1 + 4 * n_logits + 4 + 4 * n_layers


def features_length(channels: int, depth: int, bits: int) -> int:
    """Bytes of the feature field: the map's `depth` words of `channels` values of `bits`
    bits, concatenated least significant bit first, padded to a whole byte."""
    return -(-channels * depth * bits // 8)


STATUS_FORMAT = "<IHHB"


@dataclass(frozen=True)
class Result:
    image_id: int
    label: int
    logits: tuple[int, ...]
    cycles_image: int
    cycles_layer: tuple[int, ...]


@dataclass(frozen=True)
class Status:
    images_done: int
    accepted: int
    rejected: int
    busy: bool


def parse_result(payload: bytes, n_logits: int, n_layers: int) -> Result:
    if len(payload) != result_length(n_logits, n_layers):
        raise LinkError(f"RESULT of {len(payload)} bytes, expected "
                        f"{result_length(n_logits, n_layers)}")
    image_id, label = struct.unpack_from("<IB", payload)
    logits = struct.unpack_from(f"<{n_logits}i", payload, 5)
    cyc = struct.unpack_from(f"<{1 + n_layers}I", payload, 5 + 4 * n_logits)
    return Result(image_id, label, tuple(logits), cyc[0], tuple(cyc[1:]))


def parse_result_features(payload: bytes, n_logits: int, n_layers: int, channels: int,
                          depth: int, bits: int) -> tuple[Result, list[int]]:
    """A RESULT_FEATURES payload: the result and the feature values, in the golden model's
    order (channel-major: channel c of position p at c * depth + p)."""
    head = result_length(n_logits, n_layers)
    want = head + features_length(channels, depth, bits)
    if len(payload) != want:
        raise LinkError(f"RESULT_FEATURES of {len(payload)} bytes, expected {want}")
    words = int.from_bytes(payload[head:], "little")
    mask = (1 << bits) - 1
    feats = [(words >> ((p * channels + c) * bits)) & mask
             for c in range(channels) for p in range(depth)]
    return parse_result(payload[:head], n_logits, n_layers), feats


def parse_status(payload: bytes) -> Status:
    if len(payload) != struct.calcsize(STATUS_FORMAT):
        raise LinkError(f"STATUS of {len(payload)} bytes")
    done, acc, rej, busy = struct.unpack(STATUS_FORMAT, payload)
    return Status(done, acc, rej, bool(busy))


class Decoder:
    """Frames out of a byte stream. Bytes before a sync byte are skipped (counted in
    `skipped`); a frame whose CRC fails is dropped, its reason appended to `errors`, and
    decoding resumes after its sync byte. `feed` returns the complete frames as
    (type, payload)."""

    def __init__(self):
        self.buf = bytearray()
        self.skipped = 0
        self.errors: list[str] = []

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        self.buf += data
        out = []
        while True:
            start = self.buf.find(SYNC)
            if start < 0:
                self.skipped += len(self.buf)
                self.buf.clear()
                return out
            if start:
                self.skipped += start
                del self.buf[:start]
            if len(self.buf) < HEADER:
                return out
            length = struct.unpack_from("<H", self.buf, 2)[0]
            end = HEADER + length + TRAILER
            if len(self.buf) < end:
                return out
            body = bytes(self.buf[1:HEADER + length])
            (crc,) = struct.unpack_from("<H", self.buf, HEADER + length)
            if crc != crc16(body):
                # Resynchronize after this sync byte: the length itself may be corrupt.
                del self.buf[:1]
                self.skipped += 1
                self.errors.append(f"frame of type 0x{body[0]:02x} with a bad CRC "
                                   f"(0x{crc:04x}, computed 0x{crc16(body):04x})")
                continue
            del self.buf[:end]
            out.append((body[0], body[3:]))
