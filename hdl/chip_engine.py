"""The update engine as the chip instantiates it (`CimChip(plan, engine=EngineRule(...))`,
docs/chip.md "Update engine"): hdl/update_engine.py behind a feature buffer, with its rule
constants and a count of the images it has finished.

The chip's FC inputs (the last weight layer's input map, hdl/features.py) leave the feature
reader while the last layer runs, before the logits; the engine needs the logits first (it
decides from them whether the image updates) and then the inputs. So the inputs wait in a
FIFO of one image's words: the reader of the next image fills it only as the engine empties
it, so the pairing of logits and inputs stays in image order without any tag, and a full
buffer stalls the chip instead of losing words.
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth import Module, Signal, signed
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for

from .chip_plan import ChipPlan
from .update_engine import UpdateEngine, request_layout


@dataclass(frozen=True)
class EngineRule:
    """The engine's rule: the accumulator threshold (`1..2**(acc_bits-1) - 1`), the logit
    margin (`0..2**logit_bits - 1`, logit_bits being the chip's logit width) and the
    accumulators' width (signed, saturating). Constants of the chip: the host does not
    change them at run time."""

    threshold: int
    margin: int
    acc_bits: int = 12

    def check(self, logit_bits: int, input_bits: int) -> None:
        def is_int(v):
            return isinstance(v, int) and not isinstance(v, bool)
        if not is_int(self.acc_bits) or self.acc_bits < input_bits + 2:
            raise ValueError(f"engine acc_bits must be an integer >= input_bits + 2 = "
                             f"{input_bits + 2}, got {self.acc_bits!r}")
        top = (1 << (self.acc_bits - 1)) - 1
        if not is_int(self.threshold) or not 1 <= self.threshold <= top:
            raise ValueError(f"engine threshold must be an integer in 1..{top} (acc_bits "
                             f"{self.acc_bits}), got {self.threshold!r}")
        if not is_int(self.margin) or not 0 <= self.margin < (1 << logit_bits):
            raise ValueError(f"engine margin must be an integer in 0..{(1 << logit_bits) - 1} "
                             f"(the chip's {logit_bits}-bit logits), got {self.margin!r}")


def label_bits(plan: ChipPlan) -> int:
    """The chip's `label` input: wide enough for n_out too (a label >= n_out updates
    nothing: an unlabelled image)."""
    return bits_for(plan.layers[-1].n_out)


def engine_requests(plan: ChipPlan) -> data.StructLayout:
    """The chip's `requests` payload: `out`, `inp`, `down` (hdl.update_engine)."""
    buf = plan.buffers[plan.layers[-1].src]
    return request_layout(plan.layers[-1].n_out, buf.channels * buf.depth)


class ChipEngine(wiring.Component):
    """`logits` (the chip's logits of an image, with its `label` held steady while they are
    offered) and `features` (that image's FC-input words, which arrive first) in; the pulse
    `requests` out; `updates_done` counts the images the engine has finished (requests all
    taken), so a host knows when an image's requests are complete."""

    def __init__(self, plan: ChipPlan, rule: EngineRule):
        if not isinstance(rule, EngineRule):
            raise TypeError(f"the chip's engine needs an EngineRule, got {type(rule).__name__}")
        buf = plan.buffers[plan.layers[-1].src]
        if buf.name == "img":
            raise ValueError("the update engine needs a last layer that reads a feature map, "
                             "not the image")
        rule.check(plan.acc_bits, buf.bits)
        self.plan, self.rule, self.buf = plan, rule, buf
        self.n_out = plan.layers[-1].n_out
        super().__init__({
            "logits": In(stream.Signature(data.ArrayLayout(signed(plan.acc_bits), self.n_out))),
            "label": In(label_bits(plan)),
            "features": In(stream.Signature(buf.word_bits)),
            "requests": Out(stream.Signature(engine_requests(plan))),
            "updates_done": Out(32),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        buf, rule = self.buf, self.rule
        m.submodules.engine = eng = UpdateEngine(
            n_out=self.n_out, n_in=buf.channels * buf.depth, lanes=buf.channels,
            input_bits=buf.bits, logit_bits=self.plan.acc_bits, acc_bits=rule.acc_bits)
        m.d.comb += [eng.threshold.eq(rule.threshold), eng.margin.eq(rule.margin)]

        m.submodules.buffer = buffer = fifo.SyncFIFOBuffered(width=buf.word_bits,
                                                            depth=buf.depth)
        m.d.comb += [buffer.w_data.eq(self.features.payload),
                     buffer.w_en.eq(self.features.valid), self.features.ready.eq(buffer.w_rdy),
                     eng.features.payload.eq(buffer.r_data), eng.features.valid.eq(buffer.r_rdy),
                     buffer.r_en.eq(eng.features.ready)]

        m.d.comb += [eng.image.valid.eq(self.logits.valid), self.logits.ready.eq(eng.image.ready),
                     eng.image.payload.label.eq(self.label)]
        for i in range(self.n_out):
            m.d.comb += eng.image.payload.logits[i].eq(self.logits.payload[i])
        wiring.connect(m, eng.requests, wiring.flipped(self.requests))

        # An image is finished when the engine is back in its idle state after taking it (it
        # is busy from the cycle after it took the logits until its last request is taken).
        pending = Signal()
        with m.If(pending & ~eng.busy):
            m.d.sync += [self.updates_done.eq(self.updates_done + 1), pending.eq(0)]
        with m.If(eng.image.valid & eng.image.ready):
            m.d.sync += pending.eq(1)
        m.d.comb += self.busy.eq(pending | eng.busy)
        return m

