"""docs/datapath.md recomputed from its own text, so that the page cannot drift from the code.

Every formula here is written again from the page (sections 0, 5, 6, 8) and from docs/device.md
(the chip-state manifest), not imported: the network's shapes, the calibration of the bundled
model on the first 500 training images, the (M, S) rule, the noise key, and both chip-state
checksums. The code under test is only called to be compared with.
"""

import hashlib
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

import golden
from cim_flows import stages
from cim_spec import chipstate, device_params
from cim_spec.config import SystemConfig
from cim_spec.mapping import map_network
from cim_spec.network import MCNN, Conv, Dense, Network, Pool, pool_out, weight_shape
from cim_spec.program import Chip, Digital
from golden import chip_model, transfer
from golden.model_file import TrainedModel
from golden.quantize import compile_model, requant_params

DOCS = Path(__file__).resolve().parents[2] / "docs"
DATA = Path(golden.__file__).resolve().parent / "data"


# ---------------------------------------------------------------------------------------------
# Section 0: the network.

def doc_pool_out(h, k, stride):
    return math.ceil((h - k) / stride) + 1 if h > k else 1


def test_network_dimensions_are_the_documented_ones():
    assert MCNN.input_shape == (1, 28, 28)
    assert MCNN.shapes() == [(8, 26, 26), (8, 9, 9), (12, 7, 7), (12, 4, 4), (10,)]
    kinds = [(type(la).__name__, getattr(la, "k", None), getattr(la, "stride", None))
             for la in MCNN.layers]
    assert kinds == [("Conv", 3, 1), ("Pool", 3, 3), ("Conv", 3, 1), ("Pool", 2, 2),
                     ("Dense", None, None)]
    # "stride 1, no padding and no bias"
    assert all(la.pad == 0 and not la.bias for la in MCNN.layers if type(la).__name__ == "Conv")
    assert [int(np.prod(weight_shape(la))) for la in MCNN.weight_layers()] == [72, 864, 1920]
    # S2's last window starts at row 24 and S4's at row 6, as the page says.
    assert (doc_pool_out(26, 3, 3) - 1) * 3 == 24 and (doc_pool_out(7, 2, 2) - 1) * 2 == 6


@pytest.mark.parametrize("h", range(1, 30))
def test_ceil_mode_pool_size(h):
    for k in range(1, 6):
        for stride in range(1, 6):
            assert pool_out(h, k, stride) == doc_pool_out(h, k, stride), (h, k, stride)


# ---------------------------------------------------------------------------------------------
# Section 5: the (M, S) rule.

def doc_requant(f):
    s = 15 - math.floor(math.log2(f))
    s = min(max(s, 1), 40)
    m = round(f * 2 ** s)
    if m >= 2 ** 16:
        m, s = round(f * 2 ** (s - 1)), s - 1
    return m, s


def requant_factors():
    rng = np.random.default_rng(5)
    fs = list(2.0 ** rng.uniform(-45, 20, size=3000))
    for e in range(-45, 20):                      # powers of two and their neighbours
        for f in (2.0 ** e, np.nextafter(2.0 ** e, 0), np.nextafter(2.0 ** e, np.inf)):
            fs.append(float(f))
    for s in range(1, 41):                        # f * 2**S right at the round-up to 2**16
        for m in (65535.5, 65535.4999, 65534.5, 32767.75):
            fs.append(m / 2 ** s)
    fs += [2 ** 15 - 0.25, np.nextafter(2 ** 15 - 0.25, 0), 2 ** -25, 2 ** -41, 3 * 2 ** -43]
    return [float(f) for f in fs]


def test_requant_rule_matches_the_page():
    for f in requant_factors():
        assert requant_params(f) == doc_requant(f), f


