"""Simulation harness around the chip: takes a whole image in one stream transfer and feeds
its pixels to the chip one per cycle, so a testbench touches the simulator once per image
instead of once per pixel. Simulation infrastructure, not part of the chip."""

from __future__ import annotations

from amaranth import Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .chip import CimChip, program_layout, result_layout


def image_layout(n_pixels: int, bits: int) -> data.StructLayout:
    return data.StructLayout({"pixels": data.ArrayLayout(bits, n_pixels), "image_id": 32})


class SimHarness(wiring.Component):
    def __init__(self, chip, form: str = "verilog"):
        self.chip = CimChip(chip, form, debug_taps=True)
        plan = self.chip.plan
        img = plan.buffers["img"]
        self.n_pixels, self.pixel_bits = img.depth * img.channels, img.bits
        self.taps = [n for n in self.chip.signature.members if n.startswith("tap_")]
        super().__init__({
            **{n: Out(self.chip.signature.members[n].shape) for n in self.taps},
            "load": In(stream.Signature(image_layout(self.n_pixels, img.bits))),
            "result": Out(stream.Signature(result_layout(plan))),
            "prog": In(stream.Signature(program_layout(plan))),
            "busy": Out(1),
            "images_done": Out(32),
            "cycles_image": Out(32),
            "cycles_layer": Out(data.ArrayLayout(32, len(plan.layers))),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.chip = chip = self.chip
        held = Signal(image_layout(self.n_pixels, self.pixel_bits))
        holding = Signal()
        index = Signal(range(self.n_pixels))
        m.d.comb += [
            self.load.ready.eq(~holding),
            chip.pixels.valid.eq(holding),
            chip.pixels.payload.eq(held.pixels[index]),
            chip.image_id.eq(held.image_id),
        ]
        with m.If(self.load.valid & self.load.ready):
            m.d.sync += [held.eq(self.load.payload), holding.eq(1), index.eq(0)]
        with m.If(chip.pixels.valid & chip.pixels.ready):
            m.d.sync += index.eq(index + 1)
            with m.If(index == self.n_pixels - 1):
                m.d.sync += holding.eq(0)
        wiring.connect(m, chip.result, wiring.flipped(self.result))
        wiring.connect(m, wiring.flipped(self.prog), chip.prog)
        for n in self.taps:
            m.d.comb += getattr(self, n).eq(getattr(chip, n))
        m.d.comb += [self.busy.eq(chip.busy), self.images_done.eq(chip.images_done),
                     self.cycles_image.eq(chip.cycles_image),
                     self.cycles_layer.eq(chip.cycles_layer)]
        return m
