"""The pooling writer under amaranth.sim, on a real memory through its lib.memory ports,
against a channel-wise max computed with numpy, and averaging against the golden model."""

import numpy as np
from amaranth import Module
from amaranth.lib import memory, wiring

from hdl.chip_plan import Buffer, PoolMode
from hdl.pool import PoolWriter, memory_depth

from .sim_helpers import run

BUF = Buffer("t", channels=3, height=3, width=5, bits=4)


class PooledMemory(wiring.Component):
    """A PoolWriter and the memory it owns, as the chip connects them."""

    def __init__(self, buf, n_inputs, init):
        self.pool = PoolWriter(buf, n_inputs)
        self.mem = memory.Memory(shape=buf.word_bits, depth=memory_depth(buf), init=init)
        super().__init__({"i": self.pool.signature.members["i"],
                          "clear": self.pool.signature.members["clear"],
                          "busy": self.pool.signature.members["busy"]})

    def elaborate(self, platform):
        m = Module()
        m.submodules.pool, m.submodules.mem = self.pool, self.mem
        self.pool_mem = self.mem
        wiring.connect(m, self.pool.rd, self.mem.read_port())
        wiring.connect(m, self.pool.wr, self.mem.write_port())
        for outer, inner in zip(self.i, self.pool.i, strict=True):
            wiring.connect(m, wiring.flipped(outer), inner)
        m.d.comb += [self.pool.clear.eq(self.clear), self.busy.eq(self.pool.busy)]
        return m


def words(buf, values):
    """(n, channels) values -> packed words, channel c at bits [c*bits, (c+1)*bits)."""
    return [sum(int(v) << (c * buf.bits) for c, v in enumerate(row)) for row in values]


def unpack(buf, word):
    return [(word >> (c * buf.bits)) & ((1 << buf.bits) - 1) for c in range(buf.channels)]


def test_pool_writer_keeps_channelwise_max_per_layer():
    """Two inputs offer random words (with gaps) to random addresses, some addresses never;
    after each layer a touched word is the channel-wise max of the words sent to it in that
    layer (not of older contents), an untouched one keeps what it held."""
    rng = np.random.default_rng(4)
    top = 2 ** BUF.bits
    init = words(BUF, rng.integers(0, top, size=(BUF.depth, BUF.channels)))
    dut = PooledMemory(BUF, 2, init)
    layers = []
    for _ in range(2):
        addrs = rng.choice(BUF.depth - 3, size=(2, 20))          # the last 3 words untouched
        vals = rng.integers(0, top, size=(2, 20, BUF.channels))
        vals[0, 0] = 0                                           # edge: all-zero, all-max
        vals[1, 0] = top - 1
        layers.append((addrs, vals))
    snapshots = []

    async def testbench(ctx):
        for addrs, vals in layers:
            ctx.set(dut.clear, 1)
            await ctx.tick()
            ctx.set(dut.clear, 0)
            await offer_both(ctx, dut.i, [
                [{"addr": int(a), "data": w} for a, w in
                 zip(addrs[k], words(BUF, vals[k]), strict=True)] for k in range(2)], rng)
            while ctx.get(dut.busy):
                await ctx.tick()
            await ctx.tick()
            snapshots.append([ctx.get(dut.mem.data[a]) for a in range(BUF.depth)])

    run(dut, testbench)
    old = [unpack(BUF, w) for w in init]
    for (addrs, vals), snap in zip(layers, snapshots, strict=True):
        want = [list(o) for o in old]
        touched = set()
        for k in range(2):
            for a, v in zip(addrs[k], vals[k], strict=True):
                want[a] = list(v) if a not in touched else np.maximum(want[a], v).tolist()
                touched.add(int(a))
        got = [unpack(BUF, w) for w in snap]
        assert got == want
        old = got


async def offer_both(ctx, ports, payloads, rng, gap=0.4):
    """Offer payloads[k] on ports[k], all streams at once (so the writer has to arbitrate);
    an idle stream starts its next offer with probability 1 - gap, an offer stays until
    taken."""
    nxt = [0] * len(ports)
    offering = [False] * len(ports)
    while any(n < len(p) for n, p in zip(nxt, payloads, strict=True)):
        for k, port in enumerate(ports):
            if not offering[k] and nxt[k] < len(payloads[k]) and rng.random() >= gap:
                ctx.set(port.payload, payloads[k][nxt[k]])
                offering[k] = True
            ctx.set(port.valid, offering[k])
        taken = [k for k, port in enumerate(ports) if offering[k] and ctx.get(port.ready)]
        await ctx.tick()
        for k in taken:
            nxt[k] += 1
            offering[k] = False
    for port in ports:
        ctx.set(port.valid, 0)


def test_pool_writer_averages_clipped_windows_like_the_golden_model():
    """Average pooling, ceil mode (3 x 3 windows on a 7 x 8 map: windows of 9, 6, 3 and 2
    words at the edges): every conv output offered once, split between two inputs in
    position order as two groups would, each with its window's size; two layers, so the
    running sums must start over. The map must be the golden model's avg_pool, rounding
    included (values near the top code, and a window of all top codes)."""
    from golden.chip_model import avg_pool
    buf = Buffer("a", channels=2, height=3, width=3, bits=5, pool_mode=PoolMode.AVG, pool=3,
                 src_hw=(7, 8))
    rng = np.random.default_rng(7)
    top = 2 ** buf.bits - 1
    dut = PooledMemory(buf, 2, [])
    maps = []
    for _ in range(2):
        a = rng.integers(0, top + 1, size=(buf.channels, 7, 8))
        a[:, :3, :3] = top                                  # a whole window at the top
        a[:, 6, 6:] = top - 1                              # the 2-word corner window
        maps.append(a)
    sizes = buf.window_sizes()
    snapshots = []

    def offers(a):
        out = []
        for y in range(7):
            for x in range(8):
                py, px = y // 3, x // 3
                out.append({"addr": py * 3 + px,
                            "n": sizes[py == buf.height - 1, px == buf.width - 1],
                            "data": words(buf, [a[:, y, x]])[0]})
        return [out[:28], out[28:]]

    async def testbench(ctx):
        for a in maps:
            ctx.set(dut.clear, 1)
            await ctx.tick()
            ctx.set(dut.clear, 0)
            await offer_both(ctx, dut.i, offers(a), rng)
            while ctx.get(dut.busy):
                await ctx.tick()
            await ctx.tick()
            snapshots.append([ctx.get(dut.pool_mem.data[i]) for i in range(buf.depth)])

    run(dut, testbench)
    for a, snap in zip(maps, snapshots, strict=True):
        want = avg_pool(a[None].astype(np.int64), 3, 3, True)[0]     # (C, 3, 3)
        got = np.array([unpack(buf, w) for w in snap]).T.reshape(want.shape)
        np.testing.assert_array_equal(got, want)
