"""The crossbar's AMARANTH form: the analog array emulated with block RAM and adder trees.

A read slot selects up to `max_lines` consecutive source lines. Reading them all in one cycle
needs a read port per line, and asynchronous ones, which block RAM does not have (the first
emulation took 118k LUT4s for one PE). A slot lasts `pulse_cycles` cycles anyway, so here the
lines are summed over several cycles, `lanes` of them per cycle:

    cycle t        slot sampled; the rows of group 0 are addressed (synchronous read)
    cycle t+1+s    group s's cells arrive and, masked by the slot's bits, are registered;
                   group s+1 is addressed
    cycle t+2+s    lane l sums line s*lanes + l's registered cells (adder tree, read noise)
                   into its current register
    cycle t+2+S    o.valid (S = ceil(n_lines / lanes) groups, at least one)

so a slot takes S + 2 cycles from sample to output, instead of the macro's 1 (docs/pe.md,
"Timing"). The register between the block RAM and the adder tree keeps the RAM's
clock-to-output delay and the tree in different cycles (on the ECP5 that path set the PE's
clock at 48.6 MHz).

Each row of the array is one memory word (`cols` cells of `code_bits`), and each lane has its
own synchronous read port. yosys copies the memory per read port (a block RAM has two ports,
and the programming interface needs a write port): on the ECP5 each copy of the 128 x 128-bit
array is four DP16KD in 36-bit pseudo-dual-port mode, so 6 lanes take 24 DP16KD. A DP16KD
reads at most 36 bits per cycle (in true dual port mode 2 x 18), so 6 x 128 bits need at least
22 in any arrangement: explicit dual-ported copies would save none. Programming writes reach
every copy; they are taken only while no slot is being read.
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal
from amaranth.lib import data, memory

from . import noise


def emulate(m: Module, xb) -> None:
    """Build the emulation on the ports of `xb` (a `hdl.crossbar.Crossbar`)."""
    p, i, o, prog = xb.p, xb.i, xb.o, xb.prog
    lanes = p.lanes
    groups = -(-p.max_lines // lanes)

    # Only the control flags (computing, b_valid, o.valid) are reset. Everything else here
    # is datapath, written on a slot's sample or while `computing` before anything reads it
    # (reads are gated by computing / b_valid), so it needs no reset: on an FPGA a reset is a
    # load on the reset net per flip-flop (the registered cells below are 6 lanes x 128
    # cells), and that net's fan-out limited the placed chip's clock.
    computing = Signal()
    group = Signal(range(max(groups, 2)), reset_less=True)  # the group arriving this cycle
    base = Signal(p.row_bits, reset_less=True)              # its first row
    nxt = Signal(p.row_bits, reset_less=True)       # the first row of the group addressed now
    left = Signal(range(p.max_lines + 1), reset_less=True)  # selected lines from `base` on
    bits = Signal(p.cols, reset_less=True)
    nonce = Signal(32, reset_less=True)
    slot = Signal(p.slot_bits, reset_less=True)
    b_valid = Signal()                          # stage B has a group this cycle
    b_last = Signal(reset_less=True)            # ... and it is the slot's last
    b_group = Signal.like(group)
    b_base = Signal.like(base)
    b_left = Signal.like(left)

    sample = Signal()
    writing = Signal()
    m.d.comb += [
        i.ready.eq(~computing & ~b_valid & (~o.valid | o.ready)),
        sample.eq(i.valid & i.ready),
        prog.ready.eq(~computing),
        writing.eq(prog.valid & prog.ready),
    ]

    # Row addressed this cycle by lane 0: the new slot's first row on its sample, else the
    # next group's. Rows past the array wrap; they belong to lines past n_lines (ignored).
    first = Signal(p.row_bits)
    m.d.comb += first.eq(Mux(sample, i.payload.row0, nxt))

    m.submodules.cells = mem = memory.Memory(
        shape=data.ArrayLayout(p.code_bits, p.cols), depth=p.rows,
        init=[list(map(int, r)) for r in xb.init])
    wr = mem.write_port(granularity=1)         # one enable per cell (ArrayLayout element)
    m.d.comb += [
        wr.addr.eq(prog.payload.row),
        wr.data.eq(prog.payload.code.replicate(p.cols)),
        wr.en.eq(Mux(writing, 1 << prog.payload.col, 0)),
    ]
    cells = []                                 # per lane: its read port's data
    for lane in range(lanes):
        rd = mem.read_port(domain="sync", transparent_for=())
        m.d.comb += rd.addr.eq(first + lane)
        cells.append(rd.data)

    # Stage A: the arriving group's cells, masked by the slot's bits, into registers.
    masked = [Signal(data.ArrayLayout(p.code_bits, p.cols), name=f"masked_{lane}",
                     reset_less=True) for lane in range(lanes)]
    m.d.comb += xb.busy.eq(computing | b_valid | o.valid)
    m.d.sync += b_valid.eq(computing)
    with m.If(computing):
        m.d.sync += [b_group.eq(group), b_base.eq(base), b_left.eq(left),
                     b_last.eq(left <= lanes)]
        for lane, row_cells in enumerate(cells):
            for c in range(p.cols):
                m.d.sync += masked[lane][c].eq(Mux(bits[c], row_cells[c], 0))

    # Stage B: one adder tree per lane over the registered cells.
    totals = []
    for lane in range(lanes):
        total = adder_tree(m, [masked[lane][c] for c in range(p.cols)], f"sum{lane}")
        if p.read_noise:
            row = Signal(p.row_bits, name=f"row_{lane}")
            m.d.comb += row.eq(b_base + lane)
            total = noise.noisy_current(total, noise.line_hash(p.pe_seed, nonce, slot, row),
                                        p.read_noise)
        totals.append(Mux(lane < b_left, total, 0))

    with m.If(o.valid & o.ready):
        m.d.sync += o.valid.eq(0)
    with m.If(sample):
        # Lines that no group reaches this time must not keep older currents.
        m.d.sync += [
            computing.eq(1), group.eq(0), base.eq(i.payload.row0),
            nxt.eq(i.payload.row0 + lanes), left.eq(i.payload.ctx.n_lines),
            bits.eq(i.payload.bits), nonce.eq(i.payload.nonce), slot.eq(i.payload.ctx.slot),
            o.payload.ctx.eq(i.payload.ctx), o.payload.current.eq(0),
        ]
    with m.If(computing):
        m.d.sync += [group.eq(group + 1), base.eq(base + lanes), nxt.eq(nxt + lanes),
                     left.eq(left - lanes)]
        with m.If(left <= lanes):
            m.d.sync += computing.eq(0)
    with m.If(b_valid):
        with m.Switch(b_group):
            for g in range(groups):
                with m.Case(g):
                    for lane in range(lanes):
                        line = g * lanes + lane
                        if line < p.max_lines:
                            m.d.sync += o.payload.current[line].eq(totals[lane])
        with m.If(b_last):
            m.d.sync += o.valid.eq(1)


def adder_tree(m: Module, terms, name: str):
    """Balanced pairwise sum. Each partial sum is a kept wire: otherwise yosys merges the
    additions into one multi-operand adder that it builds from LUTs, not carry chains."""
    level = 0
    while len(terms) > 1:
        nxt = []
        for k in range(0, len(terms) - 1, 2):
            a, b = terms[k], terms[k + 1]
            s = Signal(max(len(a), len(b)) + 1, name=f"{name}_{level}_{k // 2}",
                       attrs={"keep": 1})
            nxt.append(s)
            m.d.comb += s.eq(a + b)
        if len(terms) % 2:
            nxt.append(terms[-1])
        terms, level = nxt, level + 1
    return terms[0]
