"""Small amaranth.sim stream drivers (valid/ready with random stalls on both sides)."""

from __future__ import annotations

from amaranth.sim import Simulator


async def put_all(ctx, port, payloads, rng=None, gap=0.0):
    """Offer each payload on a stream, idling for a random cycle with probability `gap`."""
    for payload in payloads:
        while rng is not None and rng.random() < gap:
            ctx.set(port.valid, 0)
            await ctx.tick()
        ctx.set(port.payload, payload)
        ctx.set(port.valid, 1)
        await ctx.tick().until(port.ready)
    ctx.set(port.valid, 0)


async def get_n(ctx, port, n, rng=None, stall=0.0, limit=1_000_000):
    """Collect n payloads, holding ready low on a random cycle with probability `stall`."""
    got = []
    cycles = 0
    while len(got) < n:
        ready = not (rng is not None and rng.random() < stall)
        ctx.set(port.ready, ready)
        _, _, valid, payload = await ctx.tick().sample(port.valid, port.payload)
        if valid and ready:
            got.append(payload)
        cycles += 1
        if cycles > limit:
            raise TimeoutError(f"only {len(got)} of {n} outputs after {limit} cycles")
    ctx.set(port.ready, 0)
    return got


def run(dut, *testbenches, vcd=None):
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    for tb in testbenches:
        sim.add_testbench(tb)
    if vcd:
        with sim.write_vcd(vcd):
            sim.run()
    else:
        sim.run()


def producer(port, payloads, rng=None, gap=0.0):
    """An amaranth.sim testbench that offers `payloads` on `port`."""
    async def testbench(ctx):
        await put_all(ctx, port, payloads, rng, gap)
    return testbench
