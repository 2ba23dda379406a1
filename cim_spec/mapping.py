"""Placing a network's weight layers onto PEs and array lines.

The orientation is the one that fits the mCNN into eight PEs (docs/datapath.md section 2): a
layer's input vector drives the array's bit lines (`array_cols` of them), and each output is a
differential pair of source lines. A layer whose input vector is longer than the bit lines is
cut into *chunks*; each chunk is a *block* of ``2 * n_out`` source lines x ``n_in`` bit lines,
and the chunk results are partial sums added digitally.

Conv layers are replicated into `replication` groups of PEs (spatial parallelism); dense layers
are shared by all groups. Within a group, a heavily used block may get several *copies* so that
the group's PEs share its work. Which block computes which (output position, chunk) is a fixed
rule that the golden model and the RTL scheduler both follow:

* group of conv output position ``p`` (row-major) among ``P``: ``p * replication // P``;
* copy of chunk ``c`` for the ``j``-th position of that group: ``j % n_copies``.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass

import numpy as np

from .config import ConfigError, SystemConfig
from .network import Conv, Network


class MappingError(ConfigError):
    """The network cannot be placed onto the configured arrays."""


@dataclass(frozen=True)
class Block:
    """One chunk of one layer, programmed into one PE.

    Source line ``row0 + 2*o`` carries output ``o``'s positive weights, ``row0 + 2*o + 1`` its
    negative weights; bit line ``i`` (0 <= i < n_in) carries input ``in0 + i`` of the layer's
    input vector (a conv patch vector or a flattened map).
    """

    id: int
    layer: str
    chunk: int
    group: int
    copy: int
    pe: int
    row0: int
    n_out: int
    in0: int
    n_in: int

    @property
    def n_rows(self) -> int:
        return 2 * self.n_out


@dataclass(frozen=True)
class LayerMap:
    name: str
    kind: str                       # "conv" or "dense"
    n_in: int                       # length of the input vector (patch or flattened map)
    n_out: int
    chunk_size: int                 # inputs per chunk (the last chunk may be shorter)
    n_chunks: int
    positions: int                  # output positions (1 for dense)
    out_hw: tuple[int, int]         # output map size ((1, 1) for dense)
    replicated: bool
    group_ranges: tuple[tuple[int, int], ...]   # [start, stop) positions per group

    def chunk_inputs(self, c: int) -> tuple[int, int]:
        start = c * self.chunk_size
        return start, min(self.chunk_size, self.n_in - start)


@dataclass(frozen=True)
class Mapping:
    config: SystemConfig
    network: Network
    layers: tuple[LayerMap, ...]
    blocks: tuple[Block, ...]
    group_pes: tuple[tuple[int, ...], ...]      # PEs of each replica group
    shared_pes: tuple[int, ...]                 # PEs of the dense layers

    def layer(self, name: str) -> LayerMap:
        for lm in self.layers:
            if lm.name == name:
                return lm
        raise KeyError(name)

    def blocks_of(self, layer: str) -> list[Block]:
        return [b for b in self.blocks if b.layer == layer]

    def copies(self, layer: str, group: int, chunk: int) -> list[Block]:
        return sorted((b for b in self.blocks
                       if b.layer == layer and b.group == group and b.chunk == chunk),
                      key=lambda b: b.copy)

    def assign(self, layer: str) -> np.ndarray:
        """Block id computing each (output position, chunk): int array (positions, n_chunks)."""
        lm = self.layer(layer)
        out = np.empty((lm.positions, lm.n_chunks), dtype=np.int64)
        for g, (start, stop) in enumerate(lm.group_ranges):
            j = np.arange(stop - start)
            for c in range(lm.n_chunks):
                ids = np.array([b.id for b in self.copies(layer, g if lm.replicated else 0, c)])
                out[start:stop, c] = ids[j % len(ids)]
        return out

    def reads_per_pe(self, layer: str) -> np.ndarray:
        """Array reads (one input vector, all its bit slots) each PE does for one image."""
        ids, counts = np.unique(self.assign(layer), return_counts=True)
        reads = np.zeros(self.config.n_pe, dtype=np.int64)
        for i, n in zip(ids, counts, strict=True):
            reads[self.blocks[i].pe] += n
        return reads

    def slot_bound(self, layer: str) -> int:
        """Lower bound on read slots for a layer: the busiest PE's reads x input bits."""
        return int(self.reads_per_pe(layer).max()) * self.config.input_bits

    def used_pes(self) -> list[int]:
        return sorted({b.pe for b in self.blocks})

    def rows_used(self, pe: int) -> int:
        return sum(b.n_rows for b in self.blocks if b.pe == pe)

    def table(self) -> str:
        head = (f"{'block':>5} {'layer':<6} {'chunk':>5} {'group':>5} {'copy':>4} {'PE':>3} "
                f"{'source lines':>13} {'bit lines':>9} {'inputs':>9} {'reads/img':>9}")
        lines = [head, "-" * len(head)]
        for b in self.blocks:
            a = self.assign(b.layer)
            reads = int((a == b.id).sum())
            lines.append(
                f"{b.id:>5} {b.layer:<6} {b.chunk:>5} {b.group:>5} {b.copy:>4} {b.pe:>3} "
                f"{f'{b.row0}-{b.row0 + b.n_rows - 1}':>13} {f'0-{b.n_in - 1}':>9} "
                f"{f'{b.in0}-{b.in0 + b.n_in - 1}':>9} {reads:>9}")
        lines.append("")
        lines.append(f"{'PE':>3} {'rows used':>9} {'cells used':>10}  layers")
        for pe in range(self.config.n_pe):
            bl = [b for b in self.blocks if b.pe == pe]
            cells = sum(b.n_rows * b.n_in for b in bl)
            names = sorted({b.layer for b in bl}, key=lambda n: [lm.name for lm in
                                                                  self.layers].index(n))
            lines.append(f"{pe:>3} {self.rows_used(pe):>9} {cells:>10}  "
                         f"{', '.join(names) if names else '(idle)'}")
        lines.append("")
        lines.append(f"{'layer':<6} {'chunks':>6} {'partial sums':>12} {'positions':>9} "
                     f"{'slot bound':>10}")
        for lm in self.layers:
            lines.append(f"{lm.name:<6} {lm.n_chunks:>6} "
                         f"{'digital' if lm.n_chunks > 1 else '-':>12} {lm.positions:>9} "
                         f"{self.slot_bound(lm.name):>10}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "replication": self.config.replication,
            "group_pes": [list(g) for g in self.group_pes],
            "shared_pes": list(self.shared_pes),
            "layers": [{**lm.__dict__, "group_ranges": [list(r) for r in lm.group_ranges],
                        "out_hw": list(lm.out_hw)} for lm in self.layers],
            "blocks": [b.__dict__ for b in self.blocks],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)


