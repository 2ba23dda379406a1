"""The vectorized integer model against the slow loop reference, bit for bit."""

import numpy as np
import pytest

from cim_spec import program
from cim_spec.config import SystemConfig
from cim_spec.mapping import map_network
from cim_spec.network import MCNN, Conv, Dense, Network, Pool
from golden import chip_model, reference

TINY = Network("tiny", (1, 9, 9), (
    Conv("A", 1, 3, 3), Pool("P", 2, 2), Conv("B", 3, 4, 2), Pool("Q", 2, 2),
    Dense("D", 16, 5), Dense("E", 5, 3)))


def random_chip(net, cfg, rng, noise=0):
    mapping = map_network(cfg, net)
    g = rng.integers(0, cfg.code_max + 1, size=(cfg.n_pe, cfg.array_rows, cfg.array_cols))
    names = [lm.name for lm in mapping.layers]
    dig = program.Digital(
        adc_gain={n: int(rng.integers(1, 2 ** (cfg.adc_gain_frac_bits - 2))) for n in names},
        requant_mult={n: int(rng.integers(0, 2 ** 16)) for n in names[:-1]},
        requant_shift={n: int(rng.integers(8, 24)) for n in names[:-1]},
        read_noise=noise, noise_seed=int(rng.integers(0, 2 ** 32)))
    return program.Chip(mapping, g, dig)


CONFIGS = [
    dict(),
    dict(replication=3),
    dict(adc_bits=4, input_bits=5, act_bits=5),
    dict(array_cols=12, array_rows=32, n_pe=6, replication=2, adc_bits=6),
    dict(adc_bits=10, cond_code_bits=9, adc_gain_frac_bits=12),
    # DACs wider than a pixel, activations wider than a byte (they must not wrap).
    dict(adc_bits=10, input_bits=10, act_bits=10),
]


@pytest.mark.parametrize("noise", [0, 3000])
@pytest.mark.parametrize("overrides", CONFIGS, ids=lambda d: ",".join(map(str, d.items())) or
                         "paper")
def test_tiny_network_matches_reference(overrides, noise):
    rng = np.random.default_rng(abs(hash((tuple(overrides.items()), noise))) % 2 ** 32)
    cfg = SystemConfig(**overrides)
    chip = random_chip(TINY, cfg, rng, noise)
    # 8-bit pixels whatever the DAC width: the first layer takes their top input_bits bits.
    images = rng.integers(0, 256, size=(6, 9, 9)).astype(np.uint8)
    images[0] = 0
    images[1] = 255
    ids = rng.integers(0, 2 ** 31, size=6)
    fast = chip_model.run(chip, images, image_ids=ids, trace=True)
    for i in range(len(images)):
        logits, trace = reference.run_image(chip, images[i][None], int(ids[i]))
        assert fast.logits[i].tolist() == logits
        for name, value in trace.items():
            assert np.asarray(fast.trace[name][i]).tolist() == value, name


def test_one_mcnn_image_matches_reference():
    rng = np.random.default_rng(7)
    cfg = SystemConfig(replication=3)
    chip = random_chip(MCNN, cfg, rng, noise=500)
    # Gains small enough that the ADCs are not always saturated on 9-input currents.
    image = rng.integers(0, 256, size=(1, 28, 28)).astype(np.uint8)
    fast = chip_model.run(chip, image, image_ids=[12345], trace=True)
    logits, trace = reference.run_image(chip, image, 12345)
    assert fast.logits[0].tolist() == logits
    assert np.asarray(fast.trace["S4"][0]).tolist() == trace["S4"]


