"""Simulation harness around the chip: takes an image in a few wide beats and feeds its pixels
to the chip one per cycle, so a testbench touches the simulator a dozen times per image instead
of once per pixel. Simulation infrastructure, not part of the chip; its Verilog needs
`LOADER_SOURCE` beside the crossbar macro."""

from __future__ import annotations

from amaranth import (
    Cat,
    ClockDomain,
    ClockSignal,
    Instance,
    Module,
    Mux,
    ResetSignal,
    Signal,
    Value,
)
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .chip import CimChip, feature_buffer, gain_layout, has_features, program_layout, result_layout
from .chip_engine import EngineRule, engine_requests, label_bits
from .crossbar import VERILOG_DIR
from .params import CrossbarForm

LOADER_SOURCE = VERILOG_DIR / "cim_image_loader.v"


PIXELS_PER_BEAT = 64


def beat_layout(bits: int, label: int = 0) -> data.StructLayout:
    """One beat of an image: PIXELS_PER_BEAT pixels (the last beat padded), the id and, for
    a chip with an update engine, the label (`label` bits)."""
    return data.StructLayout({"pixels": data.ArrayLayout(bits, PIXELS_PER_BEAT),
                              "image_id": 32, **({"label": label} if label else {})})


def harness_result_layout(plan) -> data.StructLayout:
    """The harness's result: the chip's result and, gathered from the chip's `features`
    stream, the words of the image's last-layer input map (word 0 first), in one beat (none
    when the last layer reads the image)."""
    if not has_features(plan):      # no zero-width field: Verilog has no empty vector
        return data.StructLayout({"result": result_layout(plan)})
    buf = feature_buffer(plan)
    return data.StructLayout({"result": result_layout(plan),
                              "features": data.ArrayLayout(buf.word_bits, buf.depth)})


# Cycles the harness holds a gate-level chip in reset after power-up (its flip-flops have
# no initial values).
POR_CYCLES = 4


