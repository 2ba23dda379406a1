"""The bit-accurate integer model of the chip: exactly what the hardware computes.

This module is the single numeric reference that the RTL matches bit for bit; the contract it
implements is written down in docs/datapath.md. All arithmetic is on integers; where float
BLAS is used for speed it is only on integers well below 2**24 (float32) or 2**53 (float64),
where it is exact.
"""

from __future__ import annotations

import functools
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

from cim_spec import noise
from cim_spec.config import SystemConfig
from cim_spec.network import Conv, Dense, Pool
from cim_spec.program import Chip

# ---------------------------------------------------------------------------------------------
# One array read: bit-serial slots, line currents, ADC, shift-and-add, differential pair.

def adc_convert(current, gain: int, cfg: SystemConfig):
    """ADC code of an integer line current: min((I * gain) >> F, 2**B - 1)."""
    current = np.asarray(current, dtype=np.int64)
    return np.minimum((current * gain) >> cfg.adc_gain_frac_bits, cfg.adc_max)


def bit_planes(x: np.ndarray, bits: int) -> np.ndarray:
    """(..., n) unsigned inputs -> (..., bits, n) float32 0/1: slot k holds bit k."""
    x = np.asarray(x)
    if bits <= 8 and x.dtype == np.uint8:
        return np.ascontiguousarray(np.swapaxes(_bit_table(bits)[x], -1, -2))
    shifts = np.arange(bits, dtype=np.int64)
    return ((x.astype(np.int64)[..., None, :] >> shifts[:, None]) & 1).astype(np.float32)


def line_currents(x: np.ndarray, g: np.ndarray, bits: int) -> np.ndarray:
    """Per-slot line currents (..., bits, lines) of inputs (..., n) on codes g (lines, n)."""
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

def conv_patches(a: np.ndarray, k: int) -> np.ndarray:
    """(N, C, H, W) -> (N, P, C*k*k) patch vectors, positions row-major, channel-major inputs."""
    n, c, h, w = a.shape
    win = np.lib.stride_tricks.sliding_window_view(a, (k, k), axis=(2, 3))  # N,C,Ho,Wo,k,k
    ho, wo = h - k + 1, w - k + 1
    return win.transpose(0, 2, 3, 1, 4, 5).reshape(n, ho * wo, c * k * k)


def requantize(psum: np.ndarray, mult: int, shift: int, cfg: SystemConfig) -> np.ndarray:
    """ReLU and requantization to act_bits: clamp((psum*M + 2**(S-1)) >> S, 0, 2**A - 1)."""
    psum = np.asarray(psum, dtype=np.int64)
    return np.clip((psum * mult + (1 << (shift - 1))) >> shift, 0, cfg.act_max)


def max_pool(a: np.ndarray, k: int, stride: int) -> np.ndarray:
    """Ceil-mode max-pool of (N, C, H, W); clipped windows at the border."""
    from cim_spec.network import pool_out
    n, c, h, w = a.shape
    ho, wo = pool_out(h, k, stride), pool_out(w, k, stride)
    ph, pw = (ho - 1) * stride + k - h, (wo - 1) * stride + k - w
    # Padding with the minimum value never wins a max (activations are unsigned).
    padded = np.pad(a, ((0, 0), (0, 0), (0, max(ph, 0)), (0, max(pw, 0))), constant_values=0)
    win = np.lib.stride_tricks.sliding_window_view(padded, (k, k), axis=(2, 3))
    return win[:, :, ::stride, ::stride][:, :, :ho, :wo].max(axis=(-1, -2))


def layer_psums(chip: Chip, layer_index: int, name: str, x: np.ndarray,
                image_ids: np.ndarray | None) -> np.ndarray:
    """Partial sums over all chunks of a weight layer: x (N, P, n_in) -> (N, P, n_out)."""
    mapping, cfg, dig = chip.mapping, chip.config, chip.digital
    lm = mapping.layer(name)
    assign = mapping.assign(name)
    n = x.shape[0]
    psum = np.zeros((n, lm.positions, lm.n_out), dtype=np.int64)
    for b in mapping.blocks_of(name):
        pos = np.flatnonzero(assign[:, b.chunk] == b.id)
        if pos.size == 0:
            continue
        xb = x[:, pos, b.in0:b.in0 + b.n_in]
        kw = {}
        if dig.read_noise:
            kw = dict(read_noise=dig.read_noise, seed=noise.pe_seed(dig.noise_seed, b.pe),
                      nonce=noise.read_nonce(image_ids[:, None], layer_index, pos[None, :],
                                             b.chunk), row0=b.row0)
        psum[:, pos] += read_block(xb, chip.block_conductance(b), dig.adc_gain[name], cfg, **kw)
    return psum


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
    images = check_images(images, net.input_shape)
    n = images.shape[0]
    ids = np.arange(n, dtype=np.int64) if image_ids is None else np.asarray(image_ids, np.int64)
    if ids.shape != (n,):
        raise ValueError(f"image_ids must have shape ({n},), got {ids.shape}")
    starts = range(0, n, batch)
    workers = max(1, min(workers or os.cpu_count() or 1, len(starts)))

    def one(s):
        return _run_batch(chip, images[s:s + batch], ids[s:s + batch], trace)

    # Batches run on threads (numpy releases the GIL); BLAS on each is single-threaded, which
    # is faster for these skinny matrices than letting two thread pools fight for the cores.
    with threadpool_limits(1, user_api="blas"):
        if workers == 1:
            results = [one(s) for s in starts]
        else:
            with ThreadPoolExecutor(workers) as pool:
                results = list(pool.map(one, starts))
    logits = [r[0] for r in results]
    traces = [r[1] for r in results]
    tr = None
    if trace:
        tr = {k: np.concatenate([t[k] for t in traces]) for k in traces[0]} if n else {}
    n_cls = net.layers[-1].n_out
    return RunResult(np.concatenate(logits) if n else np.zeros((0, n_cls), np.int64), tr)


def _run_batch(chip: Chip, a: np.ndarray, ids: np.ndarray, trace: bool):
    net, cfg, dig = chip.mapping.network, chip.config, chip.digital
    weight_names = [layer.name for layer in net.weight_layers()]
    out = {}
    for layer in net.layers:
        if isinstance(layer, Conv):
            li = weight_names.index(layer.name)
            x = conv_patches(a, layer.k)
            psum = layer_psums(chip, li, layer.name, x, ids)
            q = requantize(psum, dig.requant_mult[layer.name], dig.requant_shift[layer.name], cfg)
            ho, wo = chip.mapping.layer(layer.name).out_hw
            a = q.transpose(0, 2, 1).reshape(a.shape[0], layer.out_ch, ho, wo).astype(np.uint8)
        elif isinstance(layer, Pool):
            a = max_pool(a, layer.k, layer.stride)
        elif isinstance(layer, Dense):
            li = weight_names.index(layer.name)
            x = a.reshape(a.shape[0], 1, -1)
            psum = layer_psums(chip, li, layer.name, x, ids)[:, 0, :]
            if layer.name == weight_names[-1]:
                a = psum
            else:
                q = requantize(psum, dig.requant_mult[layer.name],
                               dig.requant_shift[layer.name], cfg)
                a = q.astype(np.uint8)
        if trace:
            out[layer.name] = a.copy()
    return a, out
