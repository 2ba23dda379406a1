"""What one image of a mapped network does, counted: array reads, conversions, digital ops.

`network_events(mapping)` counts the events of one image of any network the project maps
(`cim_spec.mapping.map_network`), from the mapping and the network alone, no simulation: the
same reads the golden model (golden/chip_model.py) and the RTL make. `cim_flows.energy`
prices them. Per read of a block (one input vector, all its bit slots):

* every slot samples and converts each of the block's ``2 * n_out`` source lines and
  shift-adds its code, whatever the inputs;
* the bit lines of a conv's zero padding carry a known code 0: the DAC pulses the lines whose
  input bit is set (hdl/dac.py), so a padded line is never pulsed, draws no cell current and
  is not fetched from the buffer (the feeder substitutes the 0, docs/datapath.md 4a). Every
  other bit line counts as driven in every slot (the model prices the benchmark's average
  input activity, not the actual bits).

Digital work per output: the partial-sum adds across chunks, the bias add, the requantization
of every weight layer but the logits (ReLU or the symmetric clamp); per pooled output and
channel the max-pool's comparisons, or the average pool's adds (the window's sum and the
rounding term) and its one constant-reciprocal multiply (hdl/pool.py); per element of a
residual add the other map's fetch, its rescale multiply (when it is an activation map on its
own scale), the add and the clamp.

Pools and adds are booked to the weight layer whose output they read (through pools and adds):
the RTL fuses them into that layer's merger and pooling writer. A pool of the network's input
has its own entry.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np

from cim_spec.config import SystemConfig
from cim_spec.network import Add, Conv, Dense, Pool, pool_out


@dataclass
class Events:
    """What happened, counted; energy is linear in every field."""

    slots: int = 0               # array read slots (one input bit-plane on one block)
    cell_slots: int = 0          # cells on selected lines x driven bit lines, summed over slots
    input_line_slots: int = 0    # bit lines driven, summed over slots
    output_line_slots: int = 0   # source lines multiplexed and sampled, summed over slots
    conversions: int = 0         # ADC conversions
    shift_adds: int = 0          # ADC codes shifted into an accumulator
    psum_adds: int = 0           # partial sums added across chunks
    bias_adds: int = 0           # biases added to partial sums
    requants: int = 0            # activations requantized (multiply, round, clamp)
    pool_compares: int = 0       # max-pool comparisons
    avg_adds: int = 0            # average pool: window sums' adds and the rounding add
    avg_mults: int = 0           # average pool: the division as a constant-reciprocal multiply
    res_rescales: int = 0        # residual add: the other map rescaled (multiply, round)
    res_adds: int = 0            # residual add: the add and the clamp
    buffer_bytes: int = 0        # feature-map buffer bytes read or written
    macs: int = 0                # useful multiply-accumulates (2 ops each)

    def __add__(self, other: Events) -> Events:
        return Events(**{f.name: getattr(self, f.name) + getattr(other, f.name)
                         for f in fields(self)})

    @property
    def ops(self) -> int:
        return 2 * self.macs

    def to_dict(self) -> dict:
        return {**asdict(self), "ops": self.ops}


def total(per_layer: dict[str, Events]) -> Events:
    return sum(per_layer.values(), Events())


def pool_windows(in_hw: tuple[int, int], k: int, stride: int, ceil: bool = True) -> np.ndarray:
    """Sizes of the pool's (clipped) windows, (H_out, W_out): rows x columns inside the map."""
    h, w = in_hw
    ho, wo = pool_out(h, k, stride, ceil), pool_out(w, k, stride, ceil)
    rows = np.minimum(np.arange(ho) * stride + k, h) - np.arange(ho) * stride
    cols = np.minimum(np.arange(wo) * stride + k, w) - np.arange(wo) * stride
    return rows[:, None] * cols[None, :]