def test_requant_ranges_the_page_states():
    for f in requant_factors():
        m, s = doc_requant(f)
        if 2 ** -25 <= f < 2 ** 15 - 0.25:
            assert 2 ** 15 <= m <= 2 ** 16 - 1 and 1 <= s <= 40, f
            assert abs(m / 2 ** s - f) <= f * 2 ** -15, f
        elif f < 2 ** -25:
            assert s == 40 and m <= 2 ** 15 and (m == 0) == (f <= 2 ** -41), f
        else:
            assert s == 0, f


@pytest.mark.parametrize("bad", [0.0, -1.0, math.inf, math.nan])
def test_requant_refuses_what_the_page_excludes(bad):
    with pytest.raises(ValueError):
        requant_params(bad)


# ---------------------------------------------------------------------------------------------
# Sections 0-5: the bundled model's calibration, from the page alone.

def doc_state_code(cfg, s):
    step = (cfg.g_max_us - cfg.g_min_us) / (cfg.cell_states - 1) / cfg.g_lsb_us
    return np.array([round(round(cfg.g_min_us / cfg.g_lsb_us) + v * step)
                     for v in np.ravel(s)]).reshape(np.shape(s))


def doc_read(x, gp, gm, chunk_size, cfg, gain=None):
    """Section 3 over chunks: x (N, P, n_in) -> psum (N, P, n_out), or with gain=None the
    largest line current (the calibration's full scale at q = 100)."""
    n_in = x.shape[-1]
    psum = np.zeros((*x.shape[:2], gp.shape[0]), dtype=np.int64)
    top = 0.0
    for c0 in range(0, n_in, chunk_size):
        c1 = min(c0 + chunk_size, n_in)
        for k in range(cfg.input_bits):
            b = ((x[..., c0:c1].astype(np.int64) >> k) & 1).astype(np.float64)
            ip, im = b @ gp[:, c0:c1].T, b @ gm[:, c0:c1].T
            if gain is None:
                top = max(top, ip.max(), im.max())
                continue
            adc = [np.minimum((i.astype(np.int64) * gain) >> cfg.adc_gain_frac_bits,
                              2 ** cfg.adc_bits - 1) for i in (ip, im)]
            psum += (adc[0] << k) - (adc[1] << k)
    return top if gain is None else psum


def doc_pool(a, k, stride):
    n, c, h, w = a.shape
    ho, wo = doc_pool_out(h, k, stride), doc_pool_out(w, k, stride)
    out = np.zeros((n, c, ho, wo), dtype=a.dtype)
    for oy in range(ho):
        for ox in range(wo):
            out[:, :, oy, ox] = a[:, :, oy * stride:min(oy * stride + k, h),
                                  ox * stride:min(ox * stride + k, w)].max(axis=(2, 3))
    return out


def doc_patches(a, k):
    n, c, h, w = a.shape
    ho, wo = h - k + 1, w - k + 1
    x = np.zeros((n, ho * wo, c * k * k), dtype=np.int64)
    for ch in range(c):
        for dy in range(k):
            for dx in range(k):
                x[:, :, ch * k * k + dy * k + dx] = \
                    a[:, ch, dy:dy + ho, dx:dx + wo].reshape(n, ho * wo)
    return x


