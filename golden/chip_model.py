"""The bit-accurate integer model of the chip: exactly what the hardware computes.

This module is the single numeric reference that the RTL matches bit for bit; the contract it
implements is written down in docs/datapath.md. All arithmetic is on integers; where float
BLAS is used for speed it is only on integers well below 2**24 (float32) or 2**53 (float64),
where it is exact.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

from cim_spec import noise
from cim_spec.config import SystemConfig
from cim_spec.network import Add, Conv, Dense, Pool, pool_out
from cim_spec.program import Chip, dac_inputs

from . import layer_plan
from .layer_plan import adc_convert  # noqa: F401 (part of this module's interface)

# How many threads `run` uses when its caller does not say: a process that already runs one
# task per core (a sweep's Dask worker) sets 1 for everything below it, hybrid training and
# calibration included, so its tasks do not fight over the cores.
_default_workers: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "chip_model_workers", default=None)


@contextlib.contextmanager
def thread_budget(workers: int | None):
    """Within this block, `run(..., workers=None)` uses `workers` threads (None: one per
    core)."""
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int)
                                or workers < 1):
        raise ValueError(f"workers must be an integer >= 1 or None, got {workers!r}")
    token = _default_workers.set(workers)
    try:
        yield
    finally:
        _default_workers.reset(token)


# ---------------------------------------------------------------------------------------------
# One array read: bit-serial slots, line currents, ADC, shift-and-add, differential pair.

def bit_planes(x: np.ndarray, bits: int) -> np.ndarray:
    """(..., n) unsigned inputs -> (..., bits, n) float32 0/1: slot k holds bit k."""
    x = np.asarray(x)
    if bits <= 8 and x.dtype == np.uint8:
        return np.ascontiguousarray(np.swapaxes(_bit_table(bits)[x], -1, -2))
    shifts = np.arange(bits, dtype=np.int64)
    return ((x.astype(np.int64)[..., None, :] >> shifts[:, None]) & 1).astype(np.float32)


def line_currents(x: np.ndarray, g: np.ndarray, bits: int) -> np.ndarray:
    """Per-slot line currents (..., bits, lines) of inputs (..., n) on codes g (lines, n)."""
    x, g = np.asarray(x), np.asarray(g)
    n = g.shape[-1]
    if n <= layer_plan.MAX_TABLE_INPUTS and x.ndim >= 1 and x.shape[-1] == n and x.size:
        # Few inputs: every pattern's currents from a table (the same integers).
        table = ((np.arange(2 ** n)[:, None] >> np.arange(n)) & 1) @ g.astype(np.int64).T
        return np.take(table.astype(np.float32), bit_patterns(x, bits), axis=0)
    planes = bit_planes(x, bits)
    n = planes.shape[-1]
    flat = planes.reshape(-1, n) @ np.asarray(g, dtype=np.float32).T
    return flat.reshape(*planes.shape[:-1], flat.shape[-1])


def read_block(x, g, gain: int, cfg: SystemConfig, *, read_noise: int = 0, seed: int = 0,
               nonce=None, row0: int = 0) -> np.ndarray:
    """Signed differential counts of one block for a batch of input vectors.

    x: (..., n_in) unsigned inputs; g: (2*n_out, n_in) codes. Returns (..., n_out) int64.
    With read noise, `nonce` (shape x.shape[:-1]) keys each read and `row0` is the block's
    first source line in its PE (the noise of a line depends on its physical row).
    """
    x = np.asarray(x)
    bits = cfg.input_bits
    cur = line_currents(x, g, bits)                      # (..., bits, lines), exact in f32
    lines = g.shape[0]
    if read_noise:
        if nonce is None:
            raise ValueError("read noise needs a nonce for every read")
        h = noise.line_hash(seed, np.asarray(nonce, dtype=np.uint32)[..., None, None],
                            np.arange(bits)[:, None], row0 + np.arange(lines)[None, :])
        cur = noise.apply_read_noise(cur.astype(np.int64), noise.byte_sum(h), read_noise)
        code = adc_convert(cur, gain, cfg).astype(np.float32)
    else:
        code = np.take(_adc_lut(gain, cfg), cur.astype(np.int32))
    # Shift-and-add and the differential subtraction are one linear map, exact in float32:
    # |sum| <= (2**B - 1) * (2**bits - 1) < 2**24 for B, bits <= 12.
    acc = code.reshape(*code.shape[:-2], bits * lines) @ _shift_sub_matrix(bits, lines)
    return acc.astype(np.int64)


@functools.cache
def _bit_table(bits: int) -> np.ndarray:
    return ((np.arange(256)[:, None] >> np.arange(bits)) & 1).astype(np.float32)


@functools.cache
def _shift_sub_matrix(bits: int, lines: int) -> np.ndarray:
    w = np.zeros((bits, lines, lines // 2), dtype=np.float32)
    for o in range(lines // 2):
        w[:, 2 * o, o] = 2.0 ** np.arange(bits)
        w[:, 2 * o + 1, o] = -(2.0 ** np.arange(bits))
    return w.reshape(bits * lines, lines // 2)


_LUTS: dict = {}


def _adc_lut(gain: int, cfg: SystemConfig) -> np.ndarray:
    key = (gain, cfg.adc_bits, cfg.adc_gain_frac_bits, cfg.current_max)
    lut = _LUTS.get(key)
    if lut is None:
        lut = adc_convert(np.arange(cfg.current_max + 1), gain, cfg).astype(np.float32)
        _LUTS[key] = lut
    return lut


# ---------------------------------------------------------------------------------------------
# Layers.

def conv_patches(a: np.ndarray, k: int, stride: int = 1, pad: int = 0) -> np.ndarray:
    """(N, C, H, W) -> (N, P, C*k*k) patch vectors, positions row-major, channel-major inputs;
    the map is padded with `pad` rows and columns of code 0 on every side."""
    if pad:
        a = np.pad(a, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    n, c, h, w = a.shape
    win = np.lib.stride_tricks.sliding_window_view(a, (k, k), axis=(2, 3))  # N,C,Ho,Wo,k,k
    win = win[:, :, ::stride, ::stride]
    ho, wo = win.shape[2], win.shape[3]
    return win.transpose(0, 2, 3, 1, 4, 5).reshape(n, ho * wo, c * k * k)


def rescale(v: np.ndarray, mult: int, shift: int) -> np.ndarray:
    """(v*M + 2**(S-1)) >> S on int64, the merger's rounding (arithmetic shift)."""
    return (np.asarray(v, dtype=np.int64) * mult + (1 << (shift - 1))) >> shift


