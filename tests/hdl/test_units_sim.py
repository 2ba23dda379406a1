"""The chip's sequencing blocks on their own, under amaranth.sim, with random stimulus and
random back-pressure, against references written here from the mapping's rule
(cim_spec.mapping: which block reads which position and chunk) and docs/datapath.md, not from
the plan tables the gateware is elaborated from:

* ImageInput: images with random ids and random gaps into the double buffer, released after
  random delays; every completed bank holds its image and id, nothing is overwritten before
  its release.
* Feeder: the read requests of one PE for a layer (input vector, rows, gain, noise nonce,
  first/last of the partial sum) in position order, from a real memory holding a random map.
* Merger: the partial sums of a group's PEs, offered concurrently with gaps, summed,
  requantized (ReLU, clamp) and addressed to the pooled position; the logits layer's sums.
"""

import numpy as np
import pytest
from amaranth import Module
from amaranth.lib import memory, wiring

from cim_spec import noise, program
from cim_spec.config import SystemConfig
from cim_spec.mapping import map_network
from cim_spec.network import Conv, Dense, Network, Pool
from hdl.chip_plan import Buffer, plan_chip
from hdl.feeder import Feeder
from hdl.image_in import ImageInput
from hdl.merger import Merger

from .sim_helpers import get_n, run
from .test_pool_sim import offer_both

NET = Network("unit", (1, 9, 9), (Conv("A", 1, 3, 2), Pool("P", 2, 2), Conv("B", 3, 4, 2),
                                  Pool("Q", 2, 2), Dense("D", 16, 5)))
CONFIGS = {
    # Two PEs per group: each position's partial sum comes from two PEs (B), two copies of A
    # alternate by position, the dense layer split over two PEs.
    "spread": SystemConfig(n_pe=7, array_rows=16, array_cols=8, replication=2, input_bits=4,
                           act_bits=4, adc_bits=5),
    # One PE per group holding both chunks of B: first/last delimit a PE's own sum.
    "packed": SystemConfig(n_pe=3, array_rows=32, array_cols=8, replication=2, input_bits=5,
                           act_bits=5, adc_bits=6),
    # Stride and zero padding (A: windows past every edge; B: padding 2 of a 3 x 3 kernel,
    # its 27-input patch cut across channels), biases.
    "padded": SystemConfig(n_pe=8, array_rows=32, array_cols=8, replication=2, input_bits=4,
                           act_bits=4, adc_bits=5),
}
NETS = {"padded": Network("padded", (1, 9, 8), (
    Conv("A", 1, 3, 3, stride=2, pad=1, bias=True), Pool("P", 2, 2, mode="avg"),
    Conv("B", 3, 2, 3, stride=1, pad=2), Dense("D", 40, 5, bias=True)))}


def make_chip(name, noise_on=True, seed=0):
    cfg = CONFIGS[name]
    net = NETS.get(name, NET)
    mapping = map_network(cfg, net)
    rng = np.random.default_rng(seed)
    names = [lm.name for lm in mapping.layers]
    bias = {la.name: tuple(int(v) for v in rng.integers(-500, 500, size=(
        la.out_ch if isinstance(la, Conv) else la.n_out))) for la in net.weight_layers()
        if la.bias}
    return program.Chip(mapping, rng.integers(0, cfg.code_max + 1, size=(
        cfg.n_pe, cfg.array_rows, cfg.array_cols)), program.Digital(
        {n: int(rng.integers(1, 2 ** 20)) for n in names},
        {n: int(rng.integers(2 ** 14, 2 ** 16)) for n in names[:-1]},
        {n: int(rng.integers(8, 20)) for n in names[:-1]},
        read_noise=300 if noise_on else 0, noise_seed=5, bias=bias))


def src_map(chip, layer, rng):
    """A random (C, H, W) map for the layer's source buffer, at its stored width."""
    net, cfg = chip.mapping.network, chip.config
    names = [la.name for la in net.layers]
    i = names.index(layer)
    shape = net.input_shape if i == 0 else net.shapes()[i - 1]
    return rng.integers(0, 2 ** cfg.input_bits, size=shape)


