"""Counter-based read noise: a pure function of (seed, PE, read, slot, line).

Read noise cannot come from a sequential generator, because the RTL and the golden model
visit reads in different orders. Instead every line read is keyed by where it happens, and
hashed; both sides compute the same hash. See docs/datapath.md, "Read noise".
"""

from __future__ import annotations

import numpy as np

M32 = 0xFFFFFFFF
GOLDEN32 = 0x9E3779B9
MIX_MUL1 = 0x7FEB352D
MIX_MUL2 = 0x846CA68B
NOISE_FRAC_BITS = 22


def mix32(x):
    """The 'lowbias32' integer hash (C. Wellons): a bijection on 32-bit words."""
    return mix32_inplace(np.array(x, dtype=np.uint32))


def mix32_inplace(x: np.ndarray, scratch: np.ndarray | None = None,
                  first: bool = True) -> np.ndarray:
    """mix32 of a uint32 array, overwriting it (the fast models hash millions of reads;
    `scratch`, of x's shape, saves the temporaries). With first=False, x has had the first
    xor-shift already: it is linear over xor, so a caller can apply it to the two halves of a
    key before combining them."""
    t = np.empty_like(x) if scratch is None else scratch
    if first:
        np.right_shift(x, np.uint32(16), out=t)
        x ^= t
    x *= np.uint32(MIX_MUL1)      # wrap-around multiplication is the point
    np.right_shift(x, np.uint32(15), out=t)
    x ^= t
    x *= np.uint32(MIX_MUL2)
    np.right_shift(x, np.uint32(16), out=t)
    x ^= t
    return x


def pe_seed(noise_seed: int, pe: int) -> int:
    """Each PE's macro has its own seed, derived from the chip's noise seed."""
    return int(mix32((noise_seed ^ ((GOLDEN32 * (pe + 1)) & M32)) & M32))


def read_nonce(image_id, layer_index: int, position, chunk: int):
    """The key of one array read (one input vector) of the chip-level schedule."""
    img = mix32(np.asarray(image_id, dtype=np.uint64) & M32)
    pos = np.asarray(position, dtype=np.uint32)
    key = (np.uint32(layer_index) << np.uint32(28)) ^ (pos << np.uint32(8)) ^ np.uint32(chunk)
    return mix32(img ^ key)


def line_hash(seed: int, nonce, slot, row):
    """Hash of one line read: nonce (any shape) broadcast against slot and row."""
    inner = mix32(np.uint32(seed) ^ ((np.asarray(slot, dtype=np.uint32) << np.uint32(8))
                                     | np.asarray(row, dtype=np.uint32)))
    return mix32(np.asarray(nonce, dtype=np.uint32) ^ inner)


def byte_sum(h):
    """Sum of the four bytes minus 510: integer, symmetric, roughly Gaussian (sigma ~ 147.8)."""
    h = np.asarray(h, dtype=np.uint32)
    s = (h & 0xFF) + ((h >> 8) & 0xFF) + ((h >> 16) & 0xFF) + (h >> 24)
    return s.astype(np.int64) - 510


BYTE_SUM_SIGMA = float(np.sqrt(4 * (256 ** 2 - 1) / 12))


def apply_read_noise(current, s, read_noise: int):
    """Noisy line current: max(0, I + floor(I * s * r / 2**22)), all integers."""
    current = np.asarray(current, dtype=np.int64)
    return np.maximum(current + ((current * s * read_noise) >> NOISE_FRAC_BITS), 0)


def read_noise_from_sigma(sigma_rel: float) -> int:
    """The integer amplitude r that gives a relative current noise of about `sigma_rel`."""
    return int(round(sigma_rel * 2 ** NOISE_FRAC_BITS / BYTE_SUM_SIGMA))