def requantize(psum: np.ndarray, mult: int, shift: int, cfg: SystemConfig) -> np.ndarray:
    """ReLU and requantization to act_bits: clamp((psum*M + 2**(S-1)) >> S, 0, 2**A - 1)."""
    return np.clip(rescale(psum, mult, shift), 0, cfg.act_max)


def avg_pool(a: np.ndarray, k: int, stride: int, ceil: bool = True) -> np.ndarray:
    """Average pool of (N, C, H, W) unsigned codes: floor((sum + n // 2) / n) over the n
    elements of each (clipped) window, i.e. the mean rounded half up."""
    n_, c, h, w = a.shape
    ho, wo = pool_out(h, k, stride, ceil), pool_out(w, k, stride, ceil)
    ph, pw = max((ho - 1) * stride + k - h, 0), max((wo - 1) * stride + k - w, 0)
    padded = np.pad(a.astype(np.int64), ((0, 0), (0, 0), (0, ph), (0, pw)))
    ones = np.pad(np.ones((h, w), np.int64), ((0, ph), (0, pw)))
    total = np.zeros((n_, c, ho, wo), np.int64)
    count = np.zeros((ho, wo), np.int64)
    for dy in range(k):
        for dx in range(k):
            sl = (slice(dy, dy + stride * (ho - 1) + 1, stride),
                  slice(dx, dx + stride * (wo - 1) + 1, stride))
            total += padded[(slice(None), slice(None), *sl)]
            count += ones[sl]
    return ((total + count // 2) // count).astype(a.dtype)


def max_pool(a: np.ndarray, k: int, stride: int, ceil: bool = True) -> np.ndarray:
    """Max-pool of (N, C, H, W); ceil mode clips the windows at the border."""
    n, c, h, w = a.shape
    ho, wo = pool_out(h, k, stride, ceil), pool_out(w, k, stride, ceil)
    ph, pw = (ho - 1) * stride + k - h, (wo - 1) * stride + k - w
    # Padding with the minimum value never wins a max (activations are unsigned).
    padded = np.pad(a, ((0, 0), (0, 0), (0, max(ph, 0)), (0, max(pw, 0))), constant_values=0)
    # One elementwise maximum per window element: faster than reducing k x k windows.
    out = None
    for dy in range(k):
        for dx in range(k):
            v = padded[:, :, dy:dy + stride * (ho - 1) + 1:stride,
                       dx:dx + stride * (wo - 1) + 1:stride]
            out = v.copy() if out is None else np.maximum(out, v, out=out)
    return out


def layer_psums(chip: Chip, layer_index: int, name: str, x: np.ndarray,
                image_ids: np.ndarray | None) -> np.ndarray:
    """Partial sums over all chunks of a weight layer: x (N, P, n_in) -> (N, P, n_out).

    All blocks of the layer are read at once from the chip's tables (golden.layer_plan). Line
    reads are laid out (chunk, slot, image, position), so that the shift-and-add and the sum
    over chunks add whole rows. With read noise only the reads whose bit pattern is not all
    zero are hashed: a zero current stays zero (the noise term is proportional to it).
    """
    p = layer_plan.plan(chip, layer_index, name)
    x = np.asarray(x)
    n, positions = x.shape[:2]
    m = n * positions
    reads = p.n_chunks * p.bits
    r = chip.digital.read_noise
    if p.table:
        pat = np.ascontiguousarray(_patterns(x, p).reshape(m, reads).T)    # (C*bits, m)
        if not r:
            off = (p.blk.T[:, None, :] * p.bits + np.arange(p.bits)[None, :, None]) << p.chunk
            idx = pat.reshape(p.n_chunks, p.bits, n, positions) + off[:, :, None, :]
            acc = np.take(p.signed, idx.reshape(reads, m), axis=0).sum(axis=0)
            return acc.astype(np.int64).reshape(n, positions, p.n_out)
        flat = pat.reshape(-1)
        rows = np.flatnonzero(flat)
    else:
        cur = _currents(x, p).reshape(m, reads, p.lines).transpose(1, 0, 2)
        flat = np.ascontiguousarray(cur).reshape(-1, p.lines)         # (C*bits*m, lines)
        if not r:
            codes = p.lut[flat] if p.lut is not None else adc_convert(
                flat, chip.digital.adc_gain[name], chip.config).astype(p.acc_dtype)
            diff = (codes[:, 0::2] - codes[:, 1::2]).reshape(p.n_chunks, p.bits, m, p.n_out)
            acc = (diff * p.pow2[None, :, None, None]).sum(axis=(0, 1))
            return acc.astype(np.int64).reshape(n, positions, p.n_out)
        rows = np.flatnonzero(flat.any(axis=1))
    if image_ids is None:
        raise ValueError("read noise needs the image ids")
    ck, q = np.divmod(rows, m)                  # (chunk, slot) and (image, position)
    c, k = np.divmod(ck, p.bits)
    blk = p.blk[q % positions, c]
    src, src_rows = (p.currents, (blk << p.chunk) + flat[rows]) if p.table else (flat, rows)
    nonce = noise.read_nonce(np.asarray(image_ids)[:, None, None], layer_index,
                             np.arange(positions)[None, :, None],
                             np.arange(p.n_chunks)[None, None, :]).reshape(-1)
    nonce ^= nonce >> np.uint32(16)             # mix32's first step, as p.inner has had it
    read = q * p.n_chunks + c
    key_rows = blk * p.bits + k
    out = np.zeros((reads * m, p.n_out), dtype=p.acc_dtype)
    for s in range(0, len(rows), NOISE_ROWS):
        sl = slice(s, s + NOISE_ROWS)
        codes = _noisy_codes(np.take(src, src_rows[sl], axis=0), key_rows[sl],
                             nonce[read[sl]], r, chip, name, p)
        d = codes[:, 0::2] - codes[:, 1::2]
        d *= p.pow2[k[sl]][:, None]
        out[rows[sl]] = d
    acc = out.reshape(reads, m, p.n_out).sum(axis=0)     # exact in acc_dtype
    return acc.astype(np.int64).reshape(n, positions, p.n_out)


# Rows of line reads per pass of the noise arithmetic: its temporaries stay in cache.
NOISE_ROWS = 4096


def _noisy_codes(cur, key_rows, nonce, r: int, chip: Chip, name: str, p) -> np.ndarray:
    """ADC codes (rows, lines) of noisy line reads, as noise.line_hash, noise.byte_sum and
    noise.apply_read_noise define them, computed in place."""
    h = np.take(p.inner, key_rows, axis=0)
    h ^= nonce[:, None]
    t = np.empty_like(h)
    noise.mix32_inplace(h, t, first=False)
    # byte_sum: two bytes per 16-bit lane, then the lanes: (a * 0x10001) >> 16 is hi + lo.
    np.right_shift(h, np.uint32(8), out=t)
    t &= np.uint32(0x00FF00FF)
    h &= np.uint32(0x00FF00FF)
    h += t
    h *= np.uint32(0x10001)
    h >>= np.uint32(16)
    if p.noise32:
        s, c = h.view(np.int32), cur.astype(np.int32, copy=False)   # cur is a fresh gather
    else:
        s, c = h.astype(np.int64), cur.astype(np.int64)
    s -= 510
    s *= c
    s *= r
    s >>= noise.NOISE_FRAC_BITS
    c += s
    if p.lut is not None:
        return np.take(p.lut, c)      # its last entry covers a current below zero
    np.maximum(c, 0, out=c)
    return adc_convert(c, chip.digital.adc_gain[name], chip.config).astype(p.acc_dtype)


def _patterns(x: np.ndarray, p) -> np.ndarray:
    """Bit patterns (N, P, C, bits) of a layer's chunks (zero-padded past its inputs)."""
    n, positions, n_in = x.shape
    width = p.n_chunks * p.chunk
    if n_in < width:
        x = np.concatenate([x, np.zeros((n, positions, width - n_in), x.dtype)], axis=2)
    return bit_patterns(x.reshape(n, positions, p.n_chunks, p.chunk), p.bits)


def bit_patterns(x: np.ndarray, bits: int) -> np.ndarray:
    """(..., n) unsigned inputs, n <= 16 -> (..., bits) int64: bit i of pattern k is bit k of
    input i (the inputs a slot drives)."""
    n = x.shape[-1]
    if x.dtype == np.uint8 and bits <= 8:
        # Each input byte spreads its bits into 16-bit lanes (lane k holds bit k), shifted
        # by the input's place; lanes never carry, so ORs build all patterns at once.
        table = _spread_table(bits)
        words = np.take(table, x[..., 0], axis=0)
        for i in range(1, n):
            words |= np.take(table, x[..., i], axis=0) << np.uint64(i)
        return words.view("<u2")[..., :bits].astype(np.int64)
    x = x.astype(np.int64)
    ks = np.arange(bits)
    pat = np.zeros((*x.shape[:-1], bits), dtype=np.int64)
    for i in range(n):
        pat |= ((x[..., i, None] >> ks) & 1) << i
    return pat


@functools.cache
def _spread_table(bits: int) -> np.ndarray:
    words = -(-bits // 4)
    t = np.zeros((256, words), dtype="<u8")
    v = np.arange(256, dtype=np.uint64)
    for k in range(bits):
        t[:, k // 4] |= ((v >> np.uint64(k)) & np.uint64(1)) << np.uint64(16 * (k % 4))
    return t


def _currents(x: np.ndarray, p) -> np.ndarray:
    """Line currents (N, P, C, bits, lines) int64 by bit-plane matrix products, per block."""
    n, positions = x.shape[:2]
    out = np.zeros((n, positions, p.n_chunks, p.bits, p.lines), dtype=np.int64)
    for g, (pos, c, in0, n_in) in zip(p.g, p.in_slices, strict=True):
        if pos.size:
            planes = bit_planes(x[:, pos, in0:in0 + n_in], p.bits)
            out[:, pos, c] = planes @ g[:, :n_in].T
    return out


@dataclass
class RunResult:
    logits: np.ndarray                  # (N, n_classes) int64
    trace: dict[str, np.ndarray] | None  # per layer outputs, when asked for

    @property
    def predictions(self) -> np.ndarray:
        return np.argmax(self.logits, axis=1)


def check_images(images, shape) -> np.ndarray:
    """Validate a batch of 8-bit images against the network's (C, H, W) input shape."""
    a = np.asarray(images)
    c, h, w = shape
    if a.ndim == 3 and c == 1:
        a = a[:, None]
    if a.ndim != 4 or a.shape[1:] != (c, h, w):
        raise ValueError(f"images must have shape (N, {h}, {w}) or (N, {c}, {h}, {w}), got "
                         f"{a.shape}")
    if a.dtype != np.uint8:
        if not np.issubdtype(a.dtype, np.integer) or (a.size and (a.min() < 0 or a.max() > 255)):
            raise ValueError(f"images must be 8-bit unsigned pixels, got dtype {a.dtype}")
        a = a.astype(np.uint8)
    return a


def run(chip: Chip, images, image_ids=None, trace: bool = False, batch: int = 128,
        workers: int | None = None) -> RunResult:
    """Run a batch of images through the chip; returns the integer logits."""
    net = chip.mapping.network
    images = dac_inputs(check_images(images, net.input_shape), chip.config.input_bits)
    n = images.shape[0]
    ids = np.arange(n, dtype=np.int64) if image_ids is None else np.asarray(image_ids, np.int64)
    if ids.shape != (n,):
        raise ValueError(f"image_ids must have shape ({n},), got {ids.shape}")
    starts = range(0, n, batch)
    for i, layer in enumerate(net.weight_layers()):   # the tables, before the threads start
        layer_plan.plan(chip, i, layer.name)
    workers = workers or _default_workers.get() or os.cpu_count() or 1
    workers = max(1, min(workers, len(starts)))

    results = _map_batches(
        lambda s: _run_batch(chip, images[s:s + batch], ids[s:s + batch], trace), starts,
        workers)
    logits = [r[0] for r in results]
    traces = [r[1] for r in results]
    tr = None
    if trace:
        tr = {k: np.concatenate([t[k] for t in traces]) for k in traces[0]} if n else {}
    n_cls = net.layers[-1].n_out
    return RunResult(np.concatenate(logits) if n else np.zeros((0, n_cls), np.int64), tr)


def run_layer(chip: Chip, i: int, a: np.ndarray, other: np.ndarray | None = None,
              image_ids=None, batch: int = 128, workers: int | None = None) -> np.ndarray:
    """:func:`layer_output` of layer `i` for a whole set of images (`a`: the map it reads,
    `other`: an add's other operand), in batches on threads as :func:`run` does."""
    n = a.shape[0]
    ids = np.arange(n, dtype=np.int64) if image_ids is None else np.asarray(image_ids, np.int64)
    layer = chip.mapping.network.layers[i]
    if isinstance(layer, (Conv, Dense)):   # the tables, before the threads start
        layer_plan.plan(chip, [w.name for w in chip.mapping.network.weight_layers()]
                        .index(layer.name), layer.name)
    starts = range(0, n, batch)
    workers = max(1, min(workers or _default_workers.get() or os.cpu_count() or 1,
                         len(starts)))

    def one(s):
        sl = slice(s, s + batch)
        return layer_output(chip, i, a[sl], None if other is None else other[sl], ids[sl])

    return np.concatenate(_map_batches(one, starts, workers))


def _map_batches(one, starts, workers: int) -> list:
    """`one(start)` for every batch start, in order. Batches run on threads (numpy releases
    the GIL); BLAS on each is single-threaded, which is faster for these skinny matrices than
    letting two thread pools fight for the cores."""
    with threadpool_limits(1, user_api="blas"):
        if workers == 1:
            return [one(s) for s in starts]
        with ThreadPoolExecutor(workers) as pool:
            return list(pool.map(one, starts))


def _run_batch(chip: Chip, image: np.ndarray, ids: np.ndarray, trace: bool):
    net = chip.mapping.network
    outs: dict[str, np.ndarray] = {}
    a = image
    for i, layer in enumerate(net.layers):
        src = net.source(i)
        other = outs[layer.other] if isinstance(layer, Add) else None
        a = layer_output(chip, i, image if src is None else outs[src], other, ids)
        outs[layer.name] = a
    return a, ({k: v.copy() for k, v in outs.items()} if trace else {})


def layer_output(chip: Chip, i: int, a: np.ndarray, other: np.ndarray | None,
                 ids: np.ndarray) -> np.ndarray:
    """Output of layer `i` of the network for the map `a` it reads (the DAC inputs for the
    first layer) and, for an add, the `other` map; the logits for the last weight layer.
    Images are independent: any split of a batch gives the same outputs."""
    net, cfg, dig = chip.mapping.network, chip.config, chip.digital
    layer = net.layers[i]
    # Activations wider than a byte must not wrap (the contract clamps at act_max).
    act = np.uint8 if cfg.act_bits <= 8 else np.uint16
    n = a.shape[0]
    if isinstance(layer, (Conv, Dense)):
        weight_names = [w.name for w in net.weight_layers()]
        li = weight_names.index(layer.name)
        if isinstance(layer, Conv):
            x = conv_patches(a, layer.k, layer.stride, layer.pad)
        else:
            x = a.reshape(n, 1, -1)
        psum = layer_psums(chip, li, layer.name, x, ids)       # (N, P, n_out)
        if layer.bias:
            psum = psum + np.asarray(dig.bias[layer.name], dtype=np.int64)
        if layer.name == weight_names[-1]:
            return psum[:, 0, :]
        m, s = dig.requant_mult[layer.name], dig.requant_shift[layer.name]
        # Without ReLU the rescaled sum stays signed, A+1 bits with the sign, for the add
        # that reads it.
        q = requantize(psum, m, s, cfg).astype(act) if layer.relu else \
            np.clip(rescale(psum, m, s), -cfg.act_max, cfg.act_max)
        if isinstance(layer, Conv):
            ho, wo = chip.mapping.layer(layer.name).out_hw
            return q.transpose(0, 2, 1).reshape(n, layer.out_ch, ho, wo)
        return q[:, 0, :]
    if isinstance(layer, Pool):
        return (max_pool if layer.mode == "max" else avg_pool)(a, layer.k, layer.stride,
                                                               layer.ceil)
    if isinstance(layer, Add):
        if not net.is_signed(layer.other):   # an activation map: to the add's scale
            other = rescale(other, dig.requant_mult[layer.name], dig.requant_shift[layer.name])
        return np.clip(a + other, 0, cfg.act_max).astype(act)
    raise TypeError(f"unknown layer type {type(layer).__name__}")
