"""MNIST loading: the original IDX files (gzip or raw), a Keras-style ``mnist.npz``, or the
small stratified subset bundled with the project.

Every loader returns a :class:`Mnist` of uint8 arrays: images ``(N, 28, 28)``, labels ``(N,)``
with values 0..9. Anything malformed is refused with a :class:`MnistError` that names the file
and the problem. Parsing is pure numpy (``np.frombuffer``); npz files are read with
``allow_pickle=False``.
"""

from __future__ import annotations

import gzip
import io
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cim_spec import files
from cim_spec.npzread import read_npz

ROWS = COLS = 28
N_CLASSES = 10
IDX_UBYTE = 0x08
IMAGES_MAGIC = 0x00000803  # unsigned byte, 3 dims
LABELS_MAGIC = 0x00000801  # unsigned byte, 1 dim

IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
NPZ_KEYS = {"train_images": "x_train", "train_labels": "y_train",
            "test_images": "x_test", "test_labels": "y_test"}

MAX_IDX_BYTES = 256 << 20  # the full training images are 47 MB
BUNDLED_PATH = Path(__file__).resolve().parent / "data" / "mnist_subset.npz"
BUNDLED_TRAIN = 2000
BUNDLED_TEST = 1000
BUNDLED_SEED = 20200129


class MnistError(ValueError):
    """A missing or malformed MNIST file."""


@dataclass(frozen=True)
class Mnist:
    """MNIST images (N, 28, 28) uint8 and labels (N,) uint8 in 0..9, train and test."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray

    def __post_init__(self):
        for split in ("train", "test"):
            _check_pair(getattr(self, f"{split}_images"), getattr(self, f"{split}_labels"),
                        f"{split} set")

    @property
    def n_train(self) -> int:
        return len(self.train_labels)

    @property
    def n_test(self) -> int:
        return len(self.test_labels)


def _check_pair(images, labels, where: str) -> None:
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 \
            or images.ndim != 3 or images.shape[1:] != (ROWS, COLS):
        raise MnistError(f"{where}: images must be a uint8 array (N, {ROWS}, {COLS}), got "
                         f"{_describe(images)}")
    if not isinstance(labels, np.ndarray) or labels.dtype != np.uint8 or labels.ndim != 1:
        raise MnistError(f"{where}: labels must be a uint8 array (N,), got {_describe(labels)}")
    if len(labels) != len(images):
        raise MnistError(f"{where}: label count {len(labels)} != image count {len(images)}")
    if len(labels) and int(labels.max()) >= N_CLASSES:
        bad = int(np.argmax(labels >= N_CLASSES))
        raise MnistError(f"{where}: label value {int(labels[bad])} at index {bad} is > 9")


def _describe(a) -> str:
    if isinstance(a, np.ndarray):
        return f"{a.dtype} array of shape {a.shape}"
    return type(a).__name__


# ---------------------------------------------------------------------------------------------
# IDX


def _read_bytes(path: Path) -> bytes:
    try:
        if path.stat().st_size > MAX_IDX_BYTES:
            raise MnistError(f"{path}: {path.stat().st_size:,} bytes, more than any MNIST "
                             f"file")
        raw = path.read_bytes()
    except OSError as e:
        raise MnistError(f"{path}: cannot read: {e.strerror or e}") from e
    if path.suffix == ".gz":
        if raw[:2] != b"\x1f\x8b":
            raise MnistError(f"{path}: corrupt gzip data: no gzip header")
        # Decompressed with a cap, so that a small hostile file cannot fill the memory.
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            out = d.decompress(raw, MAX_IDX_BYTES + 1)
        except zlib.error as e:
            raise MnistError(f"{path}: corrupt gzip data: {e}") from e
        if len(out) > MAX_IDX_BYTES:
            raise MnistError(f"{path}: decompresses to more than {MAX_IDX_BYTES:,} bytes, "
                             f"more than any MNIST file")
        if not d.eof:
            raise MnistError(f"{path}: corrupt gzip data: truncated")
        return out
    return raw


def parse_idx(buf: bytes, expect_magic: int, name: str = "<buffer>") -> np.ndarray:
    """Parse an unsigned-byte IDX buffer; ``expect_magic`` is 0x803 (images) or 0x801 (labels)."""
    if len(buf) < 4:
        raise MnistError(f"{name}: truncated: {len(buf)} bytes, no IDX header")
    magic = int.from_bytes(buf[:4], "big")
    if magic != expect_magic:
        raise MnistError(f"{name}: wrong magic number 0x{magic:08x}, expected "
                         f"0x{expect_magic:08x}")
    ndim = expect_magic & 0xFF
    header = 4 + 4 * ndim
    if len(buf) < header:
        raise MnistError(f"{name}: truncated: {len(buf)} bytes, the header needs {header}")
    dims = tuple(int(d) for d in np.frombuffer(buf, dtype=">u4", count=ndim, offset=4))
    if ndim == 3 and dims[1:] != (ROWS, COLS):
        raise MnistError(f"{name}: wrong dims {dims[1]}x{dims[2]}, expected {ROWS}x{COLS}")
    size = int(np.prod(dims, dtype=np.int64))
    have = len(buf) - header
    if have < size:
        raise MnistError(f"{name}: truncated data: {have} bytes after the header, dims "
                         f"{dims} need {size}")
    if have > size:
        raise MnistError(f"{name}: trailing garbage: {have - size} bytes after the "
                         f"{size} bytes of dims {dims}")
    return np.frombuffer(buf, dtype=np.uint8, count=size, offset=header).reshape(dims).copy()


def write_idx(path: str | Path, array: np.ndarray) -> None:
    """Write a uint8 array as IDX (gzip-compressed if ``path`` ends in .gz); for tests/tools."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    head = bytes([0, 0, IDX_UBYTE, array.ndim]) + np.array(array.shape, ">u4").tobytes()
    data = head + array.tobytes()
    path = Path(path)
    files.write_bytes(path, gzip.compress(data, mtime=0) if path.suffix == ".gz" else data)


