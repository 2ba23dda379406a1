"""A group's merger: adds the partial sums its PEs send for each output position, then
requantizes them (ReLU included) into a word of activations for the pooling writer, or, for
the logits layer, hands the sums on.

Positions come in the group's order, and for each one the contributing PEs are fixed by the
plan (hdl/chip_plan.py), so the merger simply takes one partial sum from each contributor.
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from . import checks, layouts
from .chip_plan import ChipPlan
from .pool import pool_write, read_port


class Merger(wiring.Component):
    """The merger of group `group` of the plan.

    `ps[k]` takes the partial sums of the group's k-th PE (`plan.groups[group].pes[k]`).
    `wr[d]` offers the requantized words of the layers that write buffer `dsts[d]` to its
    pooling writer; all of them have the layout of the widest of these buffers (the chip
    connects the bits each buffer has). `logits` hands on the last layer's sums, if this
    group computes it. `start` runs the layer of schedule step `layer` (if this group has a
    share of it); `done` is high while idle.

    A layer with a bias starts each position's sum from it. A layer with a residual add fused
    in reads the add's other map through `oth[i]` (a read port of buffer `others[i]`, at the
    output position's address), rescales it if it is an activation map, adds it to the
    symmetric-clamped output and clamps the sum to the activation range (docs/datapath.md
    4a).
    """

    def __init__(self, plan: ChipPlan, group: int):
        self.plan, self.gp = plan, plan.groups[group]
        self.layers = [lp for lp in plan.layers if lp.name in self.gp.ranges]
        self.dsts = sorted({lp.dst for lp in self.layers if lp.dst})
        self.others = sorted({lp.other for lp in self.layers if lp.other})
        p = plan.pes[self.gp.pes[0]].params
        self.p = p
        self.logits_layer = next((lp for lp in self.layers if lp.dst is None), None)
        dst_bufs = [plan.buffers[d] for d in self.dsts]
        self.wr_layout = pool_write(max((b.depth for b in dst_bufs), default=1),
                                    max((b.word_bits for b in dst_bufs), default=1),
                                    max((b.pool ** 2 for b in dst_bufs), default=1))
        oth = [plan.buffers[o] for o in self.others]
        self.oth_sig = read_port(max(oth, key=lambda b: (b.depth, b.word_bits))) if oth else None
        if oth:
            # One port shape for all: the widest word and the deepest map.
            self.oth_sig = type(self.oth_sig)(
                addr_width=max(read_port(b).addr_width for b in oth),
                shape=max(b.word_bits for b in oth))
        ports = {
            "start": In(1),
            "layer": In(range(max(len(plan.layers), 2))),
            "done": Out(1),
            "ps": In(stream.Signature(layouts.partial_sums(p))).array(len(self.gp.pes)),
            "wr": Out(stream.Signature(self.wr_layout)).array(len(self.dsts)),
        }
        if self.others:
            # The memories' read port signature, flipped: the merger drives the address.
            ports["oth"] = In(self.oth_sig).array(len(self.others))
        if self.logits_layer is not None:
            ports["logits"] = Out(stream.Signature(
                data.ArrayLayout(signed(plan.acc_bits), self.logits_layer.n_out)))
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        plan, gp, p = self.plan, self.gp, self.p
        if not self.layers:
            m.d.comb += self.done.eq(1)
            return m
        acc = Signal(data.ArrayLayout(signed(plan.acc_bits), p.max_outputs))
        active = Signal(range(max(len(plan.layers), 2)))
        # Counter widths from the plan: positions and map widths of this group's layers.
        most = max(lp.out_hw[0] * lp.out_hw[1] for lp in self.layers) + 1
        wide = max(max(lp.out_hw) for lp in self.layers) + 1
        j = Signal(range(most))
        x = Signal(range(wide))
        # Pooled coordinates kept incrementally (no dividers): position (y, x) pools into
        # (py, px); sy, sx count rows and columns inside the pooling window.
        py, px, sy, sx = (Signal(range(wide)) for _ in range(4))
        # Overlapping pools (window > stride): the row y, and which of the pooled words that
        # hold the position (wy, wx of up to ceil(k/s) each way) the word goes to next.
        over = [lp for lp in self.layers if lp.dst and plan.buffers[lp.dst].overlaps]
        self.over = None
        if over:
            most_w = max(-(-plan.buffers[lp.dst].pool // plan.buffers[lp.dst].stride)
                         for lp in over)
            self.over = (Signal(range(wide), name="y"),
                         *(Signal(range(most_w + 1), name=n) for n in ("wy", "wx")))
        r = Signal(range(max((gp.period[n] for n in gp.ranges), default=1) + 1))
        k = Signal(range(len(gp.pes) + 1))         # contributor being collected
        ch = Signal(range(p.max_outputs + 1))      # channel being requantized
        word = Signal(max((plan.buffers[d].word_bits for d in self.dsts), default=1))
        pos = Signal(range(most))                  # absolute output position: the add's address
        other = Signal(max((plan.buffers[o].word_bits for o in self.others), default=1))
        # The requantization's product register: the multiply in one cycle, the rounding,
        # shift and clamp in the next (together they were the placed chip's critical path).
        mult_bits = max((lp.mult.bit_length() for lp in self.layers if lp.dst is not None),
                        default=1)
        prod = Signal(signed(plan.acc_bits + mult_bits + 1))
        add_bits = max((lp.add_mult.bit_length() for lp in self.layers if lp.add_mult),
                       default=1)
        oprod = Signal(signed(plan.config.act_bits + add_bits + 2))   # the add's rescale
        pch = Signal.like(ch)                      # the channel whose product is in prod
        pvalid = Signal()

        count, out_w = Signal(range(most)), Signal(range(wide))
        n_contrib = Signal(range(len(gp.pes) + 1))
        period = Signal.like(r)
        pool = Signal(range(max(lp.pool for lp in self.layers) + 1))
        n_out = Signal(range(p.max_outputs + 1))
        with m.Switch(active):
            for lp in self.layers:
                with m.Case(lp.step):
                    start, stop = gp.ranges[lp.name]
                    m.d.comb += [count.eq(stop - start), out_w.eq(lp.out_hw[1]),
                                 period.eq(gp.period[lp.name]), n_out.eq(lp.n_out),
                                 pool.eq(lp.pool)]
                    if lp.other is not None:
                        port = self.oth[self.others.index(lp.other)]
                        m.d.comb += [port.addr.eq(pos), other.eq(port.data)]
                    with m.Switch(r):
                        for res, pes in enumerate(gp.contributors[lp.name]):
                            with m.Case(res):
                                m.d.comb += n_contrib.eq(len(pes))

        # The stream of the k-th contributor of this residue.
        valid, payload = Signal(), Signal(layouts.partial_sums(p))
        take = Signal()
        with m.Switch(active):
            for lp in self.layers:
                with m.Case(lp.step):
                    with m.Switch(r):
                        for res, pes in enumerate(gp.contributors[lp.name]):
                            with m.Case(res):
                                with m.Switch(k):
                                    for n, pe in enumerate(pes):
                                        port = self.ps[gp.pes.index(pe)]
                                        with m.Case(n):
                                            m.d.comb += [valid.eq(port.valid),
                                                         payload.eq(port.payload),
                                                         port.ready.eq(take)]

        def advance():
            m.d.sync += [j.eq(j + 1), pos.eq(pos + 1), r.eq(Mux(r + 1 == period, 0, r + 1)),
                         k.eq(0)]
            with m.If(x + 1 == out_w):
                m.d.sync += [x.eq(0), px.eq(0), sx.eq(0)]
                if self.over:
                    m.d.sync += self.over[0].eq(self.over[0] + 1)
                with m.If(sy + 1 == pool):
                    m.d.sync += [sy.eq(0), py.eq(py + 1)]
                with m.Else():
                    m.d.sync += sy.eq(sy + 1)
            with m.Else():
                m.d.sync += x.eq(x + 1)
                with m.If(sx + 1 == pool):
                    m.d.sync += [sx.eq(0), px.eq(px + 1)]
                with m.Else():
                    m.d.sync += sx.eq(sx + 1)

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.done.eq(1)
                with m.If(self.start):
                    with m.Switch(self.layer):
                        for lp in self.layers:
                            with m.Case(lp.step):
                                y0, x0 = divmod(gp.ranges[lp.name][0], lp.out_hw[1])
                                m.d.sync += [active.eq(lp.step), j.eq(0), r.eq(0), k.eq(0),
                                             pos.eq(gp.ranges[lp.name][0]),
                                             x.eq(x0), py.eq(y0 // lp.pool),
                                             sy.eq(y0 % lp.pool), px.eq(x0 // lp.pool),
                                             sx.eq(x0 % lp.pool)]
                                if self.over:
                                    m.d.sync += self.over[0].eq(y0)
                                m.next = "COLLECT"
            with m.State("COLLECT"):
                with m.If(j == count):
                    m.next = "IDLE"
                with m.Else():
                    m.d.comb += take.eq(valid)
                    with m.If(valid):
                        m.d.sync += k.eq(k + 1)
                        # A position's sum starts from the layer's bias (or zero).
                        bias = [Signal.like(acc[0], name=f"bias{o}")
                                for o in range(p.max_outputs)]
                        with m.Switch(active):
                            for lp in self.layers:
                                if lp.bias is not None:
                                    with m.Case(lp.step):
                                        m.d.comb += [b.eq(v) for b, v in zip(bias, lp.bias,
                                                                             strict=False)]
                        for o in range(p.max_outputs):
                            m.d.sync += acc[o].eq(Mux(k == 0, bias[o], acc[o]) + payload[o])
                        with m.If(k + 1 == n_contrib):
                            m.d.sync += ch.eq(0)
                            m.next = "REQUANT"
            with m.State("REQUANT"):
                self._requantize(m, active, acc, ch, word, n_out, prod, pch, pvalid, other,
                                 oprod)
            with m.State("WRITE"):
                self._write(m, active, word, py, px, x, advance)
            if self.logits_layer is not None:
                with m.State("LOGITS"):
                    port = self.logits
                    m.d.comb += port.valid.eq(1)
                    for o in range(self.logits_layer.n_out):
                        m.d.comb += port.payload[o].eq(acc[o])
                    with m.If(port.ready):
                        advance()
                        m.next = "COLLECT"
        if checks.enabled(platform):
            for d, port in enumerate(self.wr):
                checks.stream_contract(m, port, name=f"merger.wr{d}")
            if self.logits_layer is not None:
                checks.stream_contract(m, self.logits, name="merger.logits")
        return m

    def _requantize(self, m, active, acc, ch, word, n_out, prod, pch, pvalid, other, oprod):
        """One channel a cycle, pipelined: prod = psum * M (and the add's other operand times
        its M), then clamp((prod + 2**(S-1)) >> S, 0, 2**A - 1) into the word the next cycle
        (n_out + 1 cycles per position). Without ReLU the clamp is symmetric and the channel
        is stored signed; with an add fused in, the clamped sum with the rescaled other
        operand is clamped to 0 .. 2**A - 1."""
        bits = self.plan.config.act_bits
        top = 2 ** bits - 1
        with m.Switch(active):
            for lp in self.layers:
                with m.Case(lp.step):
                    if lp.dst is None:
                        m.next = "LOGITS"
                        continue
                    dst_bits = self.plan.buffers[lp.dst].bits
                    with m.If(ch < n_out):
                        m.d.sync += [prod.eq(acc[ch] * lp.mult), pch.eq(ch), ch.eq(ch + 1)]
                        if lp.other is not None:
                            ob = self.plan.buffers[lp.other]
                            with m.Switch(ch):
                                for o in range(lp.n_out):
                                    with m.Case(o):
                                        f = other[o * ob.bits:(o + 1) * ob.bits]
                                        if ob.signed:
                                            m.d.sync += oprod.eq(f.as_signed())
                                        else:
                                            m.d.sync += oprod.eq(f * lp.add_mult)
                    m.d.sync += pvalid.eq(ch < n_out)
                    with m.If(pvalid):
                        v = (prod + (1 << (lp.shift - 1))) >> lp.shift
                        if lp.relu:
                            q = Mux(v < 0, 0, Mux(v > top, top, v))
                        else:
                            q = Mux(v < -top, -top, Mux(v > top, top, v))
                        if lp.other is not None:
                            ob = self.plan.buffers[lp.other]
                            r = oprod if ob.signed else \
                                (oprod + (1 << (lp.add_shift - 1))) >> lp.add_shift
                            t = q + r
                            q = Mux(t < 0, 0, Mux(t > top, top, t))
                        with m.Switch(pch):
                            for o in range(lp.n_out):
                                with m.Case(o):
                                    m.d.sync += word[o * dst_bits:(o + 1) * dst_bits].eq(
                                        q[:dst_bits])
                        with m.If(pch + 1 == n_out):
                            m.d.sync += pvalid.eq(0)
                            m.next = "WRITE"

    def _write(self, m, active, word, py, px, x, advance):
        """The word to the pooling writer of the layer's buffer, with the size of its pooling
        window (clipped at the map's edge); a position outside a floor-mode pool's whole
        windows is dropped."""
        with m.Switch(active):
            for lp in self.layers:
                if lp.dst is None:
                    continue
                with m.Case(lp.step):
                    buf = self.plan.buffers[lp.dst]
                    port = self.wr[self.dsts.index(lp.dst)]
                    if buf.overlaps:
                        self._write_over(m, lp, buf, port, word, x, advance)
                        continue
                    sizes = buf.window_sizes()
                    last_r, last_c = py == buf.height - 1, px == buf.width - 1
                    n = Mux(last_r, Mux(last_c, sizes[True, True], sizes[True, False]),
                            Mux(last_c, sizes[False, True], sizes[False, False]))
                    with m.If((py < buf.height) & (px < buf.width)):
                        m.d.comb += [port.valid.eq(1),
                                     port.payload.addr.eq(py * buf.width + px),
                                     port.payload.n.eq(n),
                                     port.payload.data.eq(word[:buf.word_bits])]
                        with m.If(port.ready):
                            advance()
                            m.next = "COLLECT"
                    with m.Else():
                        advance()
                        m.next = "COLLECT"

    def _write_over(self, m, lp, buf, port, word, x, advance):
        """An overlapping pool: the word goes to each pooled word whose window holds the
        position, row by row (`Buffer.pooled`, tables by row and column), each with its
        window's size; a position in none of them is dropped."""
        y, wy, wx = self.over
        row0, n_rows, col0, n_cols = (Signal(range(max(buf.height, buf.width) + 1),
                                             name=f"{lp.name}_{n}")
                                      for n in ("row0", "rows", "col0", "cols"))
        for var, first, count, size in ((y, row0, n_rows, buf.height),
                                        (x, col0, n_cols, buf.width)):
            with m.Switch(var):
                for i in range(lp.out_hw[0] if var is y else lp.out_hw[1]):
                    with m.Case(i):
                        lo, n = buf.pooled(i, size)
                        m.d.comb += [first.eq(lo), count.eq(n)]
        pr, pc = row0 + wy, col0 + wx
        sizes = buf.window_sizes()
        last_r, last_c = pr == buf.height - 1, pc == buf.width - 1
        n = Mux(last_r, Mux(last_c, sizes[True, True], sizes[True, False]),
                Mux(last_c, sizes[False, True], sizes[False, False]))
        with m.If((n_rows == 0) | (n_cols == 0)):
            advance()
            m.next = "COLLECT"
        with m.Else():
            m.d.comb += [port.valid.eq(1), port.payload.addr.eq(pr * buf.width + pc),
                         port.payload.n.eq(n), port.payload.data.eq(word[:buf.word_bits])]
            with m.If(port.ready):
                with m.If(wx + 1 == n_cols):
                    m.d.sync += wx.eq(0)
                    with m.If(wy + 1 == n_rows):
                        m.d.sync += wy.eq(0)
                        advance()
                        m.next = "COLLECT"
                    with m.Else():
                        m.d.sync += wy.eq(wy + 1)
                with m.Else():
                    m.d.sync += wx.eq(wx + 1)
