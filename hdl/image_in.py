"""The host's image input: a pixel stream into a double-buffered image memory, so the next
image loads while the chip still reads the current one."""

from __future__ import annotations

from amaranth import Module, Signal
from amaranth.hdl import Assert
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from . import checks
from .chip_plan import Buffer


class ImageInput(wiring.Component):
    """Pixels in raster order fill bank `wb`; the id is sampled with an image's first pixel.

    The consumer sees `avail`, the image id `cur_id` and the bank `cur_bank` of the oldest
    complete image, and frees that bank with a `release` pulse. `wr` drives the write port of
    the image memory (two banks of `buf.depth` pixels, bank b at b * depth).
    """

    def __init__(self, buf: Buffer):
        self.buf = buf
        super().__init__({
            "pixels": In(stream.Signature(buf.bits)),
            "image_id": In(32),
            "avail": Out(1),
            "cur_bank": Out(1),
            "cur_id": Out(32),
            "release": In(1),
            "wr": In(memory.WritePort.Signature(addr_width=ceil_log2(2 * buf.depth),
                                                shape=buf.bits)),
        })

    def elaborate(self, platform):
        m = Module()
        depth = self.buf.depth
        full = Signal(2)
        ids = [Signal(32, name=f"id_{b}") for b in range(2)]
        wb, rb = Signal(), Signal()
        wp = Signal(range(depth))

        m.d.comb += [
            self.pixels.ready.eq(~full.bit_select(wb, 1)),
            self.wr.addr.eq(wb * depth + wp),
            self.wr.data.eq(self.pixels.payload),
            self.wr.en.eq(self.pixels.valid & self.pixels.ready),
            self.avail.eq(full.bit_select(rb, 1)),
            self.cur_bank.eq(rb),
            self.cur_id.eq(ids[1]),
        ]
        with m.If(rb == 0):
            m.d.comb += self.cur_id.eq(ids[0])

        with m.If(self.wr.en):
            m.d.sync += wp.eq(wp + 1)
            with m.If(wp == 0):
                for b in range(2):
                    with m.If(wb == b):
                        m.d.sync += ids[b].eq(self.image_id)
            with m.If(wp == depth - 1):
                m.d.sync += [wp.eq(0), full.bit_select(wb, 1).eq(1), wb.eq(~wb)]
        with m.If(self.release):
            m.d.sync += [full.bit_select(rb, 1).eq(0), rb.eq(~rb)]
        if checks.enabled(platform):
            m.d.comb += Assert(wp < depth, "image input: pixel address out of range")
            with m.If(self.release):
                m.d.comb += checks.on_input(platform)(self.avail,
                                                      "image input: released an empty bank")
        return m
