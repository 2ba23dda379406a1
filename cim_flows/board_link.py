"""The host side of the chip board's serial link (docs/board.md): images out, logits back,
every logit compared with the golden model of the same chip state.

Only os, termios and select: the port is a serial device (/dev/ttyUSB0 on a ULX3S) or the
pseudo-terminal of the simulated board (testbench.board_sim). Results are matched to images
by their id; an image whose result does not arrive in time (its frame or its result was
corrupted or lost: the board answers a bad frame with a NAK, the host drops a reply whose
CRC fails) is reported and sent again, so a bad frame can cost time but never a wrong logit.
"""

from __future__ import annotations

import os
import select
import termios
import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from cim_spec import link, program
from cim_spec.program import dac_inputs
from golden import chip_model

WINDOW = 2          # images in flight: the board's one buffer plus the chip's own bank


class Port:
    """A serial port (or a pty) in raw mode, non-blocking."""

    def __init__(self, path: str, baud: int | None = None):
        self.path = path
        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        try:
            attrs = termios.tcgetattr(self.fd)
            iflag, oflag, cflag, lflag, ispeed, ospeed, cc = attrs
            iflag = 0
            oflag = 0
            lflag = 0
            cflag = (cflag & ~(termios.CSIZE | termios.PARENB | termios.CSTOPB)) | \
                termios.CS8 | termios.CREAD | termios.CLOCAL
            if baud is not None:
                speed = getattr(termios, f"B{baud}", None)
                if speed is None:
                    raise ValueError(f"{path}: {baud} baud is not a rate this system's termios "
                                     f"knows")
                ispeed = ospeed = speed
            cc[termios.VMIN], cc[termios.VTIME] = 0, 0
            termios.tcsetattr(self.fd, termios.TCSANOW,
                              [iflag, oflag, cflag, lflag, ispeed, ospeed, cc])
            termios.tcflush(self.fd, termios.TCIOFLUSH)
        except BaseException:
            os.close(self.fd)
            raise

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                n = os.write(self.fd, view)
            except BlockingIOError:
                n = 0
            view = view[n:]
            if view:
                select.select([], [self.fd], [], 1.0)

    def read(self, timeout: float) -> bytes:
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return b""
        try:
            return os.read(self.fd, 65536)
        except BlockingIOError:
            return b""

    def close(self) -> None:
        os.close(self.fd)


@dataclass
class Session:
    """The frames of one port; replies that are not results are kept for whoever asks."""

    port: Port
    decoder: link.Decoder = field(default_factory=link.Decoder)
    replies: list = field(default_factory=list)
    naks: Counter = field(default_factory=Counter)

    def send(self, frame: bytes) -> None:
        self.port.write(frame)

    def poll(self, timeout: float) -> None:
        data = self.port.read(timeout)
        if data:
            for kind, payload in self.decoder.feed(data):
                if kind == link.Reply.NAK and len(payload) == 2:
                    self.naks[(link.Nak(payload[0]).name if payload[0] in
                               link.Nak._value2member_map_ else str(payload[0]),
                               payload[1])] += 1
                self.replies.append((kind, payload))

    def wait_for(self, kind: int, timeout: float) -> bytes:
        end = time.monotonic() + timeout
        while True:
            for i, (k, payload) in enumerate(self.replies):
                if k == kind:
                    del self.replies[i]
                    return payload
            left = end - time.monotonic()
            if left <= 0:
                raise link.LinkError(f"no {link.Reply(kind).name} reply in {timeout:g} s")
            self.poll(min(left, 0.2))

    def status(self, timeout: float) -> link.Status:
        self.send(link.encode(link.Cmd.STATUS))
        return link.parse_status(self.wait_for(link.Reply.STATUS, timeout))

    def program(self, cells, timeout: float) -> int:
        """Write cells (pe, row, col, code) one frame each; each must be acknowledged with
        the same cell."""
        for pe, row, col, code in cells:
            frame = link.prog_frame(int(pe), int(row), int(col), int(code))
            self.send(frame)
            echo = self.wait_for(link.Reply.PROG_ACK, timeout)
            if echo != frame[4:-2]:
                raise link.LinkError(f"cell ({pe}, {row}, {col}) acknowledged as {echo.hex()}")
        return len(cells)


