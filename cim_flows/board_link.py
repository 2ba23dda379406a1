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

    def request(self, frame: bytes, ack: int, timeout: float, retries: int = 2) -> None:
        """Send a write (PROG, GAIN) until the board acknowledges it with its own payload.
        A NAK for a damaged, truncated or refused-for-now frame (CRC, TIMEOUT, OVERRUN) or
        no acknowledgement in `timeout` sends it again (a write is idempotent), `retries`
        times at most; a NAK for the frame's contents (TYPE, LENGTH, RANGE) raises at once.
        An acknowledgement of another payload is a late one of an earlier write, dropped."""
        kind, payload = frame[1], frame[4:-2]
        for _ in range(retries + 1):
            self.send(frame)
            end = time.monotonic() + timeout
            while time.monotonic() < end:
                self.poll(max(0.0, min(end - time.monotonic(), 0.2)))
                keep, verdict = [], None
                for k, p in self.replies:
                    if k == ack and verdict is None:
                        verdict = "ok" if p == payload else None
                    elif k == link.Reply.NAK and len(p) == 2 and p[1] == kind and \
                            verdict is None:
                        verdict = p[0]
                    else:
                        keep.append((k, p))
                self.replies = keep
                if verdict == "ok":
                    return
                if verdict in (link.Nak.TYPE, link.Nak.LENGTH, link.Nak.RANGE):
                    raise link.LinkError(f"the board refused {link.Cmd(kind).name} "
                                         f"{payload.hex()}: {link.Nak(verdict).name}")
                if verdict is not None:
                    break           # damaged or refused for now: send it again
        raise link.LinkError(f"{link.Cmd(kind).name} {payload.hex()} not acknowledged after "
                             f"{retries + 1} tries")

    def program(self, cells, timeout: float, retries: int = 2) -> int:
        """Write cells (pe, row, col, code) one frame each; each must be acknowledged with
        the same cell."""
        for pe, row, col, code in cells:
            self.request(link.prog_frame(int(pe), int(row), int(col), int(code)),
                         link.Reply.PROG_ACK, timeout, retries)
        return len(cells)

    def set_gains(self, gains, timeout: float, retries: int = 2) -> int:
        """Write ADC gain registers, (weight-layer index, gain) one frame each, between
        images (the board applies one while the chip is idle)."""
        for layer, gain in gains:
            self.request(link.gain_frame(int(layer), int(gain)), link.Reply.GAIN_ACK, timeout,
                         retries)
        return len(gains)


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


@dataclass
class Streamed:
    """What came back for a stream of images: results (and feature vectors) by id."""

    results: dict            # id -> link.Result
    features: dict           # id -> list of feature values (golden order), with features
    lost: int
    resent: int
    failed: list
    seconds: float


def feature_shape(chip: program.Chip) -> tuple[int, int, int]:
    """(channels, positions, bits) of the map a RESULT_FEATURES frame carries: the board's
    chip's feature buffer (the last weight layer's input)."""
    from hdl.chip import feature_buffer, has_features
    from hdl.chip_plan import plan_chip
    plan = plan_chip(chip)
    if not has_features(plan):
        raise ValueError("the chip's last weight layer reads the image: it has no features")
    b = feature_buffer(plan)
    return b.channels, b.depth, b.bits


