"""The files between the host (testbench/chip_sim.py) and the chip's testbench running inside
the simulator (testbench/chip_tests.py): a job (the images, their ids, the logits the golden
model expects, the cell writes and the options) and the answer (what the RTL computed, what
the scoreboard found, the traffic the monitors saw). Both sides read and write them here
only, so the format has one definition. numpy files, loaded without pickle."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class CellWrite:
    """One cell's new conductance code, written through the chip's programming port after
    the results of images 0..before-1 and before image `before` is loaded."""

    before: int
    pe: int
    row: int
    col: int
    code: int


@dataclass(frozen=True)
class GainWrite:
    """A weight layer's new ADC gain, written into the chip's gain register through its gain
    port after the results of images 0..before-1 and before image `before` is loaded (how
    the host applies a drift compensation, golden/compensate.py)."""

    before: int
    layer: str
    gain: int


@dataclass
class Job:
    images: np.ndarray              # (n, H, W) pixels, (n, C, H, W) for C channels
    image_ids: np.ndarray           # (n,)
    expected: np.ndarray            # (n, n_out) logits of the golden model
    meta: dict                      # formats and options (see chip_sim.job_meta)
    prog_before: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    prog_payload: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    gain_before: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    gain_payload: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    # (n,) each image's label, for a chip with an update engine (empty otherwise)
    labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def writes_before(self, k: int) -> list[int]:
        """The packed programming-port payloads to write before image k, in order."""
        return [int(p) for b, p in zip(self.prog_before, self.prog_payload, strict=True)
                if b == k]

    def gains_before(self, k: int) -> list[int]:
        """The packed gain-port payloads to write before image k, in order."""
        return [int(p) for b, p in zip(self.gain_before, self.gain_payload, strict=True)
                if b == k]


def write_job(path: Path, job: Job) -> None:
    np.savez(path, images=job.images, image_ids=job.image_ids, expected=job.expected,
             meta=json.dumps(job.meta), prog_before=np.asarray(job.prog_before, np.int64),
             prog_payload=np.asarray(job.prog_payload, np.int64),
             gain_before=np.asarray(job.gain_before, np.int64),
             gain_payload=np.asarray(job.gain_payload, np.int64),
             labels=np.asarray(job.labels, np.int64))


def read_job(path) -> Job:
    with np.load(path, allow_pickle=False) as f:
        return Job(f["images"], f["image_ids"], f["expected"], json.loads(str(f["meta"])),
                   f["prog_before"], f["prog_payload"], f["gain_before"], f["gain_payload"],
                   f["labels"])


@dataclass
class Answer:
    logits: np.ndarray              # (n, n_out) what the RTL computed
    labels: np.ndarray              # (n,) the RTL's argmax
    done_at: np.ndarray             # (n,) cycle at which each result was taken
    mismatches: np.ndarray          # indices the scoreboard found differing
    meta: dict                      # counters of the chip and the traffic seen
    taps: dict = field(default_factory=dict)   # feature-map writes (debug runs)
    features: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.int64))
    # (n, n_in) the last weight layer's input vector of each image, read from the chip
    requests: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.int64))
    # (r, 4) the update engine's pulse requests in order: image (its index in the job), out,
    # inp, down


def _rows(a, n: int) -> np.ndarray:
    """`a` as n rows (numpy cannot infer a row length from zero rows)."""
    a = np.asarray(a, np.int64)
    return a.reshape(n, -1) if n else a.reshape(0, a.shape[-1] if a.ndim == 2 else 0)


def write_answer(path: Path, ans: Answer) -> None:
    np.savez(path, **ans.taps, logits=_rows(ans.logits, len(ans.labels)),
             labels=np.asarray(ans.labels, np.int64), done_at=np.asarray(ans.done_at, np.int64),
             mismatches=np.asarray(ans.mismatches, np.int64), meta=json.dumps(ans.meta),
             features=_rows(ans.features, len(ans.labels)),
             requests=np.asarray(ans.requests, np.int64).reshape(-1, 4))


def read_answer(path) -> Answer:
    with np.load(path, allow_pickle=False) as f:
        taps = {k: f[k] for k in f.files if k.startswith("tap_")}
        return Answer(f["logits"], f["labels"], f["done_at"], f["mismatches"],
                      json.loads(str(f["meta"])), taps, f["features"], f["requests"])


def pack_beats(image: np.ndarray, image_id: int, per_beat: int, bits: int,
               label: int = 0) -> list[int]:
    """The harness's load beats: pixel i of a beat at bits [bits*i, bits*(i+1)), then the
    32-bit id and (a chip with an update engine) the label."""
    flat = [int(v) for v in image.ravel()]
    if flat and not 0 <= min(flat) <= max(flat) < 2 ** bits:
        # A wider value would spill into its neighbour's field: never send one.
        raise ValueError(f"image {image_id}: pixel values {min(flat)}..{max(flat)} do not fit "
                         f"the chip's {bits}-bit pixel port (convert them to the DAC's width)")
    flat += [0] * (-len(flat) % per_beat)
    beats = []
    for b in range(0, len(flat), per_beat):
        word = 0
        for i, v in enumerate(flat[b:b + per_beat]):
            word |= v << (bits * i)
        beats.append(word | ((int(image_id) | int(label) << 32) << (bits * per_beat)))
    return beats


def unpack_result(value: int, meta: dict) -> tuple[list[int], int, list[int]]:
    """The harness's result beat (hdl.harness.harness_result_layout): the logits, the label
    and the last layer's input vector in the golden model's order (channel-major: channel c
    of word p at index c * depth + p)."""
    n, acc_bits, label_bits = meta["n_out"], meta["acc_bits"], meta["label_bits"]
    logits = []
    for i in range(n):
        v = (value >> (i * acc_bits)) & ((1 << acc_bits) - 1)
        logits.append(v - (1 << acc_bits) if v >> (acc_bits - 1) else v)
    value >>= n * acc_bits
    label = value & ((1 << label_bits) - 1)
    channels, depth, bits = meta["features"]
    words = value >> label_bits
    mask = (1 << bits) - 1
    per_word = [(words >> (p * channels * bits)) for p in range(depth)]
    feats = [(per_word[p] >> (c * bits)) & mask for c in range(channels) for p in range(depth)]
    return logits, label, feats