@pytest.mark.parametrize("seed", range(6))
def test_read_block_matches_reference(seed):
    rng = np.random.default_rng(seed)
    bits = int(rng.integers(1, 10))
    cfg = SystemConfig(adc_bits=int(rng.integers(1, 12)), input_bits=bits, act_bits=bits)
    n_in, n_out = int(rng.integers(1, 17)), int(rng.integers(1, 9))
    g = rng.integers(0, cfg.code_max + 1, size=(2 * n_out, n_in))
    x = rng.integers(0, 2 ** bits, size=(40, n_in))
    x[0], x[1] = 0, 2 ** bits - 1
    gain = int(rng.integers(1, 2 ** 17))
    noise = int(rng.integers(0, 5000)) if seed % 2 else 0
    nonce = rng.integers(0, 2 ** 32, size=40, dtype=np.uint64)
    kw = dict(read_noise=noise, seed=1234 + seed, nonce=nonce, row0=8) if noise else {}
    fast = chip_model.read_block(x, g, gain, cfg, **kw)
    for i in range(len(x)):
        nz = (noise, 1234 + seed, int(nonce[i]), 8) if noise else None
        assert fast[i].tolist() == reference.read_vector(x[i].tolist(), g.tolist(), gain, cfg, nz)


def test_adc_saturates_and_floors():
    cfg = SystemConfig(adc_bits=4, adc_gain_frac_bits=4)
    # gain 16 at 4 fraction bits is a gain of one: code = min(I, 15)
    assert chip_model.adc_convert([0, 1, 14, 15, 16, 4080], 16, cfg).tolist() == \
        [0, 1, 14, 15, 15, 15]
    # gain 8 is a half: floor(I / 2)
    assert chip_model.adc_convert([0, 1, 2, 3, 31], 8, cfg).tolist() == [0, 0, 1, 1, 15]


def test_requantize_rounds_half_up_and_clamps():
    cfg = SystemConfig()
    got = chip_model.requantize(np.array([-100, 0, 1, 2, 3, 10_000]), 1, 1, cfg)
    # (psum + 1) >> 1, clamped to 0..255
    assert got.tolist() == [0, 0, 1, 1, 2, 255]


def test_max_pool_ceil_mode_matches_loop():
    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, size=(2, 3, 7, 8)).astype(np.uint8)
    got = chip_model.max_pool(a, 3, 3)
    assert got.shape == (2, 3, 3, 3)
    for n in range(2):
        for c in range(3):
            for y in range(3):
                for x in range(3):
                    assert got[n, c, y, x] == a[n, c, 3 * y:3 * y + 3, 3 * x:3 * x + 3].max()


def test_bad_images_are_refused():
    rng = np.random.default_rng(0)
    chip = random_chip(MCNN, SystemConfig(), rng)
    with pytest.raises(ValueError, match=r"shape \(N, 28, 28\)"):
        chip_model.run(chip, np.zeros((2, 27, 28), np.uint8))
    with pytest.raises(ValueError, match="8-bit"):
        chip_model.run(chip, np.full((1, 28, 28), 300))


def reference_psums(chip, li, name, x, ids):
    """Partial sums of one layer from the loop reference, read by read."""
    mapping, dig = chip.mapping, chip.digital
    lm, assign = mapping.layer(name), mapping.assign(name)
    out = np.zeros((x.shape[0], x.shape[1], lm.n_out), dtype=np.int64)
    for n in range(x.shape[0]):
        for p in range(x.shape[1]):
            for c in range(lm.n_chunks):
                b = mapping.blocks[int(assign[p, c])]
                g = chip.block_conductance(b).tolist()
                nz = None
                if dig.read_noise:
                    nz = (dig.read_noise, reference._pe_seed(dig.noise_seed, b.pe),
                          reference._nonce(int(ids[n]), li, p, c), b.row0)
                out[n, p] += reference.read_vector(x[n, p, b.in0:b.in0 + b.n_in].tolist(), g,
                                                   dig.adc_gain[name], chip.config, nz)
    return out


