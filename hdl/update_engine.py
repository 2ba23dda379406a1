"""On-chip update engine: turns each labelled image's logits and FC inputs into pulse requests
on the FC layer's weight pairs (the rule: golden/update_engine.py, docs/chip.md "Update
engine"). The chip instantiates it behind a feature buffer (hdl/chip_engine.py).

Per image it takes one `image` beat (the logits and the label), scans the logits for the
strongest wrong class (one class per cycle, the first maximum wins, as the golden model's
argmax), decides whether the image updates, then takes the image's `words` feature words. For
an updating image, each word is added to the true class's accumulator word and subtracted from
the wrong class's (read, add with saturation, threshold, write back: one accumulator word per
row and feature word, `lanes` accumulators side by side), and the lanes that reached the
threshold are sent on `requests` one by one. A word of an image that does not update is taken
and dropped. Cycles per updating image: `words * 2 * (2 + lanes)` plus the scan.
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for


def _check_int(name: str, v, low: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < low:
        raise ValueError(f"update engine {name} must be an integer >= {low}, got {v!r}")
    return v


def image_layout(n_out: int, logit_bits: int) -> data.StructLayout:
    """One image's beat: its logits (signed) and label; the label's width holds n_out too,
    and a label >= n_out updates nothing."""
    return data.StructLayout({"logits": data.ArrayLayout(signed(logit_bits), n_out),
                              "label": unsigned(bits_for(n_out))})


def request_layout(n_out: int, n_in: int) -> data.StructLayout:
    """One pulse request: raise (down = 0) or lower (down = 1) weight (out, inp)."""
    return data.StructLayout({"out": range(n_out), "inp": range(n_in), "down": 1})


class UpdateEngine(wiring.Component):
    """The update engine for an FC layer of `n_out` x `n_in` weights whose inputs arrive
    `lanes` per feature word (lane c of word p is input c * words + p), `input_bits` each;
    logits of `logit_bits` (signed); accumulators of `acc_bits` (signed, saturating).
    `threshold` (>= 1) and `margin` are rule registers the host holds steady; `busy` is high
    while an image is under way."""

    def __init__(self, n_out: int = 10, n_in: int = 192, lanes: int = 12, input_bits: int = 8,
                 logit_bits: int = 24, acc_bits: int = 12):
        _check_int("n_out", n_out, 2)
        _check_int("n_in", n_in, 1)
        _check_int("lanes", lanes, 1)
        _check_int("input_bits", input_bits, 1)
        _check_int("logit_bits", logit_bits, 2)
        _check_int("acc_bits", acc_bits, input_bits + 2)
        if n_in % lanes:
            raise ValueError(f"update engine n_in ({n_in}) must be a multiple of lanes ({lanes})")
        self.n_out, self.n_in, self.lanes = n_out, n_in, lanes
        self.input_bits, self.logit_bits, self.acc_bits = input_bits, logit_bits, acc_bits
        self.words = n_in // lanes
        super().__init__({
            "image": In(stream.Signature(image_layout(n_out, logit_bits))),
            "features": In(stream.Signature(data.ArrayLayout(unsigned(input_bits), lanes))),
            "requests": Out(stream.Signature(request_layout(n_out, n_in))),
            "threshold": In(unsigned(acc_bits - 1)),
            "margin": In(unsigned(logit_bits)),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        n_out, words, lanes, ab = self.n_out, self.words, self.lanes, self.acc_bits
        acc_word = data.ArrayLayout(signed(ab), lanes)
        # Accumulator word `row * words + p`: row `row`'s accumulators of feature word p.
        m.submodules.acc = mem = memory.Memory(shape=acc_word, depth=n_out * words, init=[])
        rd, wr = mem.read_port(), mem.write_port()

        img = Signal(image_layout(n_out, self.logit_bits))
        k = Signal(range(n_out + 1))             # scan position
        best = Signal(range(n_out))              # strongest wrong class so far
        best_val = Signal(signed(self.logit_bits))
        have = Signal()                          # best holds a class
        upd = Signal()                           # the image updates
        # (at least one bit wide: Verilog has no empty vector, one-word maps included)
        p = Signal(range(max(words, 2)))         # feature word
        second = Signal()                        # the wrong class's row (else the true one's)
        x = Signal(data.ArrayLayout(unsigned(self.input_bits), lanes))
        up = Signal(lanes)
        dn = Signal(lanes)
        c = Signal(range(max(lanes, 2)))         # lane being sent

        row = Mux(second, best, img.label)
        addr = Signal(range(n_out * words))
        m.d.comb += [addr.eq(row * words + p), rd.addr.eq(addr), wr.addr.eq(addr),
                     rd.en.eq(0)]

        # New accumulators of the word on rd.data: saturating add/subtract, then threshold.
        lo, hi = -(1 << (ab - 1)), (1 << (ab - 1)) - 1
        new = Signal(acc_word)
        fire_up, fire_dn = Signal(lanes), Signal(lanes)
        for i in range(lanes):
            s = Signal(signed(ab + 2), name=f"sum{i}")
            sat = Signal(signed(ab), name=f"sat{i}")
            m.d.comb += [
                s.eq(Mux(second, rd.data[i] - x[i], rd.data[i] + x[i])),
                sat.eq(Mux(s > hi, hi, Mux(s < lo, lo, s))),
                fire_up[i].eq(sat >= self.threshold),
                fire_dn[i].eq(sat <= -self.threshold),
                new[i].eq(Mux(fire_up[i], sat - self.threshold,
                              Mux(fire_dn[i], sat + self.threshold, sat))),
            ]
        m.d.comb += wr.data.eq(new)

        m.d.comb += [self.requests.payload.out.eq(row),
                     self.requests.payload.inp.eq(c * words + p),
                     self.requests.payload.down.eq(dn.bit_select(c, 1))]

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.image.ready.eq(1)
                with m.If(self.image.valid):
                    m.d.sync += [img.eq(self.image.payload), k.eq(0), have.eq(0)]
                    m.next = "SCAN"
            with m.State("SCAN"):
                m.d.comb += self.busy.eq(1)
                lk = img.logits[k]
                with m.If(k == n_out):
                    m.next = "DECIDE"
                with m.Else():
                    with m.If((k != img.label) & (~have | (lk > best_val))):
                        m.d.sync += [best.eq(k), best_val.eq(lk), have.eq(1)]
                    m.d.sync += k.eq(k + 1)
            with m.State("DECIDE"):
                m.d.comb += self.busy.eq(1)
                diff = img.logits[img.label] - best_val
                m.d.sync += [upd.eq((img.label < n_out) & (diff <= self.margin)),
                             p.eq(0), second.eq(0)]
                m.next = "WORD"
            with m.State("WORD"):
                m.d.comb += [self.busy.eq(1), self.features.ready.eq(1)]
                with m.If(self.features.valid):
                    m.d.sync += x.eq(self.features.payload)
                    with m.If(upd):
                        m.next = "READ"
                    with m.Elif(p == words - 1):
                        m.next = "IDLE"
                    with m.Else():
                        m.d.sync += p.eq(p + 1)
            with m.State("READ"):
                # Synchronous read: the word is on rd.data in the next cycle.
                m.d.comb += [self.busy.eq(1), rd.en.eq(1)]
                m.next = "CALC"
            with m.State("CALC"):
                m.d.comb += [self.busy.eq(1), wr.en.eq(1)]
                m.d.sync += [up.eq(fire_up), dn.eq(fire_dn), c.eq(0)]
                m.next = "EMIT"
            with m.State("EMIT"):
                # One lane per cycle; a lane that fired waits for the request to be taken.
                m.d.comb += self.busy.eq(1)
                fired = (up | dn).bit_select(c, 1)
                m.d.comb += self.requests.valid.eq(fired)
                with m.If(~fired | self.requests.ready):
                    with m.If(c == lanes - 1):
                        with m.If(~second):
                            m.d.sync += second.eq(1)
                            m.next = "READ"
                        with m.Elif(p == words - 1):
                            m.next = "IDLE"
                        with m.Else():
                            m.d.sync += [second.eq(0), p.eq(p + 1)]
                            m.next = "WORD"
                    with m.Else():
                        m.d.sync += c.eq(c + 1)
        return m