def pack(values, bits):
    return sum(int(v) << (c * bits) for c, v in enumerate(values))


# ----------------------------------------------------------------------------- ImageInput

def test_image_input_double_buffers_images_with_their_ids():
    rng = np.random.default_rng(7)
    buf = Buffer("img", 1, 3, 4, 5)
    dut = ImageInput(buf)
    n = 7
    images = rng.integers(0, 2 ** buf.bits, size=(n, buf.depth))
    images[0] = 2 ** buf.bits - 1
    ids = rng.integers(0, 2 ** 32, size=n)
    mem = {}
    seen = []           # (bank, id, contents) at each image's release

    async def producer(ctx):
        for k in range(n):
            for v in images[k]:
                while rng.random() < 0.3:
                    ctx.set(dut.pixels.valid, 0)
                    await ctx.tick()
                ctx.set(dut.pixels.payload, int(v))
                ctx.set(dut.image_id, int(ids[k]))
                ctx.set(dut.pixels.valid, 1)
                await ctx.tick().until(dut.pixels.ready)
            # The id input may change freely after the first pixel: only that one samples it.
            ctx.set(dut.image_id, int(rng.integers(0, 2 ** 32)))
        ctx.set(dut.pixels.valid, 0)

    async def consumer(ctx):
        stalled = 0
        while len(seen) < n:
            avail = ctx.get(dut.avail)
            # Slow to release (the chip computes for a while): the loader must wait.
            release = bool(avail) and rng.random() < 0.02
            held = ctx.get(dut.cur_bank)
            if release:
                bank = ctx.get(dut.cur_bank)
                seen.append((bank, ctx.get(dut.cur_id),
                             [mem.get(bank * buf.depth + a) for a in range(buf.depth)]))
            ctx.set(dut.release, release)
            en, addr, data, valid, ready = (ctx.get(s) for s in (
                dut.wr.en, dut.wr.addr, dut.wr.data, dut.pixels.valid, dut.pixels.ready))
            stalled += bool(valid and not ready)
            await ctx.tick()
            if en:
                # A write into the bank the consumer holds would corrupt the image it reads.
                assert not (avail and addr // buf.depth == held and not release), \
                    f"write into the held bank at {addr}"
                mem[addr] = data
        ctx.set(dut.release, 0)
        assert stalled > 0, "both banks were never full at once: no back-pressure tested"

    run(dut, producer, consumer)
    assert [b for b, _, _ in seen] == [k % 2 for k in range(n)]
    assert [i for _, i, _ in seen] == [int(v) for v in ids]
    assert [c for _, _, c in seen] == [[int(v) for v in im] for im in images]


# ----------------------------------------------------------------------------- Feeder

class FedFeeder(wiring.Component):
    """A feeder reading real memories (one per source buffer, initialized with `maps`)."""

    def __init__(self, plan, pe, words):
        self.feeder = Feeder(plan, pe)
        self.plan, self.words = plan, words
        super().__init__({n: self.feeder.signature.members[n]
                          for n in ("start", "layer", "image_key", "gains", "done", "req")})

    def elaborate(self, platform):
        m = Module()
        m.submodules.feeder = f = self.feeder
        for s, name in enumerate(f.sources):
            buf = self.plan.buffers[name]
            mem = memory.Memory(shape=buf.word_bits, depth=max(buf.depth, 2),
                                init=self.words[name])
            m.submodules[f"mem_{name}"] = mem
            rp = mem.read_port()
            m.d.comb += [rp.addr.eq(f.src[s].addr), f.src[s].data.eq(rp.data)]
        wiring.connect(m, wiring.flipped(self.req), f.req)
        m.d.comb += [f.start.eq(self.start), f.layer.eq(self.layer),
                     f.image_key.eq(self.image_key), self.done.eq(f.done)]
        for outer, inner in zip(self.gains, f.gains, strict=True):
            m.d.comb += inner.eq(outer)
        return m


def feeder_reference(chip, pe, layer, a, image_id):
    """The PE's reads of `layer` for source map `a`, from the mapping's assignment."""
    mapping, cfg = chip.mapping, chip.config
    lm = mapping.layer(layer)
    li = [la.name for la in mapping.network.weight_layers()].index(layer)
    la = next(x for x in mapping.network.layers if x.name == layer)
    if isinstance(la, Conv):
        ho, wo = lm.out_hw
        s, p = la.stride, la.pad
        _, h, w = a.shape

        def at(c, yy, xx):          # the map surrounded by p rows and columns of code 0
            return a[c, yy - p, xx - p] if 0 <= yy - p < h and 0 <= xx - p < w else 0

        vecs = [[at(c, y * s + dy, x * s + dx) for c in range(la.in_ch) for dy in range(la.k)
                 for dx in range(la.k)] for y in range(ho) for x in range(wo)]
    else:
        vecs = [list(a.reshape(-1))]
    assign = mapping.assign(layer)
    mine = [b for b in mapping.blocks_of(layer) if b.pe == pe]
    start, stop = lm.group_ranges[mine[0].group] if lm.replicated else (0, lm.positions)
    out = []
    for p in range(start, stop):
        chunks = [c for c in range(lm.n_chunks) if mapping.blocks[assign[p, c]].pe == pe]
        for n, c in enumerate(chunks):
            b = mapping.blocks[assign[p, c]]
            x = [int(v) for v in vecs[p][b.in0:b.in0 + b.n_in]]
            nonce = int(noise.read_nonce(image_id, li, p, c)) if chip.digital.read_noise else 0
            out.append(dict(x=x + [0] * (cfg.array_cols - len(x)), row0=b.row0,
                            n_lines=2 * b.n_out, gain=chip.digital.adc_gain[layer],
                            nonce=nonce, first=n == 0, last=n == len(chunks) - 1))
    return out


@pytest.mark.parametrize("name, noise_on", [("spread", True), ("packed", False),
                                             ("padded", True)])
def test_feeder_requests_match_the_mapping(name, noise_on):
    chip = make_chip(name, noise_on)
    plan = plan_chip(chip)
    rng = np.random.default_rng(11)
    image_id = int(rng.integers(0, 2 ** 32))
    maps = {lp.name: src_map(chip, lp.name, rng) for lp in plan.layers}
    # Every layer's source buffer holds its map (one word per position, channels packed).
    words = {}
    for lp in plan.layers:
        buf = plan.buffers[lp.src]
        a = maps[lp.name]
        words[lp.src] = [pack(a[:, y, x], buf.bits) for y in range(buf.height)
                         for x in range(buf.width)] + [0] * (buf.depth < 2)
    checked = 0
    for pe in chip.mapping.used_pes():
        dut = FedFeeder(plan, pe, words)
        layers = [lp for lp in plan.layers if lp.name in dut.feeder.pp.programs]
        want = {lp.name: feeder_reference(chip, pe, lp.name, maps[lp.name], image_id)
                for lp in layers}
        got = {}

        async def bench(ctx, dut=dut, layers=layers, want=want, got=got):
            ctx.set(dut.image_key, int(noise.mix32(np.uint64(image_id))))
            for lp in plan.layers:        # the chip's gain registers, as after reset
                ctx.set(dut.gains[lp.index], chip.digital.adc_gain[lp.name])
            for lp in layers:
                ctx.set(dut.layer, lp.step)
                ctx.set(dut.start, 1)
                await ctx.tick()
                ctx.set(dut.start, 0)
                got[lp.name] = await get_n(ctx, dut.req, len(want[lp.name]), rng, stall=0.4)
                for _ in range(8):
                    await ctx.tick()
                assert ctx.get(dut.done), "the feeder is not idle after its last read"

        run(dut, bench)
        for lp in layers:
            rows = [dict(x=[int(v) for v in r.x], row0=int(r.row0), n_lines=int(r.n_lines),
                         gain=int(r.gain), nonce=int(r.nonce), first=bool(r.first),
                         last=bool(r.last)) for r in got[lp.name]]
            assert rows == want[lp.name], (pe, lp.name)
            checked += len(rows)
    assert checked > 50


# ----------------------------------------------------------------------------- Merger

def requant(v, mult, shift, bits):
    return min(max((v * mult + (1 << (shift - 1))) >> shift, 0), 2 ** bits - 1)


@pytest.mark.parametrize("name", ["spread", "packed"])
def test_merger_sums_requantizes_and_addresses(name):
    chip = make_chip(name)
    plan = plan_chip(chip)
    mapping, cfg, dig = chip.mapping, chip.config, chip.digital
    rng = np.random.default_rng(12)
    for g, gp in enumerate(plan.groups):
        dut = Merger(plan, g)
        if not dut.layers:
            continue
        p = dut.p
        streams = {pe: [] for pe in gp.pes}
        want_words, want_logits = [], []
        for lp in dut.layers:
            lm = mapping.layer(lp.name)
            start, stop = gp.ranges[lp.name]
            assign = mapping.assign(lp.name)
            for pos in range(start, stop):
                pes = sorted({mapping.blocks[assign[pos, c]].pe for c in range(lm.n_chunks)})
                total = np.zeros(lp.n_out, dtype=np.int64)
                top = 2 ** (p.acc_bits - 3)
                if lp.dst is not None:  # sums that span the activation codes, and beyond
                    top = min(top, 2 * 2 ** (cfg.act_bits + dig.requant_shift[lp.name])
                              // dig.requant_mult[lp.name] // len(pes) + 2)
                for pe in pes:
                    ps = rng.integers(-top, top, size=p.max_outputs)
                    if rng.random() < 0.1:
                        ps[:] = top - 1                            # clamps at the top
                    streams[pe].append([int(v) for v in ps])
                    total += ps[:lp.n_out]
                if lp.dst is None:
                    want_logits.append([int(v) for v in total])
                else:
                    buf = plan.buffers[lp.dst]
                    y, x = divmod(pos, lp.out_hw[1])
                    q = [requant(int(v), dig.requant_mult[lp.name], dig.requant_shift[lp.name],
                                 cfg.act_bits) for v in total]
                    want_words.append((lp.dst, (y // lp.pool) * buf.width + x // lp.pool,
                                       pack(q, cfg.act_bits)))
        # Each PE's stream split by layer: the merger runs one layer at a time.
        per_layer = []
        for lp in dut.layers:
            lm = mapping.layer(lp.name)
            assign = mapping.assign(lp.name)
            counts = {pe: 0 for pe in gp.pes}
            for pos in range(*gp.ranges[lp.name]):
                for pe in {mapping.blocks[assign[pos, c]].pe for c in range(lm.n_chunks)}:
                    counts[pe] += 1
            per_layer.append([streams[pe][:counts[pe]] for pe in gp.pes])
            for pe in gp.pes:
                del streams[pe][:counts[pe]]
        got_words, got_logits = [], []

        async def producer(ctx, dut=dut, per_layer=per_layer):
            for lp, payloads in zip(dut.layers, per_layer, strict=True):
                ctx.set(dut.layer, lp.index)
                ctx.set(dut.start, 1)
                await ctx.tick()
                ctx.set(dut.start, 0)
                await offer_both(ctx, dut.ps, payloads, rng)
                await ctx.tick()
                while not ctx.get(dut.done):
                    await ctx.tick()

        async def consumer(ctx, dut=dut, got_words=got_words, got_logits=got_logits,
                           want_words=want_words, want_logits=want_logits):
            for lp in dut.layers:
                if lp.dst is None:
                    got_logits.extend(await get_n(ctx, dut.logits, len(want_logits), rng,
                                                  stall=0.3))
                    continue
                port = dut.wr[dut.dsts.index(lp.dst)]
                n = sum(1 for w in want_words if w[0] == lp.dst)
                for w in await get_n(ctx, port, n, rng, stall=0.3):
                    got_words.append((lp.dst, int(w.addr), int(w.data)))

        run(dut, producer, consumer)
        assert streams == {pe: [] for pe in gp.pes}
        assert got_words == want_words, g
        assert [[int(v) for v in lg] for lg in got_logits] == want_logits, g
