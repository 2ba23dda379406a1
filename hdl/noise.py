"""Read noise in gateware: the counter-based hash of docs/datapath.md section 6.

The constants come from cim_spec.noise, the reference the RTL is compared against.
"""

from __future__ import annotations

from amaranth import Cat, Const, Mux, signed

from cim_spec.noise import MIX_MUL1, MIX_MUL2, NOISE_FRAC_BITS


def mix32(x):
    """lowbias32 on a 32-bit value (an Amaranth expression)."""
    x = x ^ (x >> 16)
    x = (x * MIX_MUL1)[:32]
    x = x ^ (x >> 15)
    x = (x * MIX_MUL2)[:32]
    return x ^ (x >> 16)


def line_hash(pe_seed: int, nonce, slot, row):
    """mix32(nonce ^ mix32(pe_seed ^ ((slot << 8) | row))), for rows of at most 8 bits
    (PEParams refuses larger arrays with read noise: the row would overlap the slot)."""
    if len(row) > 8:
        raise ValueError(f"a {len(row)}-bit row does not fit the 8-bit row field of the key")
    key = Cat(row, Const(0, 8 - len(row)), slot, Const(0, 24 - len(slot)))
    return mix32(nonce ^ mix32(Const(pe_seed, 32) ^ key))


def noisy_current(current, h, read_noise: int):
    """max(0, I + floor(I * s * r / 2**22)), s = sum of the bytes of h minus 510."""
    s = (h[0:8] + h[8:16] + h[16:24] + h[24:32]) - 510
    # `current` is unsigned; mixed with signed operands Amaranth widens it by a sign bit.
    # (.as_signed() would read its top bit as the sign when it is exactly as wide as needed.)
    cur = current.as_unsigned()
    term = (cur * s * Const(read_noise, signed(15))) >> NOISE_FRAC_BITS
    total = cur + term
    return Mux(total < 0, 0, total)
