"""Golden model of the on-chip update engine (docs/chip.md, "Update engine"): an integer,
hardware-friendly form of hybrid training's threshold rule that the chip can run itself.

Per labelled image, from the chip's integer logits and its FC inputs ``x`` (uint8):

1. the true class ``y`` must beat the strongest wrong class ``j`` (the first maximum of the
   logits other than ``y``) by more than ``margin``: if ``logit[y] - logit[j] <= margin``
   (a tie included) the image updates, else nothing happens;
2. update: ``acc[y, i] += x[i]`` and ``acc[j, i] -= x[i]`` for every input ``i``, each
   accumulator a signed ``acc_bits`` integer that saturates at its range's ends;
3. threshold: an updated accumulator that reaches ``+threshold`` asks for one pulse that
   raises weight ``(row, i)`` and gives back ``threshold``; one that reaches ``-threshold``
   asks for one that lowers it and gets back ``threshold``. At most one request per weight
   per image; a remainder beyond one threshold waits for the next update of that weight.

The requests come out in the order the gateware makes them (hdl/update_engine.py): feature
word by feature word (word ``p`` holds inputs ``c * words + p`` in lane ``c``, the chip's
``features`` layout), in each word the true class's row first, then the wrong class's, lane
by lane. A label outside ``0..n_out-1`` updates nothing.

The engine asks only for a direction. Which cell of the differential pair the pulse goes to
and how far it moves stays the device model's, on the host (:func:`apply_requests`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cim_spec import device_params
from cim_spec.config import ConfigError
from golden import device


@dataclass(frozen=True)
class EngineParams:
    n_out: int = 10         # classes (the FC layer's outputs)
    n_in: int = 192         # FC inputs
    lanes: int = 12         # inputs per feature word (the chip's S4 word: 12 channels)
    input_bits: int = 8     # FC input (activation) width
    logit_bits: int = 24    # signed logit width (the chip's acc_bits)
    acc_bits: int = 12      # signed accumulator width; the threshold is below 2**(acc_bits-1)

    def __post_init__(self):
        for name in ("n_out", "n_in", "lanes", "input_bits", "logit_bits", "acc_bits"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"update engine {name} must be an integer >= 1, got {v!r}")
        if self.n_out < 2:
            raise ConfigError(f"update engine n_out must be >= 2, got {self.n_out}")
        if self.n_in % self.lanes:
            raise ConfigError(f"update engine n_in ({self.n_in}) must be a multiple of "
                              f"lanes ({self.lanes})")
        if self.acc_bits < self.input_bits + 2:
            # one input must fit inside the range with its sign and a threshold above it
            raise ConfigError(f"update engine acc_bits must be >= input_bits + 2 = "
                              f"{self.input_bits + 2}, got {self.acc_bits}")
        if self.logit_bits < 2:
            raise ConfigError(f"update engine logit_bits must be >= 2, got {self.logit_bits}")

    @property
    def words(self) -> int:
        return self.n_in // self.lanes

    @property
    def acc_max(self) -> int:
        return (1 << (self.acc_bits - 1)) - 1

    @property
    def acc_min(self) -> int:
        return -(1 << (self.acc_bits - 1))

    def check_rule(self, threshold: int, margin: int) -> None:
        if isinstance(threshold, bool) or not isinstance(threshold, (int, np.integer)) \
                or not 1 <= threshold <= self.acc_max:
            raise ConfigError(f"update engine threshold must be an integer in "
                              f"1..{self.acc_max} (acc_bits {self.acc_bits}), got {threshold!r}")
        if isinstance(margin, bool) or not isinstance(margin, (int, np.integer)) \
                or not 0 <= margin < (1 << self.logit_bits):
            raise ConfigError(f"update engine margin must be an integer in "
                              f"0..{(1 << self.logit_bits) - 1}, got {margin!r}")


@dataclass(frozen=True)
class Request:
    out: int        # the FC layer's output (class) of the weight
    inp: int        # its input
    down: bool      # lower the weight (else raise it)


class UpdateEngine:
    """The engine's state (the accumulators) and its rule, one image at a time."""

    def __init__(self, params: EngineParams, threshold: int, margin: int):
        params.check_rule(threshold, margin)
        self.params, self.threshold, self.margin = params, int(threshold), int(margin)
        self.acc = np.zeros((params.n_out, params.n_in), dtype=np.int64)

    def wrong_class(self, logits, label: int) -> int | None:
        """The strongest wrong class if the image updates, else None."""
        p = self.params
        if not 0 <= label < p.n_out:
            return None
        logits = np.asarray(logits, dtype=np.int64)
        others = logits.copy()
        others[label] = np.iinfo(np.int64).min
        j = int(np.argmax(others))               # the first maximum, as the gateware's scan
        return j if int(logits[label]) - int(logits[j]) <= self.margin else None

    def image(self, logits, label: int, x) -> list[Request]:
        """Update from one image; its pulse requests in the gateware's order."""
        p = self.params
        x = np.asarray(x, dtype=np.int64)
        if len(logits) != p.n_out or len(x) != p.n_in:
            raise ValueError(f"expected {p.n_out} logits and {p.n_in} inputs, "
                             f"got {len(logits)} and {len(x)}")
        j = self.wrong_class(logits, int(label))
        if j is None:
            return []
        fired = {}
        for row, sign in ((int(label), 1), (j, -1)):
            a = np.clip(self.acc[row] + sign * x, p.acc_min, p.acc_max)
            up, dn = a >= self.threshold, a <= -self.threshold
            a[up] -= self.threshold
            a[dn] += self.threshold
            self.acc[row] = a
            fired[row] = (up, dn)
        reqs = []
        for w in range(p.words):
            for row in (int(label), j):
                up, dn = fired[row]
                for c in range(p.lanes):
                    i = c * p.words + w
                    if up[i] or dn[i]:
                        reqs.append(Request(row, i, bool(dn[i])))
        return reqs


def apply_requests(g, pulses, requests, pos, neg, stuck, gain, cfg, dev, rng) -> tuple[int, int]:
    """Apply one pulse per request to the flat conductances `g` (uS) in place, through the
    device model, choosing the cell as hybrid training does (golden/hybrid.py): to raise a
    weight RESET its negative cell if that sits above state 0 inside the window, else SET its
    positive cell unless that is already at the window's top (or at the negative cell's
    conductance, above it); lowering is symmetric. `pos`/`neg` (n_out, n_in) are the pairs'
    flat cell indices. Returns (pulses applied, requests refused at the window's edge)."""
    if not requests:
        return 0, 0
    o = np.array([r.out for r in requests])
    i = np.array([r.inp for r in requests])
    want_up = ~np.array([r.down for r in requests])
    p_cell, n_cell = pos[o, i], neg[o, i]
    read = device_params.to_codes(g, cfg) * cfg.g_lsb_us
    partner = np.where(want_up, n_cell, p_cell)
    main = np.where(want_up, p_cell, n_cell)
    lower = (read[partner] > cfg.g_min_us + dev.tolerance_us) & (read[partner] <= cfg.g_max_us)
    cell = np.where(lower, partner, main)
    ok = lower | (read[main] < np.maximum(cfg.g_max_us, read[partner]))
    c, up = cell[ok], ~lower[ok]
    g[c] = device.pulse(g[c], up, gain[c], stuck[c], dev, rng)
    pulses[c] += 1
    return int(ok.sum()), int((~ok).sum())
