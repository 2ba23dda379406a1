"""A slow, obviously correct reference of the integer datapath, in plain Python loops.

It shares no code with golden.chip_model on purpose: it is written from docs/datapath.md, one
loop per sentence, so that tests can compare the vectorized model against it bit for bit. It
only imports the mapping (which block reads which position), never the numerics.
"""

from __future__ import annotations

from cim_spec.network import Add, Conv, Pool, pool_out

_M = 0xFFFFFFFF


def _mix32(x: int) -> int:
    x &= _M
    x ^= x >> 16
    x = (x * 0x7FEB352D) & _M
    x ^= x >> 15
    x = (x * 0x846CA68B) & _M
    x ^= x >> 16
    return x


def _noisy(current: int, seed: int, nonce: int, slot: int, row: int, r: int) -> int:
    h = _mix32(nonce ^ _mix32(seed ^ ((slot << 8) | row)))
    s = (h & 255) + ((h >> 8) & 255) + ((h >> 16) & 255) + (h >> 24) - 510
    # Python's >> on negative integers is a floor shift, as the contract says.
    return max(0, current + ((current * s * r) >> 22))


def _pe_seed(noise_seed: int, pe: int) -> int:
    return _mix32(noise_seed ^ ((0x9E3779B9 * (pe + 1)) & _M))


def _nonce(image_id: int, layer_index: int, position: int, chunk: int) -> int:
    return _mix32(_mix32(image_id & _M) ^ ((layer_index << 28) ^ (position << 8) ^ chunk) & _M)


def read_vector(x, g, gain, cfg, noise=None):
    """One array read. x: list of n_in inputs; g: rows x n_in codes; returns n_out counts.

    noise: None or (read_noise, pe_seed, nonce, row0).
    """
    n_lines = len(g)
    acc = [0] * n_lines
    for k in range(cfg.input_bits):
        for line in range(n_lines):
            current = 0
            for i, xi in enumerate(x):
                if (int(xi) >> k) & 1:
                    current += int(g[line][i])
            if noise is not None:
                r, seed, nonce, row0 = noise
                current = _noisy(current, seed, nonce, k, row0 + line, r)
            code = min((current * gain) >> cfg.adc_gain_frac_bits, 2 ** cfg.adc_bits - 1)
            acc[line] += code << k
    return [acc[2 * o] - acc[2 * o + 1] for o in range(n_lines // 2)]


def _round_shift(v: int, m: int, s: int) -> int:
    # Python's >> on negative integers is a floor shift, as the contract says.
    return (v * m + (1 << (s - 1))) >> s


def run_image(chip, image, image_id: int = 0):
    """Logits of one image (a C x H x W nested list or array) and every layer's output."""
    mapping, cfg, dig = chip.mapping, chip.config, chip.digital
    net = mapping.network
    weight_names = [layer.name for layer in net.weight_layers()]
    top = 2 ** cfg.act_bits - 1
    c0, h0, w0 = net.input_shape
    # The first layer's input: the 8-bit pixel's top input_bits bits (all of it if the DAC is
    # as wide or wider), docs/datapath.md section 0.
    drop = max(0, 8 - cfg.input_bits)
    pixels = [[[int(image[c][y][x]) >> drop for x in range(w0)] for y in range(h0)]
              for c in range(c0)]
    trace = {}
    for i, layer in enumerate(net.layers):
        src = net.source(i)
        a = pixels if src is None else trace[src]
        if isinstance(layer, Pool):
            a = _pool(a, layer.k, layer.stride, layer.ceil, layer.mode)
        elif isinstance(layer, Add):
            b = trace[layer.other]
            if net.is_signed(layer.other):      # already at this add's scale
                m, s = 2, 1                     # (2v + 1) >> 1 = v
            else:
                m, s = dig.requant_mult[layer.name], dig.requant_shift[layer.name]
            a = [[[min(max(a[c][y][x] + _round_shift(b[c][y][x], m, s), 0), top)
                   for x in range(len(a[0][0]))] for y in range(len(a[0]))]
                 for c in range(len(a))]
        else:
            li = weight_names.index(layer.name)
            lm = mapping.layer(layer.name)
            assign = mapping.assign(layer.name)
            if isinstance(layer, Conv):
                ho, wo = lm.out_hw
                h, w = len(a[0]), len(a[0][0])
                k, st, pd = layer.k, layer.stride, layer.pad

                def at(c, y, x, a=a, h=h, w=w):
                    return a[c][y][x] if 0 <= y < h and 0 <= x < w else 0   # zero padding

                vectors = [[at(c, y * st + dy - pd, x * st + dx - pd) for c in range(layer.in_ch)
                            for dy in range(k) for dx in range(k)]
                           for y in range(ho) for x in range(wo)]
            else:
                vectors = [[v for ch in a for row in ch for v in row]] if isinstance(a[0], list) \
                    else [list(a)]
            psums = []
            for p, vec in enumerate(vectors):
                total = [0] * lm.n_out
                for c in range(lm.n_chunks):
                    b = mapping.blocks[int(assign[p][c])]
                    g = [[int(chip.conductance[b.pe][b.row0 + r][i]) for i in range(b.n_in)]
                         for r in range(b.n_rows)]
                    nz = None
                    if dig.read_noise:
                        nz = (dig.read_noise, _pe_seed(dig.noise_seed, b.pe),
                              _nonce(image_id, li, p, c), b.row0)
                    part = read_vector(vec[b.in0:b.in0 + b.n_in], g, dig.adc_gain[layer.name],
                                       cfg, nz)
                    total = [t + q for t, q in zip(total, part, strict=True)]
                if layer.bias:
                    total = [t + int(v) for t, v in zip(total, dig.bias[layer.name],
                                                        strict=True)]
                psums.append(total)
            last = layer.name == weight_names[-1]
            if last:
                a = psums[0]
            else:
                m, s = dig.requant_mult[layer.name], dig.requant_shift[layer.name]
                # Without ReLU the rescaled sum stays signed: -top..top (A bits and a sign).
                lo, hi = (0, top) if layer.relu else (-top, top)
                q = [[min(max(_round_shift(v, m, s), lo), hi) for v in ps] for ps in psums]
                if isinstance(layer, Conv):
                    ho, wo = lm.out_hw
                    a = [[[q[y * wo + x][o] for x in range(wo)] for y in range(ho)]
                         for o in range(layer.out_ch)]
                else:
                    a = q[0]
        trace[layer.name] = a
    return a, trace


def _pool(a, k, stride, ceil=True, mode="max"):
    h, w = len(a[0]), len(a[0][0])
    ho, wo = pool_out(h, k, stride, ceil), pool_out(w, k, stride, ceil)
    out = []
    for c in range(len(a)):
        rows = []
        for oy in range(ho):
            row = []
            for ox in range(wo):
                win = [a[c][y][x] for y in range(oy * stride, min(oy * stride + k, h))
                       for x in range(ox * stride, min(ox * stride + k, w))]
                # The mean rounded half up: floor((sum + n // 2) / n), docs/datapath.md.
                row.append(max(win) if mode == "max" else (sum(win) + len(win) // 2) // len(win))
            rows.append(row)
        out.append(rows)
    return out
