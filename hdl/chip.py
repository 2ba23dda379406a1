"""The whole chip: eight PEs, their feeders, the group mergers, the pooling writers, the
feature-map buffers, the image input and the layer sequencer, with a host interface.

    pixels (stream, raster order, plane by plane) + image_id ──> image memory (2 banks)
    sequencer: for each layer, start the feeders and mergers that the plan gives it, wait
               until all are done, then the next layer; the image bank is freed after the
               first layer, so the next image loads meanwhile
    result (stream): the logits and the predicted class of each image, in order
    with an update engine (hdl/chip_engine.py): a label with each image in; the engine's
    pulse requests on the FC layer out (docs/chip.md "Update engine")

Everything layer- and network-specific comes from hdl/chip_plan.py, which derives it from the
mapping (cim_spec.mapping) and the programmed chip (cim_spec.program.Chip); the caller
builds the plan (`hdl.chip_plan.plan_chip`) and hands it in.
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from . import noise
from .chip_engine import ChipEngine, EngineRule, engine_requests, label_bits
from .chip_plan import ChipPlan
from .features import FeatureReader
from .feeder import Feeder
from .image_in import ImageInput
from .merger import Merger
from .params import CrossbarForm, check_form
from .pe import PE
from .pool import PoolWriter, memory_depth
from .stream_fork import StreamFork

# Feature maps of at most this many words are LUT RAM on an FPGA (the `ram_style` attribute;
# simulators and ASIC flows ignore it).
LUT_RAM_WORDS = 128


def result_layout(plan: ChipPlan) -> data.StructLayout:
    """One result: the last layer's sums (the logits) and the index of the first maximum."""
    n = plan.layers[-1].n_out
    return data.StructLayout({
        "logits": data.ArrayLayout(signed(plan.acc_bits), n),
        "label": unsigned(max(1, (n - 1).bit_length())),
    })


def program_layout(plan: ChipPlan) -> data.StructLayout:
    """One programming write: a cell (PE, row, column) and its conductance code."""
    p = plan.pes[0].params
    return data.StructLayout({"pe": range(max(len(plan.pes), 2)), "row": p.row_bits,
                              "col": p.col_bits, "code": p.code_bits})


def gain_layout(plan: ChipPlan) -> data.StructLayout:
    """One gain write: a weight layer's index and its new ADC gain (docs/chip.md)."""
    return data.StructLayout({"layer": range(max(len(plan.layers), 2)),
                              "gain": plan.pes[0].params.gain_bits})


def feature_buffer(plan: ChipPlan):
    """The map the `features` stream carries: the last weight layer's input (mCNN: S4)."""
    return plan.buffers[plan.layers[-1].src]


def has_features(plan: ChipPlan) -> bool:
    """Whether the chip has a `features` stream to offer: its last weight layer reads a
    feature map (a network of one dense layer reads the image itself)."""
    return feature_buffer(plan).name != "img"


def tapped_buffers(plan: ChipPlan) -> list[str]:
    """The feature maps the debug taps show, in tap order (`CimChip.tap[i]`)."""
    return [name for name in plan.buffers if name != "img"]


def tap_signature(plan: ChipPlan) -> memory.WritePort.Signature:
    """One debug tap: a feature-map memory's write port (address, word, enable), as wide as
    the largest tapped map; narrower maps' words and addresses are zero-extended."""
    bufs = [plan.buffers[name] for name in tapped_buffers(plan)]
    return memory.WritePort.Signature(
        addr_width=max(ceil_log2(max((b.depth for b in bufs), default=1)), 1),
        shape=max((b.word_bits for b in bufs), default=1))


def argmax_first(values: list):
    """The index of the first maximum of `values`, as a combinational expression.

    A tree of compare-and-select, not a chain: ceil(log2 n) comparisons deep (the chain of
    n - 1 was the chip's critical path on standard cells, 14.3 ns; docs/asic.md). The left
    operand always holds the lower indices and the right one wins only when strictly
    greater, so the first of equal maxima wins."""
    cands = [(v, i) for i, v in enumerate(values)]
    while len(cands) > 1:
        pairs = [(cands[j], cands[j + 1]) for j in range(0, len(cands) - 1, 2)]
        nxt = []
        for (av, ai), (bv, bi) in pairs:
            better = bv > av
            nxt.append((Mux(better, bv, av), Mux(better, bi, ai)))
        cands = nxt + cands[2 * len(pairs):]
    return cands[0][1]