def _find_idx(directory: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz"):
        p = directory / name
        if p.is_file():
            return p
    raise MnistError(f"{directory}: missing file {stem} (or {stem}.gz)")


def _load_idx_dir(directory: Path) -> Mnist:
    arrays, paths = {}, {}
    for field, stem in IDX_FILES.items():
        p = paths[field] = _find_idx(directory, stem)
        magic = IMAGES_MAGIC if field.endswith("images") else LABELS_MAGIC
        arrays[field] = parse_idx(_read_bytes(p), magic, str(p))
    for split in ("train", "test"):
        img, lab = f"{split}_images", f"{split}_labels"
        if len(arrays[img]) != len(arrays[lab]):
            raise MnistError(f"{paths[lab]}: label count {len(arrays[lab])} != image count "
                             f"{len(arrays[img])} in {paths[img].name}")
        _check_labels(arrays[lab], paths[lab])
        _check_not_empty(arrays[img], paths[img])
    return Mnist(**arrays)


def _check_not_empty(images: np.ndarray, where) -> None:
    # An empty split would give an accuracy of 0/0, or train on nothing.
    if len(images) == 0:
        raise MnistError(f"{where}: holds no images")


def _check_labels(labels: np.ndarray, where) -> None:
    if len(labels) and int(labels.max()) >= N_CLASSES:
        bad = int(np.argmax(labels >= N_CLASSES))
        raise MnistError(f"{where}: label value {int(labels[bad])} at index {bad} is > 9")


# ---------------------------------------------------------------------------------------------
# npz


def _load_npz(path: Path) -> Mnist:
    npz = read_npz(path, MnistError, "MNIST npz file")
    arrays = {}
    for field, key in NPZ_KEYS.items():
        if key not in npz:
            raise MnistError(f"{path}: missing key {key!r} (has {sorted(npz)})")
        a = npz[key]
        if a.dtype != np.uint8:
            raise MnistError(f"{path}: key {key!r} has dtype {a.dtype}, expected uint8")
        want = (None, ROWS, COLS) if field.endswith("images") else (None,)
        if a.ndim != len(want) or a.shape[1:] != want[1:]:
            shape = "(N, 28, 28)" if len(want) == 3 else "(N,)"
            raise MnistError(f"{path}: key {key!r} has shape {a.shape}, expected {shape}")
        arrays[field] = a
    for split in ("train", "test"):
        xk, yk = NPZ_KEYS[f"{split}_images"], NPZ_KEYS[f"{split}_labels"]
        if len(arrays[f"{split}_images"]) != len(arrays[f"{split}_labels"]):
            raise MnistError(f"{path}: label count {len(arrays[split + '_labels'])} ({yk}) != "
                             f"image count {len(arrays[split + '_images'])} ({xk})")
        _check_labels(arrays[f"{split}_labels"], f"{path} key {yk!r}")
        _check_not_empty(arrays[f"{split}_images"], f"{path} key {xk!r}")
    return Mnist(**arrays)


# ---------------------------------------------------------------------------------------------
# public entry points


def load_mnist(path: str | Path) -> Mnist:
    """Load MNIST from a directory of the four IDX files (raw or .gz) or a ``mnist.npz``.

    A directory without the IDX files but holding ``mnist.npz`` is also accepted.
    """
    p = Path(path)
    if not os.path.lexists(p):
        raise MnistError(f"{p}: no such file or directory")
    if p.is_dir():
        if not any((p / s).is_file() or (p / (s + ".gz")).is_file() for s in IDX_FILES.values()) \
                and (p / "mnist.npz").is_file():
            return _load_npz(p / "mnist.npz")
        return _load_idx_dir(p)
    return _load_npz(p)


def load_bundled() -> Mnist:
    """The bundled subset: 2,000 training and 1,000 test images, stratified by class."""
    if not BUNDLED_PATH.is_file():
        raise MnistError(f"{BUNDLED_PATH}: the bundled MNIST subset is missing "
                         f"(regenerate it with tools/make_subset.py)")
    return _load_npz(BUNDLED_PATH)


def load(path: str | Path | None = None) -> Mnist:
    """``load(None)`` is the bundled subset; otherwise :func:`load_mnist`."""
    return load_bundled() if path is None else load_mnist(path)


def stratified_indices(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Sorted indices of ``n`` samples drawn without replacement, class counts proportional to
    the class frequencies in ``labels`` (largest-remainder rounding), deterministic for ``seed``.
    """
    labels = np.asarray(labels)
    if not 0 < n <= len(labels):
        raise ValueError(f"cannot draw {n} of {len(labels)} samples")
    counts = np.bincount(labels, minlength=N_CLASSES)
    exact = counts * n / len(labels)
    take = np.floor(exact).astype(np.int64)
    rest = n - int(take.sum())
    order = np.lexsort((np.arange(len(counts)), -(exact - take)))  # largest remainder first
    take[order[:rest]] += 1
    rng = np.random.default_rng(seed)
    chosen = [rng.choice(np.flatnonzero(labels == c), size=int(k), replace=False)
              for c, k in enumerate(take) if k]
    return np.sort(np.concatenate(chosen))


def make_subset(full: Mnist, n_train: int = BUNDLED_TRAIN, n_test: int = BUNDLED_TEST,
                seed: int = BUNDLED_SEED) -> tuple[Mnist, np.ndarray, np.ndarray]:
    """A stratified subset of ``full`` and the source indices of its train and test images."""
    tr = stratified_indices(full.train_labels, n_train, seed)
    te = stratified_indices(full.test_labels, n_test, seed + 1)
    sub = Mnist(full.train_images[tr], full.train_labels[tr],
                full.test_images[te], full.test_labels[te])
    return sub, tr, te


def save_npz(data: Mnist, path: str | Path, **extra: np.ndarray) -> None:
    """Write ``data`` as a compressed Keras-style npz (x_train, y_train, x_test, y_test)."""
    arrays = {key: getattr(data, field) for field, key in NPZ_KEYS.items()}
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays, **extra)
    files.write_bytes(path, buf.getvalue())