@dataclass
class BoardRun:
    images: int
    bitexact: int
    label_agreement: int
    correct: int
    seconds: float
    mismatches: list
    lost: int
    resent: int
    crc_errors: int
    naks: dict
    cycles_image: list
    failed: list

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict:
        return {"images": self.images, "bitexact": self.bitexact,
                "label_agreement": self.label_agreement, "correct": self.correct,
                "accuracy": self.correct / self.images if self.images else None,
                "seconds": round(self.seconds, 3), "images_per_s": round(self.images_per_s, 2),
                "mismatches": self.mismatches[:10], "lost": self.lost, "resent": self.resent,
                "crc_errors": self.crc_errors, "naks": self.naks, "failed": self.failed,
                "cycles_image_median": (int(np.median(self.cycles_image))
                                        if self.cycles_image else None)}


def run_images(session: Session, chip: program.Chip, images: np.ndarray, labels, ids, *,
               timeout: float = 2.0, retries: int = 2, window: int = WINDOW) -> BoardRun:
    """Stream images with at most `window` in flight; compare each result with the golden
    model of `chip`. An image without a result after `timeout` seconds is sent again, up to
    `retries` times, then reported as failed."""
    net = chip.mapping.network
    images = chip_model.check_images(images, net.input_shape)
    ids = [int(i) for i in ids]
    gold = chip_model.run(chip, images, image_ids=np.asarray(ids, np.int64)).logits
    n_logits, n_layers = gold.shape[1], len(chip.mapping.layers)
    index = {image_id: i for i, image_id in enumerate(ids)}
    if len(index) != len(ids):
        raise ValueError("image ids must be unique (results are matched by id)")
    got: dict[int, link.Result] = {}
    tries = Counter()
    in_flight: dict[int, float] = {}            # id -> deadline
    queue = list(ids)
    failed, lost = [], 0
    t0 = time.monotonic()
    while queue or in_flight:
        while queue and len(in_flight) < window:
            image_id = queue.pop(0)
            i = index[image_id]
            session.send(link.image_frame(
                image_id, dac_inputs(images[i], chip.config.input_bits).ravel()))
            tries[image_id] += 1
            in_flight[image_id] = time.monotonic() + timeout
        session.poll(0.05)
        keep = []
        for kind, payload in session.replies:
            if kind != link.Reply.RESULT:
                keep.append((kind, payload))
                continue
            r = link.parse_result(payload, n_logits, n_layers)
            if r.image_id in in_flight:
                del in_flight[r.image_id]
                got[r.image_id] = r
        # NAKs were counted by the session; their image shows up as a missing result.
        session.replies = [(k, p) for k, p in keep if k != link.Reply.NAK]
        now = time.monotonic()
        for image_id, deadline in list(in_flight.items()):
            if now > deadline:
                del in_flight[image_id]
                lost += 1
                if tries[image_id] <= retries:
                    queue.insert(0, image_id)
                else:
                    failed.append(image_id)
    seconds = time.monotonic() - t0
    mismatches, exact, agree, correct, cycles = [], 0, 0, 0, []
    for image_id, r in got.items():
        i = index[image_id]
        want = [int(v) for v in gold[i]]
        if list(r.logits) == want:
            exact += 1
        else:
            mismatches.append({"image_id": image_id, "board": list(r.logits), "golden": want})
        agree += int(r.label == int(np.argmax(gold[i])))
        correct += int(labels is not None and r.label == int(labels[i]))
        cycles.append(r.cycles_image)
    return BoardRun(len(got), exact, agree, correct, seconds, mismatches, lost,
                    sum(tries.values()) - len(ids), len(session.decoder.errors),
                    {f"{k[0]}/0x{k[1]:02x}": v for k, v in session.naks.items()}, cycles,
                    failed)


def link_images_per_s(baud: float, n_pixels: int, n_logits: int, n_layers: int) -> float:
    """Images per second a full-duplex 8N1 link carries at `baud`: the image frames are the
    bottleneck (the results go the other way)."""
    frame = link.HEADER + 4 + n_pixels + link.TRAILER
    reply = link.HEADER + link.result_length(n_logits, n_layers) + link.TRAILER
    return baud / 10 / max(frame, reply)
