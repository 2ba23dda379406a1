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

from cim_spec import noise
from cim_spec.config import ConfigError
from cim_spec.network import Conv, Dense, Pool
from cim_spec.program import Chip

from .params import PEParams


class ChipPlanError(ConfigError):
    """The network or mapping is one the chip gateware cannot run."""


class LayerKind(enum.Enum):
    """What a weight layer's reads look like (the mapping's `kind` names)."""

    CONV = "conv"      # a window of k x k source words per output position
    DENSE = "dense"    # the whole source map, one output position


@dataclass(frozen=True)
class Buffer:
    """A feature map stored one word per position, the channels side by side in a word."""

    name: str
    channels: int
    height: int
    width: int
    bits: int

    @property
    def depth(self) -> int:
        return self.height * self.width

    @property
    def word_bits(self) -> int:
        return self.channels * self.bits


@dataclass(frozen=True)
class LayerPlan:
    """One weight layer as the sequencer runs it: where its inputs come from and how a
    window is fetched, its output positions, its digital parameters, and where its (pooled)
    outputs go."""

    index: int                   # weight-layer index (the read-noise key)
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


def _layer_sequence(net):
    """[(weight layer, pool window or 1)]; refuses what the gateware cannot sequence."""
    if not net.is_sequential():
        # Padding, stride, biases, residual adds, average and floor-mode pooling are in the
        # golden model (docs/datapath.md) but not yet in the feeders, mergers and writers.
        raise ChipPlanError(f"network {net.name!r}: the RTL does not yet support padding, "
                            f"stride, biases, residual adds or average pooling")
    seq = []
    layers = list(net.layers)
    i = 0
    while i < len(layers):
        layer = layers[i]
        if isinstance(layer, Pool):
            raise ChipPlanError(f"layer {layer.name}: pooling must follow a conv layer")
        pool = 1
        if i + 1 < len(layers) and isinstance(layers[i + 1], Pool):
            p = layers[i + 1]
            if not isinstance(layer, Conv):
                raise ChipPlanError(f"layer {p.name}: pooling after a dense layer is not "
                                    f"supported by the RTL")
            if p.k != p.stride:
                raise ChipPlanError(f"layer {p.name}: the RTL pools on the fly and needs "
                                    f"non-overlapping windows (k == stride), got k={p.k} "
                                    f"stride={p.stride}")
            pool = p.k
            i += 1
        seq.append((layer, pool))
        i += 1
    for layer, _ in seq[:-1]:
        if isinstance(layer, Dense):
            raise ChipPlanError(f"layer {layer.name}: the RTL supports one dense layer, the "
                                f"last (its outputs are the logits)")
    return seq


def plan_chip(chip: Chip) -> ChipPlan:
    """The plan of a programmed chip; ChipPlanError (a ConfigError) for a network or mapping
    the gateware cannot run, ConfigError for parameters its PEs cannot have."""
    mapping, cfg, dig = chip.mapping, chip.config, chip.digital
    net = mapping.network
    seq = _layer_sequence(net)
    shared = [lm.name for lm in mapping.layers if lm.kind == "conv" and not lm.replicated]
    if shared:
        raise ChipPlanError(f"conv layers {shared} are outside the replica groups (named "
                            f"replication): the RTL's schedule does not support that yet")
    c0, h0, w0 = net.input_shape
    if c0 != 1:
        raise ChipPlanError(f"the RTL's image input takes single-channel images, the network "
                            f"{net.name!r} has {c0} input channels")
    buffers = {"img": Buffer("img", c0, h0, w0, cfg.input_bits)}
    src = "img"
    layers = []
    for index, (layer, pool) in enumerate(seq):
        lm = mapping.layer(layer.name)
        sb = buffers[src]
        if isinstance(layer, Conv):
            words = tuple(dy * sb.width + dx for dy in range(layer.k) for dx in range(layer.k))
            last = False
            out_shape = net.output_shape_of(layer.name)
            ph, pw = -(-out_shape[1] // pool), -(-out_shape[2] // pool)
            dst = f"{layer.name}_out"
            buffers[dst] = Buffer(dst, layer.out_ch, ph, pw, cfg.act_bits)
        else:
            words = tuple(range(sb.depth))
            last = True
            dst = None
        layers.append(LayerPlan(
            index, layer.name, LayerKind(lm.kind), src, words, lm.out_hw, lm.n_out,
            int(dig.adc_gain[layer.name]),
            None if last else int(dig.requant_mult[layer.name]),
            None if last else int(dig.requant_shift[layer.name]),
            dst, pool, lm.n_chunks))
        src = dst

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
    return ChipPlan(chip, layers, buffers, pes, all_groups, pes[0].params.acc_bits)
