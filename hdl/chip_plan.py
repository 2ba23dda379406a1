"""What the chip gateware is built from: the mapping and the programmed chip, turned into
per-PE read programs, per-group merge tables and feature-map buffers.

This is plain Python, evaluated at elaboration; `hdl/chip.py` and its blocks only read it.
The rules are the mapping's (cim_spec.mapping): conv position p of P belongs to group
p * R // P; the j-th position of a group reads chunk c from copy j % n_copies(c). A PE walks
the positions of its group in order and, for residue j % L (L the least common multiple of the
copy counts), reads the chunks that the residue gives it; its shift-add accumulates them
(first ... last) into one partial sum, and the group's merger adds the PEs' partial sums.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field

import numpy as np

from cim_spec import noise
from cim_spec.config import ConfigError
from cim_spec.network import Add, Conv, Dense, Pool
from cim_spec.program import Chip

from .params import PEParams


class ChipPlanError(ConfigError):
    """The network or mapping is one the chip gateware cannot run."""


class LayerKind(enum.Enum):
    """What a weight layer's reads look like (the mapping's `kind` names)."""

    CONV = "conv"      # a window of k x k source words per output position
    DENSE = "dense"    # the whole source map, one output position


class PoolMode(enum.Enum):
    """How a pooling writer combines the words of a window (docs/datapath.md 4, 4a)."""

    MAX = "max"
    AVG = "avg"        # floor((sum + n // 2) / n) over the n words of the clipped window


@dataclass(frozen=True)
class Buffer:
    """A feature map stored one word per position, the channels side by side in a word.

    `signed` maps (a weight layer without ReLU, read only by a residual add) hold
    `act_bits + 1`-bit two's complement channels. `pool_mode`, `pool`, `pool_stride` and
    `src_hw` say how the writer pools the (height, width) map `src_hw` into it (window
    `pool`, stride `pool_stride`, None: the window's; a larger window than stride overlaps,
    so one word of the source map goes to several pooled words)."""

    name: str
    channels: int
    height: int
    width: int
    bits: int
    signed: bool = False
    pool_mode: PoolMode = PoolMode.MAX
    pool: int = 1
    src_hw: tuple[int, int] | None = None
    pool_stride: int | None = None

    @property
    def stride(self) -> int:
        return self.pool_stride or self.pool

    @property
    def overlaps(self) -> bool:
        return self.stride != self.pool

    def pooled(self, i: int, n_out: int) -> tuple[int, int]:
        """(first pooled row, how many) whose windows hold source row `i` (or column, with
        `n_out` the pooled map's width); none outside a floor-mode pool's whole windows."""
        k, s = self.pool, self.stride
        lo, hi = max(0, -(-(i - k + 1) // s)), min(i // s, n_out - 1)
        return (lo, hi - lo + 1) if hi >= lo else (0, 0)

    @property
    def depth(self) -> int:
        return self.height * self.width

    @property
    def word_bits(self) -> int:
        return self.channels * self.bits

    def window_sizes(self) -> dict[tuple[bool, bool], int]:
        """Words in the (clipped) pooling window, by (last pooled row, last pooled column)."""
        h, w = self.src_hw or (self.height, self.width)
        k, s = self.pool, self.stride
        last_r, last_c = min(k, h - (self.height - 1) * s), min(k, w - (self.width - 1) * s)
        return {(lr, lc): (last_r if lr else k) * (last_c if lc else k)
                for lr in (False, True) for lc in (False, True)}


def reciprocals(sizes, below: int) -> tuple[int, dict[int, int]]:
    """(F, {n: R}) with floor(x / n) == (x * R) >> F for every window size n of `sizes` and
    every 0 <= x < below: the average pool's divisions as constant multiplies with one shift,
    checked exhaustively here."""
    xs = np.arange(below, dtype=np.int64)
    f = max(1, (below * max(sizes)).bit_length())
    while True:
        rs = {n: -(-(1 << f) // n) for n in sizes}
        if all(((xs * r) >> f == xs // n).all() for n, r in rs.items()):
            return f, rs
        f += 1


@dataclass(frozen=True)
class LayerPlan:
    """One weight layer as the sequencer runs it: where its inputs come from and how a
    window is fetched, its output positions, its digital parameters, and where its (pooled)
    outputs go. A conv without ReLU whose residual add reads it as input runs with the add
    fused (`other`: the add's other map), and a pool that is the only reader of a layer's
    output is fused into the writer."""

    index: int                   # weight-layer index (the read-noise key, gain register)
    name: str
    kind: LayerKind
    src: str                     # buffer the layer reads
    words: tuple[int, ...]       # source-word offsets of one window, relative to its origin
    out_hw: tuple[int, int]
    n_out: int
    gain: int                    # the gain register's value after reset (host-writable)
    mult: int | None             # requantization (None for the logits layer)
    shift: int | None
    dst: str | None              # buffer the (pooled) outputs go to; None: logits
    pool: int                    # pooling window = stride (1: no pooling)
    n_chunks: int
    step: int = 0                # place in the sequencer's schedule
    taps: tuple[tuple[int, int], ...] = ()   # (dy, dx) of each window word
    stride: int = 1
    pad: int = 0
    bias: tuple[int, ...] | None = None
    relu: bool = True            # False: clamped symmetrically, signed (act_bits + 1 bits)
    other: str | None = None     # residual add fused in: the buffer added to the outputs
    add_mult: int | None = None  # the add's rescale of an unsigned `other` (None: signed)
    add_shift: int | None = None
    trace: str | None = None     # the network layer whose output `dst` holds


@dataclass(frozen=True)
class Entry:
    """One block of a PE: what a read of it sends to the DAC."""

    layer: str
    chunk: int
    row0: int
    n_out: int
    gather: tuple[tuple[int, int], ...]   # per bit line: (window word, channel)


@dataclass(frozen=True)
class Read:
    """One read request of a PE's program: which entry (block) it reads, and whether it
    starts (`first`) or ends (`last`) the partial sum its shift-add accumulates."""

    entry: int                   # index into PEPlan.entries
    first: bool
    last: bool


@dataclass
class PEPlan:
    """One PE: its parameters and conductance codes, the blocks it holds (entries), and per
    layer the read program its feeder walks."""

    pe: int
    params: PEParams
    init: object                 # (rows, cols) conductance codes
    entries: list[Entry] = field(default_factory=list)
    # per layer: the reads of each residue j % L, in chunk order
    programs: dict[str, list[list[Read]]] = field(default_factory=dict)


@dataclass
class GroupPlan:
    """A group of PEs that share output positions, and the merger that adds their partial
    sums: per layer the group's position range, the period of its read pattern, and which
    PEs contribute at each residue of that period. The last group may be the shared PEs of
    layers that are not replicated."""

    index: int
    pes: list[int]
    ranges: dict[str, tuple[int, int]] = field(default_factory=dict)
    period: dict[str, int] = field(default_factory=dict)
    # per layer, per residue: which of the group's PEs send a partial sum
    contributors: dict[str, list[list[int]]] = field(default_factory=dict)


@dataclass
class ChipPlan:
    """Everything the chip gateware is elaborated from (built by `plan_chip`)."""

    chip: Chip
    layers: list[LayerPlan]
    buffers: dict[str, Buffer]
    pes: list[PEPlan]
    groups: list[GroupPlan]
    acc_bits: int

    @property
    def config(self):
        return self.chip.config

    def layer(self, name: str) -> LayerPlan:
        return next(lp for lp in self.layers if lp.name == name)

    @property
    def schedule(self) -> list[LayerPlan]:
        """The layers in the order the sequencer runs them (`layers` is by weight-layer
        index: a projection shortcut runs before the conv whose add reads it)."""
        return sorted(self.layers, key=lambda lp: lp.step)


def _steps(net) -> list[tuple[Conv | Dense, Add | None, Pool | None, str]]:
    """[(weight layer, fused add, fused pool, last fused layer's name)] in schedule order (by
    the network index of the last fused layer); refuses what the gateware cannot run."""
    names = [layer.name for layer in net.layers]
    steps, covered = [], set()
    for layer in net.layers:
        if not isinstance(layer, (Conv, Dense)):
            continue
        cur, add, pool = layer.name, None, None
        users = net.consumers(cur)
        if isinstance(layer, Conv) and not layer.relu:
            a = net.layers[names.index(users[0])]
            if net.source(names.index(a.name)) == cur:
                add, cur = a, a.name           # the add's input: fused into this layer
        users = net.consumers(cur)
        pools = [u for u in users if isinstance(net.layers[names.index(u)], Pool)]
        if pools:
            p = net.layers[names.index(pools[0])]
            if isinstance(layer, Dense) or (not layer.relu and add is None):
                raise ChipPlanError(f"layer {p.name}: the RTL pools only activation maps of "
                                    f"conv layers and residual adds")
            if len(users) > 1:
                raise ChipPlanError(f"layer {p.name}: the RTL pools on the fly, so the pool "
                                    f"must be the only reader of {cur} (also read by "
                                    f"{[u for u in users if u != p.name]})")
            if p.k < p.stride:
                raise ChipPlanError(f"layer {p.name}: the RTL pools on the fly and needs "
                                    f"windows that cover the map (k >= stride), got k={p.k} "
                                    f"stride={p.stride}")
            pool, cur = p, p.name
        covered.update(x.name for x in (layer, add, pool) if x is not None)
        steps.append((names.index(cur), (layer, add, pool, cur)))
    for layer in net.layers:
        if layer.name not in covered:
            kind = "add" if isinstance(layer, Add) else "pool"
            raise ChipPlanError(f"layer {layer.name}: the RTL runs a {kind} only fused into "
                                f"the conv layer it follows (an add's input must be a conv "
                                f"without ReLU, a pool must follow a conv or an add)")
    return [s for _, s in sorted(steps, key=lambda t: t[0])]


def plan_chip(chip: Chip) -> ChipPlan:
    """The plan of a programmed chip; ChipPlanError (a ConfigError) for a network or mapping
    the gateware cannot run, ConfigError for parameters its PEs cannot have."""
    mapping, cfg, dig = chip.mapping, chip.config, chip.digital
    net = mapping.network
    seq = _steps(net)
    shared = [lm.name for lm in mapping.layers if lm.kind == "conv" and not lm.replicated]
    if shared:
        raise ChipPlanError(f"conv layers {shared} are outside the replica groups (named "
                            f"replication): the RTL's schedule does not support that yet")
    c0, h0, w0 = net.input_shape
    # The image memory holds a word per pixel position, its channels side by side, like any
    # feature map (hdl/image_in.py writes it plane by plane).
    buffers = {"img": Buffer("img", c0, h0, w0, cfg.input_bits)}
    stored = {}                        # network layer -> the buffer that holds its output
    weight_names = [w.name for w in net.weight_layers()]
    names = [la.name for la in net.layers]
    layers = []
    for step, (layer, add, pool, cur) in enumerate(seq):
        lm = mapping.layer(layer.name)
        src_name = net.source(names.index(layer.name))
        if src_name is not None and src_name not in stored:
            raise ChipPlanError(f"layer {layer.name} reads {src_name}, whose output the RTL "
                                f"does not keep (it is pooled or added on the fly)")
        src = "img" if src_name is None else stored[src_name]
        sb = buffers[src]
        last = layer is net.layers[-1]
        other = add_mult = add_shift = None
        taps, stride, pad = ((0, 0),) * sb.depth, 1, 0
        if isinstance(layer, Conv):
            k, stride, pad = layer.k, layer.stride, layer.pad
            taps = tuple((dy, dx) for dy in range(k) for dx in range(k))
            words = tuple(dy * sb.width + dx for dy, dx in taps)
            c, ph, pw = net.output_shape_of(cur)
            dst = f"{layer.name}_out"
            signed_map = not layer.relu and add is None
            bits = cfg.act_bits + 1 if signed_map else cfg.act_bits
            buffers[dst] = Buffer(dst, c, ph, pw, bits, signed_map,
                                  PoolMode(pool.mode) if pool else PoolMode.MAX,
                                  pool.k if pool else 1, tuple(lm.out_hw),
                                  pool.stride if pool and pool.stride != pool.k else None)
            stored[cur] = dst
            if add is not None:
                if add.other not in stored:
                    raise ChipPlanError(f"layer {add.name} adds {add.other}, whose output the "
                                        f"RTL does not keep (it is pooled on the fly)")
                other = stored[add.other]
                if not buffers[other].signed:
                    add_mult = int(dig.requant_mult[add.name])
                    add_shift = int(dig.requant_shift[add.name])
        else:
            words = tuple(range(sb.depth))
            dst = None
            if not last:
                # A dense layer before another: its outputs are a 1 x 1 map, one word of
                # n_out channels, which the next dense layer reads as its whole window.
                dst = f"{layer.name}_out"
                buffers[dst] = Buffer(dst, layer.n_out, 1, 1, cfg.act_bits)
                stored[cur] = dst
        layers.append(LayerPlan(
            weight_names.index(layer.name), layer.name, LayerKind(lm.kind), src, words,
            lm.out_hw, lm.n_out, int(dig.adc_gain[layer.name]),
            None if last else int(dig.requant_mult[layer.name]),
            None if last else int(dig.requant_shift[layer.name]),
            dst, pool.k if pool else 1, lm.n_chunks, step, taps, stride, pad,
            tuple(int(b) for b in dig.bias[layer.name]) if layer.bias else None,
            layer.relu or last, other, add_mult, add_shift, None if last else cur))
    layers.sort(key=lambda lp: lp.index)

    max_lines = max(b.n_rows for b in mapping.blocks)
    max_chunks = max(lm.n_chunks for lm in mapping.layers)
    # The ADC gain registers are one bit wider than the largest gain this chip is programmed
    # with (not the contract's 32 bits): the host can write up to about twice that (drift
    # compensation raises gains by 10-20%), and each line's gain multiplier still fits one
    # FPGA DSP for the usual gains.
    gain_bits = max(cfg.adc_gain_frac_bits + 1,
                    max(lp.gain for lp in layers).bit_length() + 1)
    pes = []
    for pe in range(cfg.n_pe):
        params = PEParams.from_config(
            cfg, max_lines=max_lines, max_chunks=max_chunks, read_noise=dig.read_noise,
            pe_seed=noise.pe_seed(dig.noise_seed, pe) if dig.read_noise else 0,
            gain_bits=gain_bits)
        pes.append(PEPlan(pe, params, chip.conductance[pe]))
    for b in mapping.blocks:
        lp = next(lp for lp in layers if lp.name == b.layer)
        sb = buffers[lp.src]
        gather = []
        for i in range(b.n_in):
            idx = b.in0 + i
            if lp.kind is LayerKind.CONV:
                k2 = len(lp.words)
                gather.append((idx % k2, idx // k2))           # (dy*k + dx, channel)
            else:
                gather.append((idx % sb.depth, idx // sb.depth))  # CHW flatten
        pes[b.pe].entries.append(Entry(b.layer, b.chunk, b.row0, b.n_out, tuple(gather)))

    groups = [GroupPlan(g, list(p)) for g, p in enumerate(mapping.group_pes)]
    shared = GroupPlan(len(groups), list(mapping.shared_pes))
    for lp in layers:
        lm = mapping.layer(lp.name)
        targets = groups if lm.replicated else [shared]
        for g, gp in enumerate(targets):
            start, stop = lm.group_ranges[g] if lm.replicated else (0, lm.positions)
            copies = [len(mapping.copies(lp.name, g if lm.replicated else 0, c))
                      for c in range(lm.n_chunks)]
            period = math.lcm(*copies)
            gp.ranges[lp.name], gp.period[lp.name] = (start, stop), period
            assign = mapping.assign(lp.name)
            contrib = []
            for r in range(period):
                # the rule is periodic in j, so any position with residue r shows the pattern
                p = start + r if start + r < stop else None
                reads: dict[int, list[int]] = {}
                if p is not None:
                    for c in range(lm.n_chunks):
                        reads.setdefault(mapping.blocks[assign[p, c]].pe, []).append(c)
                contrib.append([pe for pe in gp.pes if pe in reads])
                for pe in gp.pes:
                    prog = pes[pe].programs.setdefault(lp.name, [[] for _ in range(period)])
                    chunks = reads.get(pe, [])
                    for n, c in enumerate(chunks):
                        e = next(i for i, en in enumerate(pes[pe].entries)
                                 if en.layer == lp.name and en.chunk == c)
                        prog[r].append(Read(e, n == 0, n == len(chunks) - 1))
            gp.contributors[lp.name] = contrib
    all_groups = groups + ([shared] if shared.pes else [])
    # The mergers' sums: the PEs' partial sums plus a bias.
    acc_bits = pes[0].params.acc_bits
    top_bias = max((abs(b) for lp in layers for b in (lp.bias or ())), default=0)
    if top_bias:
        acc_bits = max(acc_bits, (2 ** (acc_bits - 1) + top_bias).bit_length() + 1)
    return ChipPlan(chip, layers, buffers, pes, all_groups, acc_bits)