def _layer_maps(config: SystemConfig, net: Network, replicate) -> list[LayerMap]:
    out = []
    for layer in net.weight_layers():
        out_shape = net.output_shape_of(layer.name)
        if isinstance(layer, Conv):
            per_ch = layer.k * layer.k
            # Whole channels per chunk where a channel's patch fits the bit lines; a larger
            # patch (5 x 5 on 16 lines) is cut into chunks of array_cols inputs.
            n_in = layer.in_ch * per_ch
            chunk = (config.array_cols // per_ch) * per_ch if per_ch <= config.array_cols \
                else config.array_cols
            n_out, hw = layer.out_ch, (out_shape[1], out_shape[2])
        else:
            n_in, chunk = layer.n_in, config.array_cols
            n_out, hw = layer.n_out, (1, 1)
        if 2 * n_out > config.array_rows:
            raise MappingError(
                f"layer {layer.name}: {n_out} outputs need {2 * n_out} source lines, more than "
                f"the array's {config.array_rows}")
        positions = hw[0] * hw[1]
        replicated = isinstance(layer, Conv) and (replicate is None or layer.name in replicate)
        k = config.replication if replicated else 1
        if k > positions:
            raise MappingError(f"layer {layer.name}: replication={k} exceeds its {positions} "
                               f"output positions")
        bounds = [(p * k // positions) for p in range(positions)]
        ranges = tuple((bounds.index(g), len(bounds) - bounds[::-1].index(g))
                       for g in range(k))
        out.append(LayerMap(layer.name, "conv" if isinstance(layer, Conv) else "dense", n_in,
                            n_out, chunk, -(-n_in // chunk), positions, hw, replicated, ranges))
    return out


@dataclass
class _Item:
    layer: str
    chunk: int
    rows: int
    load: float


def _place(items: list[_Item], n_pes: int, rows: int):
    """Place items on n_pes arrays, giving the heaviest item 1..n_pes copies.

    Returns (max load, [(item, copy, pe)]) of the best placement, or None if none fits.
    """
    if not items:
        return 0.0, []
    items = sorted(items, key=lambda it: (-it.load, -it.rows, it.layer, it.chunk))
    heavy, rest = items[0], items[1:]
    # Exact shortcuts (the result is the one trying every count of copies gives), without
    # which a network of hundreds of chunks (ResNet-20) takes hours to map:
    # * no placement's largest load is below the next item's load or the mean load, so a
    #   placement at that floor cannot be beaten by the 1e-9 margin below;
    # * copies past the PEs' spare rows cannot fit;
    # * every load is positive, so the items after the heavy copies take the empty PEs first,
    #   one each (an empty PE's load 0 is the least); after them no PE has fewer rows used
    #   than the fewest those items have, and a later item needing more rows than are left
    #   cannot be placed.
    floor = max(rest[0].load if rest else 0.0, sum(it.load for it in items) / n_pes)
    spare = n_pes * rows - sum(it.rows for it in items)
    spread = all(it.load > 0 for it in items)
    fewest = list(itertools.accumulate((it.rows for it in rest), min))
    most_after = list(itertools.accumulate((it.rows for it in reversed(rest)), max))[::-1]

    def doomed(n_copies: int) -> bool:
        k = n_pes - n_copies  # the rest items that take the empty PEs
        if not spread or k >= len(rest):
            return False
        least = min(heavy.rows, fewest[k - 1]) if k else heavy.rows
        return most_after[k] > rows - least

    best = None
    for n_copies in range(1, n_pes + 1):
        if (n_copies - 1) * heavy.rows > spare:
            break
        if doomed(n_copies):
            continue
        load = [0.0] * n_pes
        used = [0] * n_pes
        placed = []
        ok = True
        for c in range(n_copies):
            if heavy.rows > rows:
                ok = False
                break
            load[c] += heavy.load / n_copies
            used[c] += heavy.rows
            placed.append((heavy, c, c))
        for it in rest if ok else []:
            fits = [p for p in range(n_pes) if used[p] + it.rows <= rows]
            if not fits:
                ok = False
                break
            p = min(fits, key=lambda p: (load[p], used[p], p))
            load[p] += it.load
            used[p] += it.rows
            placed.append((it, 0, p))
        if ok and (best is None or max(load) < best[0] - 1e-9):
            best = (max(load), placed)
        if best is not None and best[0] <= floor:
            break  # nothing can beat it by the margin above
    return best


def _pack(items: list[_Item], rows: int, limit: int, what: str):
    need = -(-sum(it.rows for it in items) // rows)
    for n in range(max(need, 1), limit + 1):
        placed = _place(items, n, rows)
        if placed is not None:
            return n, placed[1]
    raise MappingError(f"{what} needs {sum(it.rows for it in items)} source lines and does not "
                       f"fit in the {limit} PE(s) available for it")


def _items(config: SystemConfig, layers: list[LayerMap]):
    conv_items, shared_items = [], []
    for lm in layers:
        for c in range(lm.n_chunks):
            it = _Item(lm.name, c, 2 * lm.n_out, lm.positions / (config.replication
                                                                 if lm.replicated else 1))
            (conv_items if lm.replicated else shared_items).append(it)
    return conv_items, shared_items


def pes_needed(config: SystemConfig, net: Network, replicate=None) -> int:
    """PEs the network needs at the configuration's array size and replication (the number
    of PEs of `config` aside): the shared layers' PEs plus `replication` x one group's."""
    layers = _layer_maps(config, net, _check_replicate(net, replicate))
    conv_items, shared_items = _items(config, layers)
    rows = config.array_rows
    many = sum(it.rows for it in conv_items + shared_items) // rows + len(conv_items) + \
        len(shared_items) + 1
    n_shared = _pack(shared_items, rows, many, "")[0] if shared_items else 0
    n_group = _pack(conv_items, rows, many, "")[0] if conv_items else 0
    return n_shared + config.replication * n_group


def _check_replicate(net: Network, replicate):
    if replicate is None:
        return None
    convs = [layer.name for layer in net.weight_layers() if isinstance(layer, Conv)]
    bad = sorted(set(replicate) - set(convs))
    if bad:
        raise MappingError(f"replicate: {bad} are not conv layers of {net.name!r} "
                           f"(its conv layers: {convs})")
    return tuple(n for n in convs if n in set(replicate))


def map_network(config: SystemConfig, net: Network, replicate=None) -> Mapping:
    """Map `net` onto the arrays of `config`, or raise MappingError saying why not.

    `replicate` names the conv layers that get `config.replication` groups of PEs (default:
    every conv layer); the other layers are shared, each block once."""
    replicate = _check_replicate(net, replicate)
    try:
        return _map(config, net, replicate)
    except MappingError as e:
        try:
            need = pes_needed(config, net, replicate)
        except MappingError:
            raise e from None
        if need <= config.n_pe:
            raise
        raise MappingError(f"network {net.name!r} needs {need} PEs of {config.array_rows} x "
                           f"{config.array_cols} at replication {config.replication}, the "
                           f"configuration has {config.n_pe} ({e})") from None


def _map(config: SystemConfig, net: Network, replicate) -> Mapping:
    layers = _layer_maps(config, net, replicate)
    conv_items, dense_items = _items(config, layers)
    k = config.replication
    n_dense, dense_place = (0, []) if not dense_items else _pack(
        dense_items, config.array_rows, config.n_pe, "the shared layers")
    room = config.n_pe - n_dense
    if conv_items:
        if room < k:
            raise MappingError(f"replication={k} needs at least {k} PEs for the conv groups, but "
                               f"only {room} of {config.n_pe} are left after the shared layers")
        n_group, conv_place = _pack(conv_items, config.array_rows, room // k,
                                    f"one group of conv kernels (replication={k})")
    else:
        n_group, conv_place = 0, []

    order = {lm.name: i for i, lm in enumerate(layers)}
    raw = []  # (layer order, chunk, group, copy, pe, rows, layer)
    for g in range(k if conv_items else 0):
        for it, copy, p in conv_place:
            raw.append((order[it.layer], it.chunk, g, copy, g * n_group + p, it))
    base = k * n_group
    for it, copy, p in dense_place:
        raw.append((order[it.layer], it.chunk, 0, copy, base + p, it))
    raw.sort(key=lambda r: (r[0], r[2], r[1], r[3]))
    next_row = [0] * config.n_pe
    blocks = []
    for _, chunk, g, copy, pe, it in raw:
        lm = layers[order[it.layer]]
        in0, n_in = lm.chunk_inputs(chunk)
        blocks.append(Block(len(blocks), it.layer, chunk, g, copy, pe, next_row[pe], lm.n_out,
                            in0, n_in))
        next_row[pe] += it.rows
    group_pes = tuple(tuple(range(g * n_group, (g + 1) * n_group)) for g in range(k)) \
        if conv_items else ()
    shared = tuple(range(base, base + n_dense))
    return Mapping(config, net, tuple(layers), tuple(blocks), group_pes, shared)