@pytest.mark.parametrize("noise", [0, 2500])
@pytest.mark.parametrize("dtype,bits", [(np.uint8, 8), (np.int64, 8), (np.int64, 10)])
def test_layer_psums_every_input_form_matches_reference(bits, dtype, noise):
    # uint8 inputs of <= 8 bits take the lane-spreading pattern path, the others the generic
    # one; "A" reads 9-input chunks from tables, "D" 16-input chunks by matrix products.
    rng = np.random.default_rng(bits * 100 + noise + (dtype is np.uint8))
    chip = random_chip(TINY, SystemConfig(input_bits=bits, act_bits=bits, replication=2), rng,
                       noise)
    ids = rng.integers(0, 2 ** 31, size=3)
    for li, name, shape in ((0, "A", (3, 49, 9)), (2, "D", (3, 1, 16))):
        x = rng.integers(0, 2 ** bits, size=shape)
        x[0, 0] = 0
        x[0, -1] = 2 ** bits - 1
        x[1] *= rng.random(shape[1:]) < 0.3          # sparse rows: zero patterns
        got = chip_model.layer_psums(chip, li, name, x.astype(dtype), ids)
        assert got.tolist() == reference_psums(chip, li, name, x, ids).tolist(), name


def test_tables_follow_codes_edited_in_place():
    rng = np.random.default_rng(11)
    chip = random_chip(TINY, SystemConfig(), rng, noise=1000)
    images = rng.integers(0, 256, size=(4, 9, 9)).astype(np.uint8)
    before = chip_model.run(chip, images).logits
    chip.conductance[:] = rng.integers(0, 256, size=chip.conductance.shape)
    after = chip_model.run(chip, images).logits
    fresh = program.Chip(chip.mapping, chip.conductance.copy(), chip.digital)
    assert after.tolist() == chip_model.run(fresh, images).logits.tolist()
    assert after.tolist() != before.tolist()


@pytest.mark.parametrize("bits", [1, 5, 6, 8, 10, 12])
def test_pixels_reach_the_first_layer_by_their_top_bits(bits):
    """A DAC narrower than a pixel takes its top bits, a wider one the pixel: written out
    here from docs/datapath.md section 0, against the model's first-layer trace."""
    rng = np.random.default_rng(bits)
    cfg = SystemConfig(input_bits=bits, act_bits=bits, adc_bits=max(bits, 8))
    net = Network("one", (1, 4, 4), (Dense("D", 16, 2),))
    chip = random_chip(net, cfg, rng)
    pixels = rng.integers(0, 256, size=(5, 4, 4)).astype(np.uint8)
    pixels[0] = 255
    want = [[int(v) >> max(0, 8 - bits) for v in img.ravel()] for img in pixels]
    assert program.dac_inputs(pixels, bits).reshape(5, -1).tolist() == want
    assert max(max(w) for w in want) == (2 ** bits - 1 if bits <= 8 else 255)
    # The logits are those of the converted inputs read through the one dense block.
    b = chip.mapping.blocks[0]
    x = np.array(want)
    got = chip_model.run(chip, pixels).logits
    expect = chip_model.read_block(x, chip.block_conductance(b), chip.digital.adc_gain["D"], cfg)
    assert np.array_equal(got, expect)


def test_thread_budget_scopes_the_default_and_keeps_results(monkeypatch):
    """A sweep task runs everything on one thread: within `thread_budget(1)` no thread pool
    starts, the logits are those of the threaded run, and the budget ends with the block."""
    rng = np.random.default_rng(7)
    chip = random_chip(TINY, SystemConfig(), rng, noise=3000)
    images = rng.integers(0, 256, size=(40, 1, 9, 9), dtype=np.uint8)
    threaded = chip_model.run(chip, images, batch=8, workers=2).logits
    pools = []
    real_pool = chip_model.ThreadPoolExecutor

    def counting_pool(*a, **k):
        pools.append(a)
        return real_pool(*a, **k)

    monkeypatch.setattr(chip_model, "ThreadPoolExecutor", counting_pool)
    with chip_model.thread_budget(1):
        single = chip_model.run(chip, images, batch=8).logits
    assert pools == []
    np.testing.assert_array_equal(single, threaded)
    chip_model.run(chip, images, batch=8, workers=2)
    assert len(pools) == 1
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="workers"):
            with chip_model.thread_budget(bad):
                pass