def doc_calibration(cfg):
    model = np.load(DATA / "mcnn_weights.npz")
    images = np.load(DATA / "mnist_subset.npz")["x_train"][:500]
    a = images[:, None].astype(np.int64)                  # the raw pixels
    frac = 2 ** cfg.adc_gain_frac_bits
    step = (cfg.g_max_us - cfg.g_min_us) / (cfg.cell_states - 1) / cfg.g_lsb_us
    s_in = 1 / (2 ** cfg.act_bits - 1)
    gains, requant, logit_scale = {}, {}, None
    for layer in MCNN.layers:
        if isinstance(layer, Pool):
            a = doc_pool(a, layer.k, layer.stride)
            continue
        w = np.asarray(model[f"{layer.name}.weight"], dtype=np.float64)
        s_w = float(model[f"{layer.name}.weight_scale"])
        lv = np.clip(np.rint(w / s_w), -7, 7).reshape(w.shape[0], -1).astype(np.int64)
        gp, gm = doc_state_code(cfg, np.maximum(lv, 0)), doc_state_code(cfg, np.maximum(-lv, 0))
        if isinstance(layer, Conv):
            x = doc_patches(a, layer.k)
            chunk = (cfg.array_cols // layer.k ** 2) * layer.k ** 2
        else:
            x = a.reshape(a.shape[0], 1, -1)
            chunk = cfg.array_cols
        full_scale = max(doc_read(x, gp, gm, chunk, cfg), 1.0)
        gain = max(1, math.floor((2 ** cfg.adc_bits - 1) * frac / full_scale))
        gains[layer.name] = gain
        u = s_in * s_w * frac / (gain * step)
        if layer is MCNN.layers[-1]:
            logit_scale = u
            break
        s_a = float(model[f"{layer.name}.act_scale"])
        m, s = doc_requant(u / s_a)
        requant[layer.name] = (m, s)
        psum = doc_read(x, gp, gm, chunk, cfg, gain)
        q = np.clip((psum * m + 2 ** (s - 1)) >> s, 0, 2 ** cfg.act_bits - 1)
        if isinstance(layer, Conv):
            h, w_ = a.shape[2] - layer.k + 1, a.shape[3] - layer.k + 1
            a = q.transpose(0, 2, 1).reshape(a.shape[0], layer.out_ch, h, w_)
        else:
            a = q[:, 0]
        s_in = s_a
    return gains, requant, logit_scale


def doc_table_row(name):
    """The numbers of one row of the page's table of the bundled model's parameters."""
    for line in (DOCS / "datapath.md").read_text().splitlines():
        if line.startswith(f"| `{name}` |"):
            return [float(v.replace(",", "")) for v in re.findall(r"[-+\d.,e]+\d", line)]
    raise AssertionError(f"docs/datapath.md has no table row {name!r}")


def test_calibration_images_are_the_first_500_of_the_bundled_training_subset():
    want = np.load(DATA / "mnist_subset.npz")["x_train"][:500]
    got = stages.calibration_images()
    assert got.shape == (500, 28, 28) and np.array_equal(got, want)


def test_bundled_calibration_follows_the_page():
    cfg = SystemConfig()
    gains, requant, logit_scale = doc_calibration(cfg)
    mapping, prog = stages.ideal_program(cfg, stages.load_model())
    d = prog.digital
    assert gains == d.adc_gain
    assert requant == {n: (d.requant_mult[n], d.requant_shift[n]) for n in requant}
    assert logit_scale == pytest.approx(prog.logit_scale, rel=1e-12)
    # ... and the page quotes the same numbers.
    assert doc_table_row("adc_gain") == [gains["C1"], gains["C3"], gains["FC"]]
    row = doc_table_row("M`, `S")
    assert row[:4] == [*requant["C1"], *requant["C3"]]
    assert row[4:] == [pytest.approx(logit_scale, rel=1e-12)]


# ---------------------------------------------------------------------------------------------
# Section 6: the noise key uses the layer-wide position.

M32 = 0xFFFFFFFF


def mix32(x):
    x &= M32
    x ^= x >> 16
    x = (x * 0x7FEB352D) & M32
    x ^= x >> 15
    x = (x * 0x846CA68B) & M32
    return x ^ (x >> 16)


def doc_noisy_read(x, g, gain, cfg, rn, noise_seed, pe, row0, image_id, layer_index, position,
                   chunk):
    pe_seed = mix32(noise_seed ^ ((0x9E3779B9 * (pe + 1)) & M32))
    nonce = mix32(mix32(image_id & M32) ^ (((layer_index << 28) ^ (position << 8) ^ chunk) & M32))
    acc = [0] * len(g)
    for k in range(cfg.input_bits):
        for r, line in enumerate(g):
            cur = sum(int(gi) for xi, gi in zip(x, line, strict=True) if (int(xi) >> k) & 1)
            h = mix32(nonce ^ mix32(pe_seed ^ ((k << 8) | (row0 + r))))
            s = (h & 255) + ((h >> 8) & 255) + ((h >> 16) & 255) + (h >> 24) - 510
            cur = max(0, cur + ((cur * s * rn) >> 22))
            acc[r] += min((cur * gain) >> cfg.adc_gain_frac_bits, 2 ** cfg.adc_bits - 1) << k
    return [acc[2 * o] - acc[2 * o + 1] for o in range(len(g) // 2)]


def test_noise_position_is_the_layer_wide_index():
    cfg = SystemConfig(replication=3)
    mapping = map_network(cfg, MCNN)
    rng = np.random.default_rng(11)
    codes = rng.integers(0, cfg.code_max + 1, size=(cfg.n_pe, cfg.array_rows, cfg.array_cols))
    names = [lm.name for lm in mapping.layers]
    dig = Digital({n: 3000 for n in names}, {n: 1 for n in names[:-1]},
                  {n: 1 for n in names[:-1]}, read_noise=4000, noise_seed=987654321)
    chip = Chip(mapping, codes, dig)
    image = rng.integers(0, 256, size=(1, 1, 28, 28))
    x = doc_patches(image, 3)
    image_id = 77
    got = chip_model.layer_psums(chip, 0, "C1", x.astype(np.uint8), np.array([image_id]))
    lm = mapping.layer("C1")
    start = lm.group_ranges[2][0]
    for p in (start + 5, 675):                    # positions in the last of three groups
        b = mapping.blocks[int(mapping.assign("C1")[p, 0])]
        assert b.group == 2
        g = codes[b.pe, b.row0:b.row0 + b.n_rows, :b.n_in]
        args = (x[0, p], g, 3000, cfg, 4000, 987654321, b.pe, b.row0, image_id, 0)
        assert got[0, p].tolist() == doc_noisy_read(*args, p, 0)
        assert got[0, p].tolist() != doc_noisy_read(*args, p - start, 0)


# ---------------------------------------------------------------------------------------------
# Section 8 and docs/device.md: the chip-state file.

def doc_arrays_checksum(arrays):
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = arrays[name]
        h.update((name + "\0" + a.dtype.str + "\0" + str(list(a.shape)) + "\0").encode("utf-8"))
        h.update(np.ascontiguousarray(a).tobytes(order="C"))
    return h.hexdigest()


def doc_manifest_checksum(manifest):
    body = {k: v for k, v in manifest.items() if k != "checksum"}
    body["arrays_sha256"] = manifest["checksum"]["arrays"]
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


TINY = Network("tiny", (1, 10, 10), (Conv("A", 1, 4, 3), Pool("P", 2, 2), Conv("B", 4, 6, 2),
                                      Dense("F", 54, 5)))


def saved_state(net, tmp_path, seed=3):
    rng = np.random.default_rng(seed)
    w = {la.name: rng.standard_normal(weight_shape(la)).astype(np.float32)
         for la in net.weight_layers()}
    acts = {la.name: 0.02 for la in net.weight_layers()[:-1]}
    model = TrainedModel(net.name, w, {k: float(np.abs(v).max() / 7) for k, v in w.items()},
                         acts)
    mapping = map_network(SystemConfig(), net)
    images = rng.integers(0, 256, size=(8, *net.input_shape[1:])).astype(np.uint8)
    prog = compile_model(model, mapping, images)
    state = transfer.program_chip(mapping, prog, device_params.load_preset("yao2020"), seed)
    return chipstate.save(state, tmp_path / "chip")


def test_checksums_follow_the_page(tmp_path):
    npz_path, json_path = saved_state(TINY, tmp_path)
    manifest = json.loads(json_path.read_text())
    with np.load(npz_path, allow_pickle=False) as z:
        arrays = {name: z[name] for name in z.files}
    assert sorted(arrays) == ["codes", "g_us", "gain", "levels.A", "levels.B", "levels.F",
                              "pulses", "stuck", "target", "verified"]
    assert {n: a.dtype.str for n, a in arrays.items()} == {
        "codes": "<i4", "g_us": "<f8", "gain": "<f8", "levels.A": "|i1", "levels.B": "|i1",
        "levels.F": "|i1", "pulses": "<i8", "stuck": "|i1", "target": "<i4", "verified": "|b1"}
    assert manifest["checksum"]["algorithm"] == "sha256"
    assert manifest["checksum"]["arrays"] == doc_arrays_checksum(arrays)
    assert manifest["checksum"]["manifest"] == doc_manifest_checksum(manifest)
    # The file is written sorted with an indent of 1; the checksum is not over its bytes.
    assert json_path.read_text() == json.dumps(manifest, sort_keys=True, indent=1) + "\n"
    # docs/device.md: version 2 stores the whole network description.
    assert manifest["schema_version"] == 2
    assert manifest["network"] == {
        "name": "tiny", "input_shape": [1, 10, 10], "layers": [
            {"type": "conv", "name": "A", "in_ch": 1, "out_ch": 4, "k": 3},
            {"type": "pool", "name": "P", "k": 2, "stride": 2},
            {"type": "conv", "name": "B", "in_ch": 4, "out_ch": 6, "k": 2},
            {"type": "dense", "name": "F", "n_in": 54, "n_out": 5}]}
    assert [list(arrays[f"levels.{n}"].shape) for n in "ABF"] == [[4, 9], [6, 16], [5, 54]]


def test_checksum_catches_what_the_page_says_it_covers(tmp_path):
    npz_path, json_path = saved_state(TINY, tmp_path)
    manifest = json.loads(json_path.read_text())
    with np.load(npz_path, allow_pickle=False) as z:
        arrays = {name: z[name] for name in z.files}
    base = doc_arrays_checksum(arrays)
    flipped = dict(arrays, pulses=arrays["pulses"].copy())
    flipped["pulses"].flat[0] += 1
    reshaped = dict(arrays, codes=arrays["codes"].reshape(-1))
    retyped = dict(arrays, stuck=arrays["stuck"].astype("<i2"))
    renamed = {("levels.Z" if n == "levels.F" else n): a for n, a in arrays.items()}
    assert len({base, *(doc_arrays_checksum(a) for a in (flipped, reshaped, retyped, renamed))}) \
        == 5
    edited = json.loads(json_path.read_text())
    edited["seed"] += 1
    assert doc_manifest_checksum(edited) != manifest["checksum"]["manifest"]
    other_arrays = dict(manifest, checksum=dict(manifest["checksum"], arrays="0" * 64))
    assert doc_manifest_checksum(other_arrays) != manifest["checksum"]["manifest"]


def test_version_1_file_with_the_page_checksum_loads(tmp_path):
    """docs/device.md: a version 1 manifest names the network "mcnn" and still loads."""
    npz_path, json_path = saved_state(MCNN, tmp_path, seed=1)
    manifest = json.loads(json_path.read_text())
    manifest["schema_version"] = 1
    manifest["network"] = "mcnn"
    manifest["checksum"]["manifest"] = doc_manifest_checksum(manifest)
    json_path.write_text(json.dumps(manifest, sort_keys=True, indent=1) + "\n")
    state = chipstate.load(tmp_path / "chip")
    assert state.mapping.network == MCNN
    manifest["network"] = "tiny"
    manifest["checksum"]["manifest"] = doc_manifest_checksum(manifest)
    json_path.write_text(json.dumps(manifest, sort_keys=True, indent=1) + "\n")
    with pytest.raises(chipstate.ChipStateError, match="version 1"):
        chipstate.load(tmp_path / "chip")