def inside_inputs(layer: Conv, in_hw: tuple[int, int]) -> np.ndarray:
    """(positions, in_ch * k * k) bool: which inputs of each output position's patch vector lie
    inside the map (False: zero padding). Element ``c*k*k + dy*k + dx`` of position
    ``y * W_out + x`` reads map row ``y*s + dy - p``, column ``x*s + dx - p``."""
    h, w = in_hw
    k, s, p = layer.k, layer.stride, layer.pad
    ho, wo = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    ys = np.arange(ho)[:, None] * s + np.arange(k)[None, :] - p          # (ho, k)
    xs = np.arange(wo)[:, None] * s + np.arange(k)[None, :] - p          # (wo, k)
    iy, ix = (ys >= 0) & (ys < h), (xs >= 0) & (xs < w)
    win = iy[:, None, :, None] & ix[None, :, None, :]                    # (ho, wo, k, k)
    return np.tile(win.reshape(ho * wo, k * k), (1, layer.in_ch))


def _weight_events(mapping, layer, bits: int, last: bool) -> Events:
    net = mapping.network
    lm = mapping.layer(layer.name)
    assign = mapping.assign(lm.name)                                     # (positions, chunks)
    if isinstance(layer, Conv):
        c, h, w = net.input_shape_of(layer.name)
        inside = inside_inputs(layer, (h, w))
    else:
        inside = np.ones((1, lm.n_in), dtype=bool)
    ev = Events(macs=lm.positions * lm.n_in * lm.n_out)
    for b in mapping.blocks_of(lm.name):
        at = assign[:, b.chunk] == b.id                                  # positions it reads
        reads = int(at.sum())
        driven = int(inside[at, b.in0:b.in0 + b.n_in].sum())             # summed over reads
        ev.slots += reads * bits
        ev.cell_slots += driven * bits * b.n_rows
        ev.input_line_slots += driven * bits
        ev.output_line_slots += reads * bits * b.n_rows
        ev.conversions += reads * bits * b.n_rows
        ev.shift_adds += reads * bits * b.n_rows
        ev.buffer_bytes += driven                                        # operands fetched
    ev.psum_adds = lm.positions * lm.n_out * (lm.n_chunks - 1)
    if layer.bias:
        ev.bias_adds = lm.positions * lm.n_out
    if not last:
        ev.requants = lm.positions * lm.n_out
        ev.buffer_bytes += ev.requants                                   # activations stored
    return ev


def network_events(mapping) -> dict[str, Events]:
    """Events of one image of `mapping.network` on `mapping`, per weight layer (pools and adds
    booked to the weight layer they follow), in the network's order."""
    net, bits = mapping.network, mapping.config.input_bits
    out: dict[str, Events] = {}
    owner: dict[str, str] = {}
    for i, layer in enumerate(net.layers):
        if isinstance(layer, (Conv, Dense)):
            out[layer.name] = _weight_events(mapping, layer, bits, layer is net.layers[-1])
            owner[layer.name] = layer.name
            continue
        src = net.source(i)
        key = owner[src] if src is not None else layer.name
        owner[layer.name] = key
        ev = out.setdefault(key, Events())
        c, h, w = net.input_shape_of(layer.name)
        if isinstance(layer, Pool):
            sizes = pool_windows((h, w), layer.k, layer.stride, layer.ceil)
            if layer.mode == "max":
                ev.pool_compares += c * int((sizes - 1).sum())
            else:
                ev.avg_adds += c * int(sizes.sum())
                ev.avg_mults += c * sizes.size
        elif isinstance(layer, Add):
            n = c * h * w
            ev.buffer_bytes += n                                         # the other map
            if not net.is_signed(layer.other):
                ev.res_rescales += n
            ev.res_adds += n
    return out


def slot_cycles(cfg: SystemConfig, lines: int) -> int:
    """Cycles of one read slot (as hdl.params.PEParams.slot_cycles)."""
    return max(cfg.pulse_cycles, -(-lines // cfg.adcs_per_pe) * cfg.adc_conv_cycles + 1)


def mapping_cycles(mapping) -> dict[str, int]:
    """Lower bound on cycles per image per layer: the busiest PE's slots, layers in turn."""
    cfg = mapping.config
    out = {}
    for lm in mapping.layers:
        lines = max(b.n_rows for b in mapping.blocks_of(lm.name))
        out[lm.name] = mapping.slot_bound(lm.name) * slot_cycles(cfg, lines)
    return out
