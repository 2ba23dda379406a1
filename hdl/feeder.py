"""A PE's feeder: walks its group's output positions of a layer, fetches each position's input
window from the source feature map, and sends the PE one read request per chunk it holds.

The walk and the chunk choice follow the read program of hdl/chip_plan.py (the mapping's
rule), so the order of reads, and the first/last flags that delimit each partial sum, are
fixed at elaboration.
"""

from __future__ import annotations

from amaranth import Const, Module, Mux, Signal, signed
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from . import checks, layouts, noise
from .chip_plan import ChipPlan


class Feeder(wiring.Component):
    """The feeder of PE `pe` of the plan.

    `start` runs layer `layer` (if this PE reads for it; `done` is high while idle). `src[s]`
    reads the feature map `sources[s]` through a read port of its memory: all of them have
    the address and word width of the largest of these maps (the chip connects the bits each
    map has), and the word arrives the cycle after its address. `req` carries the read
    requests, each with its read-noise nonce keyed by `image_key` (mix32 of the image id) and
    its layer's ADC gain from `gains` (the chip's host-writable gain registers, by
    weight-layer index).
    """

    def __init__(self, plan: ChipPlan, pe: int):
        self.plan, self.pe = plan, pe
        self.pp = plan.pes[pe]
        self.layers = [lp for lp in plan.layers if lp.name in self.pp.programs]
        self.sources = sorted({lp.src for lp in self.layers})
        self.n_words = max((len(lp.words) for lp in self.layers), default=1)
        self.word_bits = max((plan.buffers[lp.src].word_bits for lp in self.layers), default=1)
        depth = max((plan.buffers[name].depth for name in self.sources), default=1)
        super().__init__({
            "start": In(1),
            "layer": In(range(max(len(plan.layers), 2))),
            "image_key": In(32),
            "gains": In(self.pp.params.gain_bits).array(len(plan.layers)),
            "done": Out(1),
            "req": Out(stream.Signature(layouts.read_request(self.pp.params))),
            # The memories' read port signature, flipped: the feeder drives the address.
            "src": In(memory.ReadPort.Signature(addr_width=max(ceil_log2(depth), 1),
                                                shape=self.word_bits)).array(len(self.sources)),
        })

    def _group(self, layer):
        return next(g for g in self.plan.groups if self.pe in g.pes and layer in g.ranges)

    def elaborate(self, platform):
        m = Module()
        plan, pp, p = self.plan, self.pp, self.pp.params
        self.req_reg = Signal(layouts.read_request(p))
        if not self.layers:
            m.d.comb += self.done.eq(1)
            return m

        max_depth = max(plan.buffers[lp.src].depth for lp in self.layers)
        # The window's words as registers of their own, not one wide register: Verilator
        # copies a wide register's next value in and out on every clock edge
        # (docs/verification.md, "Regression speed").
        window = [Signal(self.word_bits, name=f"window{w}") for w in range(self.n_words)]
        # The layer being walked; at least one bit (a one-layer network would make it zero
        # bits wide, which Amaranth writes as [-1:0] and Verilator refuses).
        active = Signal(range(max(len(plan.layers), 2)))
        most = max(lp.out_hw[0] * lp.out_hw[1] for lp in self.layers) + 1
        wide = max(max(lp.out_hw[1], plan.buffers[lp.src].width) for lp in self.layers) + 1
        j = Signal(range(most))                    # position index within the group
        pos = Signal.like(j)                       # absolute output position p
        x = Signal(range(max(max(lp.out_hw[1] for lp in self.layers), 2)))
        # The window's corner in the source map, (oy, ox) = (y*s - p, x*s - p), and its
        # word address oy * W + ox: negative in the padding (docs/datapath.md 4a).
        most_in = max(max(plan.buffers[lp.src].height, plan.buffers[lp.src].width)
                      + lp.stride for lp in self.layers)
        most_pad = max(lp.pad for lp in self.layers)
        oy, ox = (Signal(range(-max(most_pad, 1), most_in + 1)) for _ in range(2))
        base = Signal(signed(max(ceil_log2(max_depth + most_in + 1), 1) + 2))
        dy, dx = (Signal(range(max(len(lp.words) for lp in self.layers) + 1)) for _ in "yx")
        inside, inside_d = Signal(), Signal()      # the addressed word is in the map
        padded = Signal()
        src_h, src_w = Signal(range(most_in + 1)), Signal(range(most_in + 1))
        stride = Signal(range(max(lp.stride for lp in self.layers) + 1))
        row_step = Signal(signed(base.shape().width))
        pad_now = Signal(range(max(most_pad, 1) + 1))
        r = Signal(range(max(max(self._group(lp.name).period[lp.name]
                                 for lp in self.layers), 2)))
        step = Signal(range(max(len(prog) for lp in self.layers
                                for prog in pp.programs[lp.name]) + 1))
        fetch = Signal(range(self.n_words + 2))    # next word to address
        got = Signal(range(self.n_words + 2))      # next word to capture

        # Per-layer constants and the current read of the program.
        count, out_w, in_w = Signal(range(most)), Signal(range(wide)), Signal(range(wide))
        n_reads = Signal.like(step)
        period = Signal.like(r)
        entry = Signal(range(max(len(pp.entries), 2)))
        first, last = Signal(), Signal()
        n_words = Signal(range(self.n_words + 1))
        word_off = Signal(range(max_depth + 1))
        with m.Switch(active):
            for lp in self.layers:
                with m.Case(lp.step):
                    g = self._group(lp.name)
                    start, stop = g.ranges[lp.name]
                    prog = pp.programs[lp.name]
                    sb = plan.buffers[lp.src]
                    m.d.comb += [count.eq(stop - start), period.eq(g.period[lp.name]),
                                 out_w.eq(lp.out_hw[1]),
                                 in_w.eq(sb.width),
                                 n_words.eq(len(lp.words)), padded.eq(lp.pad > 0),
                                 src_h.eq(sb.height), src_w.eq(sb.width),
                                 stride.eq(lp.stride), pad_now.eq(lp.pad),
                                 row_step.eq(lp.stride * sb.width
                                             - (lp.out_hw[1] - 1) * lp.stride)]
                    with m.Switch(fetch):
                        for w, off in enumerate(lp.words):
                            with m.Case(w):
                                m.d.comb += word_off.eq(off)
                                if lp.pad:
                                    m.d.comb += [dy.eq(lp.taps[w][0]), dx.eq(lp.taps[w][1])]
                    with m.Switch(r):
                        for res, reads in enumerate(prog):
                            with m.Case(res):
                                m.d.comb += n_reads.eq(len(reads))
                                with m.Switch(step):
                                    for s, rd in enumerate(reads):
                                        with m.Case(s):
                                            m.d.comb += [entry.eq(rd.entry), first.eq(rd.first),
                                                         last.eq(rd.last)]

        # The source memories: address the window's words, capture them a cycle later.
        for port in self.src:
            m.d.comb += port.addr.eq(base + word_off)
        iy, ix = oy + dy, ox + dx
        if most_pad:
            m.d.comb += inside.eq(~padded | ((iy >= 0) & (iy < src_h) & (ix >= 0)
                                             & (ix < src_w)))
        else:
            m.d.comb += inside.eq(1)
        data_in = Signal(self.word_bits)
        with m.Switch(active):
            for lp in self.layers:
                with m.Case(lp.step):
                    m.d.comb += data_in.eq(self.src[self.sources.index(lp.src)].data)

        m.d.comb += self.req.payload.eq(self.req_reg)

        def advance():
            """Next position of the group: x wraps at the output width."""
            m.d.sync += [j.eq(j + 1), pos.eq(pos + 1), r.eq(r + 1), step.eq(0)]
            with m.If(r + 1 == period):
                m.d.sync += r.eq(0)
            with m.If(x + 1 == out_w):
                m.d.sync += [x.eq(0), base.eq(base + row_step), ox.eq(-pad_now),
                             oy.eq(oy + stride)]
            with m.Else():
                m.d.sync += [x.eq(x + 1), base.eq(base + stride), ox.eq(ox + stride)]

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.done.eq(1)
                with m.If(self.start):
                    with m.Switch(self.layer):
                        for lp in self.layers:
                            with m.Case(lp.step):
                                start = self._group(lp.name).ranges[lp.name][0]
                                y0, x0 = divmod(start, lp.out_hw[1])
                                oy0 = y0 * lp.stride - lp.pad
                                ox0 = x0 * lp.stride - lp.pad
                                b0 = oy0 * plan.buffers[lp.src].width + ox0
                                m.d.sync += [active.eq(lp.step), j.eq(0), pos.eq(start),
                                             x.eq(x0), base.eq(b0), oy.eq(oy0), ox.eq(ox0),
                                             r.eq(0), step.eq(0)]
                                m.next = "POSITION"
            with m.State("POSITION"):
                with m.If(j == count):
                    m.next = "IDLE"
                with m.Elif(n_reads == 0):
                    advance()
                with m.Else():
                    m.d.sync += [fetch.eq(0), got.eq(0)]
                    m.next = "FETCH"
            with m.State("FETCH"):
                # Word `fetch` is addressed this cycle; word `got` arrives from the last one.
                with m.If(fetch < n_words):
                    m.d.sync += [fetch.eq(fetch + 1), inside_d.eq(inside)]
                with m.If(fetch != 0):
                    # A word in the padding reads code 0.
                    m.d.sync += got.eq(got + 1)
                    with m.Switch(got):
                        for w, word in enumerate(window):
                            with m.Case(w):
                                m.d.sync += word.eq(Mux(inside_d, data_in, 0))
                    with m.If(got + 1 == n_words):
                        m.next = "LOAD"
            with m.State("LOAD"):
                # Assembled straight into a register: fields that are constant for this PE
                # then never sit in a combinational process (which Verilog would not run).
                self._request(m, self.req_reg, entry, first, last, window, pos)
                m.next = "ISSUE"
            with m.State("ISSUE"):
                m.d.comb += self.req.valid.eq(1)
                with m.If(self.req.ready):
                    m.d.sync += step.eq(step + 1)
                    with m.If(step + 1 == n_reads):
                        advance()
                        m.next = "POSITION"
                    with m.Else():
                        m.next = "LOAD"
        if checks.enabled(platform):
            checks.stream_contract(m, self.req, name="feeder.req")
        return m

    def _request(self, m, req, entry, first, last, window, pos):
        plan, pp, p = self.plan, self.pp, self.pp.params
        m.d.sync += [req.first.eq(first), req.last.eq(last)]
        # The nonce key's fields, as wide as this plan needs: the key is then the same 32-bit
        # value the golden model computes, whatever the chunk and layer counts. (At least one
        # bit: Amaranth writes a zero-width wire as [-1:0], which Verilator refuses.)
        chunk = Signal(range(max(max((en.chunk for en in pp.entries), default=0) + 1, 2)))
        layer_index = Signal(range(max(len(plan.layers), 2)))
        with m.Switch(entry):
            for e, en in enumerate(pp.entries):
                lp = plan.layer(en.layer)
                bits = plan.buffers[lp.src].bits
                with m.Case(e):
                    m.d.sync += [req.row0.eq(en.row0), req.n_lines.eq(2 * en.n_out),
                                 req.gain.eq(self.gains[lp.index])]
                    m.d.comb += [chunk.eq(en.chunk), layer_index.eq(lp.index)]
                    for i in range(p.cols):
                        if i < len(en.gather):
                            w, ch = en.gather[i]
                            m.d.sync += req.x[i].eq(window[w][ch * bits:(ch + 1) * bits])
                        else:
                            m.d.sync += req.x[i].eq(0)
        if p.read_noise:
            key = (self.image_key ^ (layer_index << 28) ^ (pos << 8) ^ chunk)[:32]
            m.d.sync += req.nonce.eq(noise.mix32(key))
        else:
            m.d.sync += req.nonce.eq(Const(0, 32))
