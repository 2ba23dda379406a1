"""The chip program: what is written into a chip, and the numbers its periphery needs.

A :class:`Chip` is every cell's conductance code plus the digital parameters
(:class:`Digital`) of docs/datapath.md; a :class:`Program` is what the transfer aims for: the
weight levels, their ideal target codes and the scales that tie integers back to the float
network. The golden model computes on a Chip, the gateware is generated from one, and the
chip-state format stores one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .config import SystemConfig
from .mapping import Mapping


@dataclass(frozen=True)
class Digital:
    """Digital parameters of the periphery, per weight layer (see docs/datapath.md)."""

    adc_gain: dict[str, int]
    requant_mult: dict[str, int] = field(default_factory=dict)
    requant_shift: dict[str, int] = field(default_factory=dict)
    read_noise: int = 0
    noise_seed: int = 0
    # Per weight layer with a bias: one integer per output, added to its partial sums.
    bias: dict[str, tuple[int, ...]] = field(default_factory=dict)

    def check(self, mapping: Mapping) -> None:
        layers = [lm.name for lm in mapping.layers]
        for name in layers:
            g = self.adc_gain.get(name)
            if not isinstance(g, (int, np.integer)) or g < 1 or g >= 2 ** 32:
                raise ValueError(f"adc_gain[{name}] must be an integer in 1..2**32-1, got {g!r}")
        by_name = {layer.name: layer for layer in mapping.network.layers}
        want_bias = {lm.name: lm.n_out for lm in mapping.layers if by_name[lm.name].bias}
        if set(self.bias) != set(want_bias):
            raise ValueError(f"bias must be given for exactly the layers {sorted(want_bias)}, "
                             f"got {sorted(self.bias)}")
        for name, n in want_bias.items():
            b = self.bias[name]
            if len(b) != n or not all(isinstance(v, (int, np.integer)) and -2 ** 31 <= v < 2 ** 31
                                      for v in b):
                raise ValueError(f"bias[{name}] must be {n} integers in -2**31..2**31-1")
        for name in requant_layers(mapping.network):
            m, s = self.requant_mult.get(name), self.requant_shift.get(name)
            if not isinstance(m, (int, np.integer)) or not 0 <= m < 2 ** 24:
                raise ValueError(f"requant_mult[{name}] must be an integer in 0..2**24-1, "
                                 f"got {m!r}")
            if not isinstance(s, (int, np.integer)) or not 1 <= s <= 40:
                raise ValueError(f"requant_shift[{name}] must be an integer in 1..40, got {s!r}")
        if not 0 <= self.read_noise < 2 ** 13:
            # 510 * 8191 < 2**22: the noise term stays below the current, which then fits in
            # one more bit than the noiseless current (docs/datapath.md, section 7).
            raise ValueError(f"read_noise must be in 0..8191 (a relative sigma of at most "
                             f"~29%), got {self.read_noise}")
        if not 0 <= self.noise_seed < 2 ** 32:
            raise ValueError(f"noise_seed must be a 32-bit unsigned integer, got "
                             f"{self.noise_seed}")


def requant_layers(net) -> list[str]:
    """Layers with a requantization (M, S): every weight layer but the last, and every add
    whose other operand is an unsigned activation map (the add scales it to its own scale;
    a signed operand is at that scale already; docs/datapath.md section 4)."""
    from .network import Add
    return [layer.name for layer in net.weight_layers()[:-1]] + \
        [layer.name for layer in net.layers
         if isinstance(layer, Add) and not net.is_signed(layer.other)]


@dataclass
class Chip:
    """A programmed chip: every cell's conductance code, plus the digital parameters."""

    mapping: Mapping
    conductance: np.ndarray          # (n_pe, array_rows, array_cols) integer codes
    digital: Digital

    def __post_init__(self):
        cfg = self.mapping.config
        shape = (cfg.n_pe, cfg.array_rows, cfg.array_cols)
        g = np.asarray(self.conductance)
        if g.shape != shape:
            raise ValueError(f"conductance array has shape {g.shape}, the configuration "
                             f"needs {shape}")
        if not np.issubdtype(g.dtype, np.integer):
            raise ValueError(f"conductance codes must be integers, got dtype {g.dtype}")
        if g.size and (g.min() < 0 or g.max() > cfg.code_max):
            raise ValueError(f"conductance codes must lie in 0..{cfg.code_max}, got "
                             f"{g.min()}..{g.max()}")
        self.conductance = g.astype(np.int64)
        self.digital.check(self.mapping)

    @property
    def config(self) -> SystemConfig:
        return self.mapping.config

    def block_conductance(self, block) -> np.ndarray:
        """Codes of one block: (2*n_out, n_in), row 2o positive, row 2o+1 negative."""
        return self.conductance[block.pe, block.row0:block.row0 + block.n_rows, :block.n_in]



@dataclass
class Program:
    """What the transfer programs: per-layer weight levels, per-cell target codes, digital."""

    levels: dict[str, np.ndarray]        # per weight layer: (n_out, n_in) ints in -w_max..w_max
    target: np.ndarray                   # (n_pe, rows, cols) conductance codes
    digital: Digital
    logit_scale: float                   # float logits = integer logits * logit_scale
    weight_scales: dict[str, float]
    input_scales: dict[str, float]       # scale of each weight layer's input activations

    def chip(self, mapping: Mapping) -> Chip:
        return Chip(mapping, self.target.copy(), self.digital)



def level_codes(levels: np.ndarray, cfg) -> np.ndarray:
    """(n_out, n_in) levels -> (2*n_out, n_in) target codes, row 2o = G+, row 2o+1 = G-."""
    levels = np.asarray(levels, dtype=np.int64)
    pos = np.vectorize(cfg.state_code)(np.maximum(levels, 0))
    neg = np.vectorize(cfg.state_code)(np.maximum(-levels, 0))
    out = np.empty((2 * levels.shape[0], levels.shape[1]), dtype=np.int64)
    out[0::2], out[1::2] = pos, neg
    return out


def target_conductance(mapping: Mapping, levels: dict[str, np.ndarray]) -> np.ndarray:
    """Every PE's target codes; cells no block uses stay at state 0 (g_min)."""
    cfg = mapping.config
    g = np.full((cfg.n_pe, cfg.array_rows, cfg.array_cols), cfg.state_code(0), dtype=np.int64)
    for b in mapping.blocks:
        g[b.pe, b.row0:b.row0 + b.n_rows, :b.n_in] = level_codes(
            levels[b.layer][:, b.in0:b.in0 + b.n_in], cfg)
    return g


# The host's pixels are 8-bit (docs/datapath.md section 0, "the first layer's input").
PIXEL_BITS = 8


def dac_inputs(pixels, input_bits: int) -> np.ndarray:
    """The first weight layer's inputs from 8-bit pixels: a DAC narrower than a pixel takes
    the pixel's top `input_bits` bits (``pixel >> (8 - input_bits)``), a DAC as wide or wider
    takes the pixel as it is. The host converts before it sends an image; the golden model
    converts the same way."""
    p = np.asarray(pixels)
    if input_bits >= PIXEL_BITS:
        return p
    return p >> (PIXEL_BITS - input_bits)


def input_step(input_bits: int) -> float:
    """The float value (pixel / 255) of one step of the first layer's input."""
    return 2.0 ** max(0, PIXEL_BITS - input_bits) / (2 ** PIXEL_BITS - 1)
