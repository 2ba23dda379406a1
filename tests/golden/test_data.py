"""MNIST loading (IDX / npz / bundled subset) and the model file format."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from cim_spec.network import MCNN, weight_shape
from golden import data, model_file
from golden.data import Mnist, MnistError, load, load_bundled, load_mnist, write_idx
from golden.model_file import ModelFileError, TrainedModel

FULL = Path(__file__).resolve().parents[3] / "shared" / "data" / "mnist"
TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def synthetic(n_train=7, n_test=4, seed=0) -> Mnist:
    rng = np.random.default_rng(seed)
    return Mnist(rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
                 rng.integers(0, 10, n_train, dtype=np.uint8),
                 rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
                 rng.integers(0, 10, n_test, dtype=np.uint8))


def write_dir(directory: Path, m: Mnist, gz=(True, True, True, True)) -> dict[str, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for (field, stem), z in zip(data.IDX_FILES.items(), gz, strict=True):
        p = directory / (stem + (".gz" if z else ""))
        write_idx(p, getattr(m, field))
        paths[field] = p
    return paths


def same(a: Mnist, b: Mnist) -> bool:
    return all(np.array_equal(getattr(a, f), getattr(b, f)) for f in data.IDX_FILES)


# ------------------------------------------------------------------------------ IDX round trip


@pytest.mark.parametrize("gz", [(True,) * 4, (False,) * 4, (True, False, False, True)])
def test_idx_round_trip(tmp_path, gz):
    m = synthetic()
    write_dir(tmp_path, m, gz)
    got = load_mnist(tmp_path)
    assert same(got, m)
    assert got.train_images.dtype == np.uint8 and got.n_train == 7 and got.n_test == 4
    assert same(load(str(tmp_path)), m)


def test_npz_round_trip(tmp_path):
    m = synthetic()
    data.save_npz(m, tmp_path / "mnist.npz")
    assert same(load_mnist(tmp_path / "mnist.npz"), m)
    (tmp_path / "d").mkdir()
    data.save_npz(m, tmp_path / "d" / "mnist.npz")
    assert same(load_mnist(tmp_path / "d"), m)  # a directory holding only mnist.npz


# ------------------------------------------------------------------------------ damaged IDX


def damage(tmp_path, field, fn, gz=False):
    paths = write_dir(tmp_path, synthetic(), (gz,) * 4)
    p = paths[field]
    raw = gzip.decompress(p.read_bytes()) if gz else p.read_bytes()
    new = fn(raw)
    p.write_bytes(gzip.compress(new) if gz else new)
    return p


def set_u32(buf: bytes, offset: int, value: int) -> bytes:
    return buf[:offset] + value.to_bytes(4, "big") + buf[offset + 4:]


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("field, fn, match", [
    ("train_images", lambda b: set_u32(b, 0, 0x801), r"wrong magic number 0x00000801"),
    ("test_labels", lambda b: set_u32(b, 0, 0x803), r"wrong magic number 0x00000803"),
    ("train_images", lambda b: b"\x00\x00", r"truncated: 2 bytes, no IDX header"),
    ("train_images", lambda b: b[:10], r"truncated: 10 bytes, the header needs 16"),
    ("test_images", lambda b: set_u32(b, 8, 27), r"wrong dims 27x28, expected 28x28"),
    ("train_images", lambda b: b[:-1], r"truncated data: 5487 bytes .* need 5488"),
    ("train_labels", lambda b: b[:-2], r"truncated data: 5 bytes"),
    ("train_images", lambda b: b + b"xyz", r"trailing garbage: 3 bytes"),
    ("test_labels", lambda b: b + b"\x00", r"trailing garbage: 1 bytes"),
    ("train_labels", lambda b: set_u32(b, 4, 6)[:-1], r"label count 6 != image count 7"),
    ("test_labels", lambda b: b[:-1] + b"\x0a", r"label value 10 at index 3 is > 9"),
])
def test_damaged_idx_refused(tmp_path, gz, field, fn, match):
    p = damage(tmp_path, field, fn, gz)
    with pytest.raises(MnistError, match=match) as info:
        load_mnist(tmp_path)
    assert p.name in str(info.value)  # the message names the file


@pytest.mark.parametrize("content, match", [
    (b"this is not gzip", r"corrupt gzip data"),
    (b"", r"corrupt gzip data"),
    (None, r"corrupt gzip data"),  # truncated gzip stream
])
def test_corrupt_gzip_refused(tmp_path, content, match):
    paths = write_dir(tmp_path, synthetic())
    p = paths["train_labels"]
    p.write_bytes(p.read_bytes()[:-12] if content is None else content)
    with pytest.raises(MnistError, match=match) as info:
        load_mnist(tmp_path)
    assert "train-labels-idx1-ubyte.gz" in str(info.value)


def test_missing_path_and_file(tmp_path):
    with pytest.raises(MnistError, match="no such file or directory"):
        load_mnist(tmp_path / "nowhere")
    paths = write_dir(tmp_path, synthetic())
    paths["test_labels"].unlink()
    with pytest.raises(MnistError, match=r"missing file t10k-labels-idx1-ubyte \(or .*\.gz\)"):
        load_mnist(tmp_path)


# ------------------------------------------------------------------------------ damaged npz


def npz_with(path, **changes):
    m = synthetic()
    arrays = {key: getattr(m, f) for f, key in data.NPZ_KEYS.items()}
    arrays.update(changes)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


@pytest.mark.parametrize("changes, match", [
    ({"y_test": None}, r"missing key 'y_test'"),
    ({"x_train": np.zeros((7, 28, 28), np.float32)}, r"'x_train' has dtype float32"),
    ({"y_train": np.zeros(7, np.int64)}, r"'y_train' has dtype int64, expected uint8"),
    ({"x_test": np.zeros((4, 28, 27), np.uint8)}, r"'x_test' has shape \(4, 28, 27\)"),
    ({"y_test": np.zeros((4, 1), np.uint8)}, r"'y_test' has shape \(4, 1\), expected \(N,\)"),
    ({"y_train": np.zeros(6, np.uint8)}, r"label count 6 \(y_train\) != image count 7"),
    ({"y_test": np.array([0, 1, 12, 3], np.uint8)}, r"label value 12 at index 2 is > 9"),
])
def test_damaged_npz_refused(tmp_path, changes, match):
    p = npz_with(tmp_path / "m.npz", **changes)
    with pytest.raises(MnistError, match=match) as info:
        load_mnist(p)
    assert "m.npz" in str(info.value)


def test_not_an_npz_refused(tmp_path):
    (tmp_path / "x.npz").write_bytes(b"garbage" * 10)
    with pytest.raises(MnistError, match="not a readable MNIST npz file: no zip header"):
        load_mnist(tmp_path / "x.npz")
    np.save(tmp_path / "a.npy", np.zeros(3))
    with pytest.raises(MnistError, match="not an npz archive"):
        load_mnist(tmp_path / "a.npy")


def test_mnist_dataclass_checks():
    m = synthetic()
    with pytest.raises(MnistError, match="label count 3 != image count 4"):
        Mnist(m.train_images, m.train_labels, m.test_images, m.test_labels[:3])
    with pytest.raises(MnistError, match="images must be a uint8 array"):
        Mnist(m.train_images.astype(np.int16), m.train_labels, m.test_images, m.test_labels)


# ------------------------------------------------------------------------------ bundled subset


def expected_counts(counts, n):
    counts = np.array(counts)
    exact = counts * n / counts.sum()
    take = np.floor(exact).astype(int)
    take[np.argsort(-(exact - take), kind="stable")[: n - take.sum()]] += 1
    return take.tolist()


def test_bundled_subset():
    assert data.BUNDLED_PATH.stat().st_size < 2_000_000
    b = load_bundled()
    assert b.train_images.shape == (2000, 28, 28) and b.test_images.shape == (1000, 28, 28)
    assert b.train_labels.shape == (2000,) and b.test_labels.shape == (1000,)
    assert b.train_images.dtype == np.uint8 and b.train_labels.dtype == np.uint8
    assert np.bincount(b.train_labels, minlength=10).tolist() == \
        expected_counts(TRAIN_COUNTS, 2000)
    assert np.bincount(b.test_labels, minlength=10).tolist() == expected_counts(TEST_COUNTS, 1000)
    assert b.train_images.max() == 255 and 0.05 < b.train_images.mean() / 255 < 0.25
    assert same(load(None), b)
    with np.load(data.BUNDLED_PATH, allow_pickle=False) as z:
        for key, n_full in (("train_index", 60000), ("test_index", 10000)):
            idx = z[key]
            assert np.all(np.diff(idx) > 0) and idx[0] >= 0 and idx[-1] < n_full


@pytest.mark.skipif(not FULL.is_dir(), reason="full MNIST not available")
def test_bundled_subset_is_drawn_from_full_set():
    full = load_mnist(FULL)
    sub, tr, te = data.make_subset(full)
    assert same(sub, load_bundled())
    assert np.array_equal(full.test_images[te], sub.test_images)


def test_stratified_indices_deterministic():
    labels = np.repeat(np.arange(10), [10, 20, 30, 40, 50, 60, 70, 80, 90, 50])
    a = data.stratified_indices(labels, 50, seed=3)
    assert np.array_equal(a, data.stratified_indices(labels, 50, seed=3))
    assert not np.array_equal(a, data.stratified_indices(labels, 50, seed=4))
    assert np.bincount(labels[a], minlength=10).tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 9, 5]
    assert len(np.unique(a)) == 50


# ------------------------------------------------------------------------------ model files


def a_model(seed=0) -> TrainedModel:
    rng = np.random.default_rng(seed)
    weights = {layer.name: rng.standard_normal(weight_shape(layer)).astype(np.float32)
               for layer in MCNN.weight_layers()}
    return TrainedModel("mcnn", weights, {k: 0.1 + i for i, k in enumerate(weights)},
                        {"C1": 0.01, "C3": 0.02}, {"seed": seed, "note": "ünïcode"})


def test_model_round_trip(tmp_path):
    m = a_model()
    model_file.save(m, tmp_path / "m.npz", MCNN)
    got = model_file.load(tmp_path / "m.npz", MCNN)
    assert got.network == "mcnn" and got.meta == m.meta
    assert got.weight_scales == m.weight_scales and got.act_scales == m.act_scales
    for k, w in m.weights.items():
        assert got.weights[k].dtype == np.float32 and np.array_equal(got.weights[k], w)
    with np.load(tmp_path / "m.npz", allow_pickle=False) as z:
        assert set(z.files) == {"C1.weight", "C1.weight_scale", "C1.act_scale", "C3.weight",
                                "C3.weight_scale", "C3.act_scale", "FC.weight",
                                "FC.weight_scale", "network", "meta"}
        assert z["meta"].shape == () and json.loads(str(z["meta"])) == m.meta
    q = got.quantized_weights()
    assert q["FC"].dtype == np.int8 and np.abs(q["FC"]).max() <= 7


def write_arrays(path, model, **changes):
    model_file.save(model, path)
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    arrays.update(changes)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


@pytest.mark.parametrize("changes, match", [
    ({"C3.weight": None}, r"missing array 'C3.weight'"),
    ({"C1.act_scale": None}, r"missing array 'C1.act_scale'"),
    ({"FC.weight": np.zeros((10, 191), np.float32)}, r"'FC' weight has shape \(10, 191\)"),
    ({"C1.weight": np.full((8, 1, 3, 3), np.nan, np.float32)}, r"non-finite"),
    ({"C3.weight_scale": np.array(0.0)}, r"weight scale of layer 'C3' must be positive"),
    ({"C1.act_scale": np.array(-1.0)}, r"activation scale of layer 'C1' must be positive"),
    ({"FC.weight_scale": np.array(np.inf)}, r"weight scale of layer 'FC' is non-finite"),
    ({"C1.weight_scale": np.ones(2)}, r"'C1.weight_scale' must be a 0-d number"),
    ({"C1.weight": np.zeros((8, 1, 3, 3), np.int32)}, r"has dtype int32, expected float"),
    ({"network": np.array("lenet")}, r"is for network 'lenet', not 'mcnn'"),
    ({"meta": np.array("{not json")}, r"'meta' is not valid JSON"),
    ({"C5.weight": np.zeros(3, np.float32)}, r"unexpected arrays \['C5.weight'\]"),
])
def test_model_file_refusals(tmp_path, changes, match):
    p = write_arrays(tmp_path / "bad.npz", a_model(), **changes)
    with pytest.raises(ModelFileError, match=match):
        model_file.load(p, MCNN)


def test_model_file_not_found_or_not_npz(tmp_path):
    with pytest.raises(ModelFileError, match="no such model file"):
        model_file.load(tmp_path / "none.npz", MCNN)
    (tmp_path / "x.npz").write_text("hello")
    with pytest.raises(ModelFileError, match="not a readable model file: no zip header"):
        model_file.load(tmp_path / "x.npz", MCNN)
    assert issubclass(ModelFileError, ValueError)


def test_bundled_model_loads():
    m = model_file.load_bundled(MCNN)
    assert m.network == "mcnn" and set(m.act_scales) == {"C1", "C3"}
    assert m.meta["float_accuracy"] >= 0.98 and m.meta["quant_accuracy"] >= 0.98
