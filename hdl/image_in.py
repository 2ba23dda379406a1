"""The host's image input: a pixel stream into a double-buffered image memory, so the next
image loads while the chip still reads the current one.

An image of C channels arrives plane by plane (the golden model's (C, H, W) order flattened:
all of channel 0 in raster order, then channel 1, ...), one pixel a beat; the memory holds
one word per position with the channels side by side, like every feature map, and pixel
(c, y, x) writes lane c of word y * W + x (a write port of `bits` granularity). A
single-channel image writes whole words, as before."""

from __future__ import annotations

from amaranth import Cat, Module, Signal
from amaranth.hdl import Assert
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from . import checks
from .chip_plan import Buffer


class ImageInput(wiring.Component):
    """Pixels in raster order, plane by plane, fill bank `wb`; the id (and, with
    `label_bits`, the label) is sampled with an image's first pixel.

    The consumer sees `avail`, the image id `cur_id` (and `cur_label`) and the bank
    `cur_bank` of the oldest complete image, and frees that bank with a `release` pulse. `wr`
    drives the write port of the image memory (two banks of `buf.depth` words of
    `buf.channels` pixels, bank b at b * depth; one enable per channel when there are
    several).
    """

    def __init__(self, buf: Buffer, label_bits: int = 0):
        self.buf, self.label_bits = buf, label_bits
        labels = {"label": In(label_bits), "cur_label": Out(label_bits)} if label_bits else {}
        lanes = {"granularity": buf.bits} if buf.channels > 1 else {}
        super().__init__({
            "pixels": In(stream.Signature(buf.bits)),
            "image_id": In(32),
            **labels,
            "avail": Out(1),
            "cur_bank": Out(1),
            "cur_id": Out(32),
            "release": In(1),
            "wr": In(memory.WritePort.Signature(addr_width=ceil_log2(2 * buf.depth),
                                                shape=buf.word_bits, **lanes)),
        })

    def elaborate(self, platform):
        m = Module()
        depth = self.buf.depth
        full = Signal(2)
        # A bank's id and label side by side: the label (if any) in the bits above the id.
        tag_bits = 32 + self.label_bits
        ids = [Signal(tag_bits, name=f"id_{b}") for b in range(2)]
        tag_in = Signal(tag_bits)
        cur = Signal(tag_bits)
        m.d.comb += tag_in.eq(self.image_id if not self.label_bits
                              else Cat(self.image_id, self.label))
        wb, rb = Signal(), Signal()
        wp = Signal(range(depth))

        one = self.buf.channels == 1
        m.d.comb += [
            self.pixels.ready.eq(~full.bit_select(wb, 1)),
            self.wr.addr.eq(wb * depth + wp),
            *([self.wr.data.eq(self.pixels.payload),
               self.wr.en.eq(self.pixels.valid & self.pixels.ready)] if one else []),
            self.avail.eq(full.bit_select(rb, 1)),
            self.cur_bank.eq(rb),
            cur.eq(ids[1]),
            self.cur_id.eq(cur[:32]),
        ]
        if self.label_bits:
            m.d.comb += self.cur_label.eq(cur[32:])
        with m.If(rb == 0):
            m.d.comb += cur.eq(ids[0])

        if one:
            with m.If(self.wr.en):
                m.d.sync += wp.eq(wp + 1)
                with m.If(wp == 0):
                    for b in range(2):
                        with m.If(wb == b):
                            m.d.sync += ids[b].eq(tag_in)
                with m.If(wp == depth - 1):
                    m.d.sync += [wp.eq(0), full.bit_select(wb, 1).eq(1), wb.eq(~wb)]
        else:
            self._planes(m, wp, wb, full, ids, tag_in)
        with m.If(self.release):
            m.d.sync += [full.bit_select(rb, 1).eq(0), rb.eq(~rb)]
        if checks.enabled(platform):
            m.d.comb += Assert(wp < depth, "image input: pixel address out of range")
            with m.If(self.release):
                m.d.comb += checks.on_input(platform)(self.avail,
                                                      "image input: released an empty bank")
        return m

    def _planes(self, m, wp, wb, full, ids, tag_in):
        """A multi-channel image: plane `wc` is written, its pixel into lane `wc` of the
        word; the bank is full after the last plane's last pixel."""
        depth, n_ch = self.buf.depth, self.buf.channels
        wc = Signal(range(n_ch))
        take = Signal()
        m.d.comb += [take.eq(self.pixels.valid & self.pixels.ready),
                     self.wr.data.eq(self.pixels.payload.replicate(n_ch)),
                     self.wr.en.bit_select(wc, 1).eq(take)]
        with m.If(take):
            m.d.sync += wp.eq(wp + 1)
            with m.If((wp == 0) & (wc == 0)):
                for b in range(2):
                    with m.If(wb == b):
                        m.d.sync += ids[b].eq(tag_in)
            with m.If(wp == depth - 1):
                m.d.sync += [wp.eq(0), wc.eq(wc + 1)]
                with m.If(wc == n_ch - 1):
                    m.d.sync += [wc.eq(0), full.bit_select(wb, 1).eq(1), wb.eq(~wb)]