class SimHarness(wiring.Component):
    """The chip for simulation: a byte-wide image loader and registered host ports. The
    chip's debug taps are ports of the harness too (`tap__<i>__addr/data/en` in Verilog,
    i indexing `hdl.chip.tapped_buffers(plan)`). The chip's feature words leave with the
    image's result (`harness_result_layout`), so the testbench is woken once per result.

    With `netlist`, the chip is an instance of that Verilog module instead (the chip's
    mapped gate-level netlist, ports named as `CimChip`'s top-level Verilog names them; no
    taps, no feature stream: its results carry zero features): its flip-flops start unknown,
    so the harness resets it for POR_CYCLES cycles and holds every port of it at 0 meanwhile
    (no handshake happens before the reset is over).
    """

    def __init__(self, plan, form: CrossbarForm = CrossbarForm.VERILOG,
                 netlist: str | None = None, engine: EngineRule | None = None):
        self.netlist = netlist
        if engine is not None and netlist:
            raise ValueError("the harness of a netlist has no update engine")
        self.chip = CimChip(plan, form, debug_taps=netlist is None,
                            features=netlist is None and has_features(plan), engine=engine)
        plan = self.chip.plan
        img = plan.buffers["img"]
        self.n_pixels, self.pixel_bits = img.depth * img.channels, img.bits
        self.label_bits = label_bits(plan) if engine is not None else 0
        taps = {} if netlist else {"tap": self.chip.signature.members["tap"]}
        # The engine's requests (registered like the host's inputs) and its image count.
        updates = {} if engine is None else {
            "requests": Out(stream.Signature(engine_requests(plan))),
            "updates_done": Out(32)}
        super().__init__({
            "clk": In(1),
            **taps,
            **updates,
            "load": In(stream.Signature(beat_layout(img.bits, self.label_bits))),
            "result": Out(stream.Signature(harness_result_layout(plan))),
            "prog": In(stream.Signature(program_layout(plan))),
            "gain": In(stream.Signature(gain_layout(plan))),
            "busy": Out(1),
            "images_done": Out(32),
            "cycles_image": Out(32),
            "cycles_layer": Out(data.ArrayLayout(32, len(plan.layers))),
        })

    def elaborate(self, platform):
        m = Module()
        # Simulation speed: Verilator re-evaluates every piece of logic that depends on a
        # top-level input whenever the testbench touches the model (at least twice a clock).
        # So the harness has no reset input (registers start from their initial values, as
        # after a reset), the image goes through a loader written as one clocked Verilog
        # block, and the other inputs are registered before the chip sees them.
        m.domains.sync = ClockDomain("sync")
        m.d.comb += [ClockSignal("sync").eq(self.clk), ResetSignal("sync").eq(0)]
        chip = self.chip
        if self.netlist:
            # Only the chip's interface is used (its ports), never its logic.
            chip._MustUse__silence = True
            self._instance(m)
        else:
            m.submodules.chip = chip
        pix_tag = Signal(32 + self.label_bits)
        m.submodules.loader = Instance(
            "cim_image_loader", p_N=self.n_pixels, p_BITS=self.pixel_bits,
            p_PER_BEAT=PIXELS_PER_BEAT, p_ID_BITS=32 + self.label_bits,
            i_clk=ClockSignal("sync"), i_load_valid=self.load.valid,
            i_load_payload=self.load.payload, o_load_ready=self.load.ready,
            o_pix_valid=chip.pixels.valid, o_pix_data=chip.pixels.payload,
            o_pix_id=pix_tag, i_pix_ready=chip.pixels.ready)
        m.d.comb += chip.image_id.eq(pix_tag[:32])
        if self.label_bits:
            m.d.comb += chip.label.eq(pix_tag[32:])
            self._register(m, chip.requests, self.requests)
            m.d.comb += self.updates_done.eq(chip.updates_done)
        self._result(m, chip)
        self._register(m, self.prog, chip.prog)
        self._register(m, self.gain, chip.gain)
        if not self.netlist:
            for outer, inner in zip(self.tap, chip.tap, strict=True):
                wiring.connect(m, wiring.flipped(outer), inner)
        m.d.comb += [self.busy.eq(chip.busy), self.images_done.eq(chip.images_done),
                     self.cycles_image.eq(chip.cycles_image),
                     self.cycles_layer.eq(chip.cycles_layer)]
        return m

    def _result(self, m, chip):
        """The chip's result in a one-deep register, handed on once all of its image's
        feature words are in: they arrive before the result (the reader starts with the last
        layer), but the check keeps the pairing right whatever the order."""
        full = Signal()
        held = Signal.like(chip.result.payload)
        m.d.comb += [self.result.payload.result.eq(held), chip.result.ready.eq(~full)]
        with m.If(chip.result.valid & ~full):
            m.d.sync += [full.eq(1), held.eq(chip.result.payload)]
        if not self.chip.features_on:    # no feature stream: the result alone
            m.d.comb += self.result.valid.eq(full)
            with m.If(self.result.valid & self.result.ready):
                m.d.sync += full.eq(0)
            return
        depth = feature_buffer(chip.plan).depth
        # One register per word, not one wide register: Verilator copies a wide register's
        # next value in and out on every clock edge (docs/verification.md, "Regression speed").
        words = [Signal.like(chip.features.payload, name=f"feature_word{i}")
                 for i in range(depth)]
        count = Signal(range(depth + 1))
        m.d.comb += [self.result.valid.eq(full & (count == depth)),
                     self.result.payload.features.eq(Cat(*words)),
                     chip.features.ready.eq(count != depth)]
        with m.If(chip.features.valid & chip.features.ready):
            m.d.sync += count.eq(count + 1)
            with m.Switch(count):
                for i in range(depth):
                    with m.Case(i):
                        m.d.sync += words[i].eq(chip.features.payload)
        with m.If(self.result.valid & self.result.ready):
            m.d.sync += [full.eq(0), count.eq(0)]

    def _instance(self, m):
        """The netlist module in place of the chip, behind a power-on reset."""
        por = Signal(range(POR_CYCLES + 1), init=POR_CYCLES)
        with m.If(por != 0):
            m.d.sync += por.eq(por - 1)
        in_reset = Signal()
        m.d.comb += in_reset.eq(por != 0)
        ports = {}
        for path, member, value in self.chip.signature.flatten(self.chip):
            name = "__".join(str(part) for part in path)
            v = Value.cast(value)
            if member.flow == In:
                ports[f"i_{name}"] = Mux(in_reset, 0, v)
            else:
                raw = Signal(len(v), name=f"chip_{name}")
                ports[f"o_{name}"] = raw
                m.d.comb += v.eq(Mux(in_reset, 0, raw))
        m.submodules.chip = Instance(self.netlist, i_clk=ClockSignal("sync"), i_rst=in_reset,
                                     **ports)

    @staticmethod
    def _register(m, src, dst):
        """A one-deep stream register: `dst` sees only registered valid and payload, and
        `src.ready` is a register too, so no logic behind it reads `dst.ready` directly."""
        full = Signal()
        payload = Signal.like(src.payload)
        m.d.comb += [dst.valid.eq(full), dst.payload.eq(payload), src.ready.eq(~full)]
        with m.If(src.valid & ~full):
            m.d.sync += [full.eq(1), payload.eq(src.payload)]
        with m.If(dst.valid & dst.ready):
            m.d.sync += full.eq(0)