class CimChip(wiring.Component):
    """The chip. With `debug_taps`, every feature-map write is also visible at the ports:
    `tap[i]` repeats the write port of the memory of `tapped_buffers(plan)[i]`, so a
    testbench can find the first layer that differs. With `features`, the `features` stream
    carries the last weight layer's input map of every image (`feature_buffer(plan)`, word by
    word, before the image's last layer finishes): what a host doing hybrid training needs
    besides the logits. With `engine` (an EngineRule), the chip trains itself: each image
    comes with a `label` (sampled with its first pixel, as `image_id`), the update engine
    takes the image's logits and FC inputs, and its pulse `requests` leave the chip;
    `updates_done` counts the images whose requests are all out."""

    def __init__(self, plan: ChipPlan, form: CrossbarForm = CrossbarForm.VERILOG,
                 debug_taps: bool = False, features: bool = False,
                 engine: EngineRule | None = None):
        if not isinstance(plan, ChipPlan):
            raise TypeError(f"CimChip needs a ChipPlan (hdl.chip_plan.plan_chip), got "
                            f"{type(plan).__name__}")
        self.plan = plan
        self.form, self.debug_taps = check_form(form), debug_taps
        self.features_on = bool(features)
        if self.features_on and feature_buffer(plan).name == "img":
            raise ValueError("the features stream needs a last layer that reads a feature "
                             "map, not the image")
        self.engine = engine
        if engine is not None:
            if not isinstance(engine, EngineRule):
                raise TypeError(f"CimChip engine must be an EngineRule or None, got "
                                f"{type(engine).__name__}")
            if feature_buffer(plan).name == "img":
                raise ValueError("the update engine needs a last layer that reads a feature "
                                 "map, not the image")
            engine.check(plan.acc_bits, feature_buffer(plan).bits)
        n_layers = len(self.plan.layers)
        optional = {}
        if debug_taps:
            # The write port's signature flipped: the chip drives every member.
            optional["tap"] = In(tap_signature(plan)).array(len(tapped_buffers(plan)))
        if self.features_on:
            optional["features"] = Out(stream.Signature(feature_buffer(plan).word_bits))
        if engine is not None:
            optional["label"] = In(label_bits(plan))
            optional["requests"] = Out(stream.Signature(engine_requests(plan)))
            optional["updates_done"] = Out(32)
        super().__init__({
            **optional,
            "pixels": In(stream.Signature(self.plan.buffers["img"].bits)),
            "image_id": In(32),
            "result": Out(stream.Signature(result_layout(self.plan))),
            "prog": In(stream.Signature(program_layout(self.plan))),
            "gain": In(stream.Signature(gain_layout(self.plan))),
            "busy": Out(1),
            "images_done": Out(32),
            "cycles_image": Out(32),
            "cycles_layer": Out(data.ArrayLayout(32, n_layers)),
        })

    def elaborate(self, platform):
        m = Module()
        plan = self.plan
        pes = [PE(pp.params, pp.init, self.form) for pp in plan.pes]
        feeders = [Feeder(plan, i) for i in range(len(pes))]
        for i, (pe, fd) in enumerate(zip(pes, feeders, strict=True)):
            m.submodules[f"pe{i}"] = pe
            m.submodules[f"feeder{i}"] = fd
            wiring.connect(m, fd.req, pe.i)
        mergers = [Merger(plan, g) for g in range(len(plan.groups))]
        for g, mg in enumerate(mergers):
            m.submodules[f"merger{g}"] = mg
            for k, pe in enumerate(plan.groups[g].pes):
                wiring.connect(m, pes[pe].o, mg.ps[k])

        # Feature-map memories and their ports.
        img_buf = plan.buffers["img"]
        m.submodules.img_in = img_in = ImageInput(
            img_buf, label_bits(plan) if self.engine is not None else 0)
        m.submodules.img_mem = img_mem = memory.Memory(shape=img_buf.word_bits,
                                                       depth=2 * img_buf.depth, init=[])
        # A multi-channel image is written a channel (lane) at a time (hdl/image_in.py).
        lanes = {"granularity": img_buf.bits} if img_buf.channels > 1 else {}
        wiring.connect(m, img_in.wr, img_mem.write_port(**lanes))
        m.d.comb += [img_in.pixels.payload.eq(self.pixels.payload),
                     img_in.pixels.valid.eq(self.pixels.valid),
                     self.pixels.ready.eq(img_in.pixels.ready),
                     img_in.image_id.eq(self.image_id)]
        pools = {}
        reader = engine = None
        if self.engine is not None:
            m.submodules.engine = engine = ChipEngine(plan, self.engine)
            m.d.comb += img_in.label.eq(self.label)
            wiring.connect(m, engine.requests, wiring.flipped(self.requests))
            m.d.comb += self.updates_done.eq(engine.updates_done)
        if self.features_on or engine is not None:
            m.submodules.features = reader = FeatureReader(feature_buffer(plan))
            if self.features_on and engine is not None:
                m.submodules.features_fork = fork = StreamFork(feature_buffer(plan).word_bits)
                wiring.connect(m, reader.o, fork.i)
                wiring.connect(m, fork.o[0], wiring.flipped(self.features))
                wiring.connect(m, fork.o[1], engine.features)
            elif engine is not None:
                wiring.connect(m, reader.o, engine.features)
            else:
                wiring.connect(m, reader.o, wiring.flipped(self.features))
        taps = tapped_buffers(plan)
        for name, buf in plan.buffers.items():
            if name == "img":
                mem = img_mem
            else:
                # Pooled maps are small (S2: 81 words); on an FPGA they go to LUT RAM, since
                # every read port is a copy of the memory and block RAM is what the emulated
                # crossbars use up (replication 3: S2 has seven readers, 7+ DP16KD).
                depth = memory_depth(buf)
                mem = memory.Memory(shape=buf.word_bits, depth=depth, init=[],
                                    attrs={"ram_style": "distributed"}
                                    if depth <= LUT_RAM_WORDS else None)
                m.submodules[f"{name}_mem"] = mem
                writers = [mg for mg in mergers if name in mg.dsts]
                pw = PoolWriter(buf, len(writers))
                m.submodules[f"{name}_pool"] = pools[name] = pw
                for i, mg in enumerate(writers):
                    self._offer(m, mg.wr[mg.dsts.index(name)], pw.i[i])
                wr = mem.write_port()
                wiring.connect(m, pw.rd, mem.read_port())
                wiring.connect(m, pw.wr, wr)
                if reader is not None and name == reader.buf.name:
                    wiring.connect(m, reader.rd, mem.read_port())
                if self.debug_taps:
                    tap = self.tap[taps.index(name)]
                    m.d.comb += [tap.addr.eq(wr.addr), tap.data.eq(wr.data), tap.en.eq(wr.en)]
            # The residual adds' reads of their other operand.
            for mg in mergers:
                if name in mg.others:
                    port = mg.oth[mg.others.index(name)]
                    rp = mem.read_port()
                    m.d.comb += [rp.addr.eq(port.addr), port.data.eq(rp.data)]
            for fd in feeders:
                if name in fd.sources:
                    port = fd.src[fd.sources.index(name)]
                    rp = mem.read_port()
                    addr = port.addr
                    if name == "img":
                        addr = img_in.cur_bank * buf.depth + addr
                    m.d.comb += [rp.addr.eq(addr), rp.en.eq(port.en), port.data.eq(rp.data)]

        # The logits leave with their argmax (the first of equal maxima, as the golden model).
        logits_mg = next(mg for mg in mergers if mg.logits_layer is not None)
        lg = logits_mg.logits
        best_i = argmax_first([lg.payload[i] for i in range(len(lg.payload))])
        m.d.comb += self.result.payload.label.eq(best_i)
        for i in range(len(lg.payload)):
            m.d.comb += self.result.payload.logits[i].eq(lg.payload[i])
        if engine is None:
            m.d.comb += [self.result.valid.eq(lg.valid), lg.ready.eq(self.result.ready)]
        else:
            # The logits go to the host and to the engine; the merger holds them (and so the
            # sequencer the image's label) until both have taken them. The fork carries only
            # the handshake: both take the merger's payload.
            m.submodules.logits_fork = fork = StreamFork(1)
            m.d.comb += [fork.i.valid.eq(lg.valid), lg.ready.eq(fork.i.ready),
                         self.result.valid.eq(fork.o[0].valid),
                         fork.o[0].ready.eq(self.result.ready),
                         engine.logits.valid.eq(fork.o[1].valid),
                         fork.o[1].ready.eq(engine.logits.ready)]
            for i in range(len(lg.payload)):
                m.d.comb += engine.logits.payload[i].eq(lg.payload[i])

        self._sequencer(m, plan, img_in, feeders, mergers, pools, pes, reader, engine)
        self._programming(m, pes)
        self._gains(m, feeders)
        return m

    def _sequencer(self, m, plan, img_in, feeders, mergers, pools, pes, reader, engine):
        # `layer` counts the schedule's steps (plan.schedule); counters and gain registers
        # are by weight-layer index.
        layers = plan.schedule
        layer = Signal(range(max(len(layers), 2)))
        start = Signal()
        image_key = Signal(32)
        cycles, image_cycles = Signal(32), Signal(32)
        units_done = Signal()
        if engine is not None:
            # The image's label, for its logits (its bank is freed, and the next image's
            # label loaded, long before they come).
            image_label = Signal(label_bits(plan))
            m.d.comb += engine.label.eq(image_label)
        m.d.comb += units_done.eq(
            all_of([fd.done for fd in feeders] + [mg.done for mg in mergers]
                   + [~pw.busy for pw in pools.values()] + [~pe.busy for pe in pes]
                   + ([reader.done] if reader is not None else [])))
        for unit in feeders + mergers:
            m.d.comb += [unit.start.eq(start), unit.layer.eq(layer)]
        for fd in feeders:
            m.d.comb += fd.image_key.eq(image_key)
        m.d.sync += [cycles.eq(cycles + 1), image_cycles.eq(image_cycles + 1)]

        with m.FSM() as fsm:
            with m.State("WAIT"):
                with m.If(img_in.avail):
                    if plan.pes[0].params.read_noise:
                        m.d.sync += image_key.eq(noise.mix32(img_in.cur_id))
                    if engine is not None:
                        m.d.sync += image_label.eq(img_in.cur_label)
                    m.d.sync += [layer.eq(0), image_cycles.eq(0)]
                    m.next = "START"
            with m.State("START"):
                m.d.comb += start.eq(1)
                if reader is not None:
                    m.d.comb += reader.start.eq(layer == len(layers) - 1)
                for lp in layers:
                    if lp.dst is not None:
                        with m.If(layer == lp.step):
                            m.d.comb += pools[lp.dst].clear.eq(1)
                m.d.sync += cycles.eq(0)
                m.next = "RUN"
            with m.State("RUN"):
                with m.If(units_done):
                    with m.Switch(layer):
                        for lp in layers:
                            with m.Case(lp.step):
                                m.d.sync += self.cycles_layer[lp.index].eq(cycles + 1)
                                if lp.src == "img":
                                    m.d.comb += img_in.release.eq(1)
                    with m.If(layer == len(layers) - 1):
                        m.d.sync += [self.images_done.eq(self.images_done + 1),
                                     self.cycles_image.eq(image_cycles + 1)]
                        m.next = "WAIT"
                    with m.Else():
                        m.d.sync += layer.eq(layer + 1)
                        m.next = "START"
            m.d.comb += self.busy.eq(~fsm.ongoing("WAIT"))

    @staticmethod
    def _offer(m, src, dst):
        """A merger's word stream to a pooling writer's input: the bits the buffer has (the
        merger's streams are as wide as its widest buffer)."""
        m.d.comb += [dst.valid.eq(src.valid), src.ready.eq(dst.ready),
                     dst.payload.addr.eq(src.payload.addr),
                     dst.payload.n.eq(src.payload.n),
                     dst.payload.data.eq(src.payload.data)]

    def _programming(self, m, pes):
        """Cell writes go to the addressed PE, only while no image is being processed."""
        pay = self.prog.payload
        for i, pe in enumerate(pes):
            with m.If(pay.pe == i):
                m.d.comb += [pe.prog.payload.row.eq(pay.row), pe.prog.payload.col.eq(pay.col),
                             pe.prog.payload.code.eq(pay.code),
                             pe.prog.valid.eq(self.prog.valid & ~self.busy),
                             self.prog.ready.eq(pe.prog.ready & ~self.busy)]


    def _gains(self, m, feeders):
        """The ADC gain registers, one per weight layer, reset to the programmed gains. The
        host writes them through `gain` while no image is being processed (drift
        compensation, golden/compensate.py); a write taken between images applies to every
        read of the next image."""
        plan = self.plan
        regs = [Signal(plan.pes[0].params.gain_bits, init=lp.gain, name=f"gain_{lp.name}")
                for lp in plan.layers]
        m.d.comb += self.gain.ready.eq(~self.busy)
        with m.If(self.gain.valid & ~self.busy):
            with m.Switch(self.gain.payload.layer):
                for lp, reg in zip(plan.layers, regs, strict=True):
                    with m.Case(lp.index):
                        m.d.sync += reg.eq(self.gain.payload.gain)
        for fd in feeders:
            for lp, reg in zip(plan.layers, regs, strict=True):
                m.d.comb += fd.gains[lp.index].eq(reg)


def all_of(signals):
    out = 1
    for s in signals:
        out = out & s
    return out