def stream_images(session: Session, chip: program.Chip, images: np.ndarray, ids, *,
                  features: bool = False, timeout: float = 2.0, retries: int = 2,
                  window: int = WINDOW) -> Streamed:
    """Stream images with at most `window` in flight (IMAGE_FEATURES frames with
    `features`). An image without a result after `timeout` seconds is sent again, up to
    `retries` times, then reported as failed. Nothing is compared here."""
    net = chip.mapping.network
    images = chip_model.check_images(images, net.input_shape)
    ids = [int(i) for i in ids]
    n_logits, n_layers = net.layers[-1].n_out, len(chip.mapping.layers)
    fshape = feature_shape(chip) if features else None
    index = {image_id: i for i, image_id in enumerate(ids)}
    if len(index) != len(ids):
        raise ValueError("image ids must be unique (results are matched by id)")
    pixels = dac_inputs(images, chip.config.input_bits).reshape(
        len(images), int(np.prod(net.input_shape)))
    got: dict[int, link.Result] = {}
    feats: dict[int, list] = {}
    want_kind = link.Reply.RESULT_FEATURES if features else link.Reply.RESULT
    tries = Counter()
    in_flight: dict[int, float] = {}            # id -> deadline
    queue = list(ids)
    failed, lost = [], 0
    t0 = time.monotonic()
    while queue or in_flight:
        while queue and len(in_flight) < window:
            image_id = queue.pop(0)
            session.send(link.image_frame(image_id, pixels[index[image_id]], features))
            tries[image_id] += 1
            in_flight[image_id] = time.monotonic() + timeout
        session.poll(0.05)
        keep = []
        for kind, payload in session.replies:
            if kind not in (link.Reply.RESULT, link.Reply.RESULT_FEATURES):
                keep.append((kind, payload))
                continue
            if kind != want_kind:       # a late answer to another stream's image
                continue
            if features:
                r, f = link.parse_result_features(payload, n_logits, n_layers, *fshape)
            else:
                r, f = link.parse_result(payload, n_logits, n_layers), None
            if r.image_id in in_flight:
                del in_flight[r.image_id]
                got[r.image_id] = r
                if f is not None:
                    feats[r.image_id] = f
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
    return Streamed(got, feats, lost, sum(tries.values()) - len(ids), failed,
                    time.monotonic() - t0)


def run_images(session: Session, chip: program.Chip, images: np.ndarray, labels, ids, *,
               timeout: float = 2.0, retries: int = 2, window: int = WINDOW,
               features: bool = False) -> BoardRun:
    """Stream images (stream_images) and compare each result with the golden model of
    `chip`; with `features`, the feature vectors too (a differing vector is a mismatch)."""
    images = chip_model.check_images(images, chip.mapping.network.input_shape)
    ids = [int(i) for i in ids]
    gold = chip_model.run(chip, images, image_ids=np.asarray(ids, np.int64), trace=features)
    if features:
        net = chip.mapping.network
        prev = net.source(net.layers.index(net.weight_layers()[-1]))
        gold_x = gold.trace[prev].reshape(len(images), -1)
    st = stream_images(session, chip, images, ids, features=features, timeout=timeout,
                       retries=retries, window=window)
    index = {image_id: i for i, image_id in enumerate(ids)}
    mismatches, exact, agree, correct, cycles = [], 0, 0, 0, []
    for image_id, r in st.results.items():
        i = index[image_id]
        want = [int(v) for v in gold.logits[i]]
        ok = list(r.logits) == want
        if features and st.features[image_id] != gold_x[i].tolist():
            ok = False
            mismatches.append({"image_id": image_id, "features": "differ"})
        if ok:
            exact += 1
        elif list(r.logits) != want:
            mismatches.append({"image_id": image_id, "board": list(r.logits), "golden": want})
        agree += int(r.label == int(np.argmax(gold.logits[i])))
        correct += int(labels is not None and r.label == int(labels[i]))
        cycles.append(r.cycles_image)
    return BoardRun(len(st.results), exact, agree, correct, st.seconds, mismatches, st.lost,
                    st.resent, len(session.decoder.errors),
                    {f"{k[0]}/0x{k[1]:02x}": v for k, v in session.naks.items()}, cycles,
                    st.failed)


def link_images_per_s(baud: float, n_pixels: int, n_logits: int, n_layers: int,
                      feature_bytes: int = 0) -> float:
    """Images per second a full-duplex 8N1 link carries at `baud`: the larger of the image
    frame and its reply (with `feature_bytes` of features) sets the pace, as the two go
    opposite ways at the same time."""
    frame = link.HEADER + 4 + n_pixels + link.TRAILER
    reply = link.HEADER + link.result_length(n_logits, n_layers) + feature_bytes + \
        link.TRAILER
    return baud / 10 / max(frame, reply)
