"""A generated corpus of damaged and hostile inputs for every loader and command: each ends
with exit status 2, one line on stderr naming the file (or option) and the problem, no
traceback, and with --json exactly one JSON document `{"error": ...}` on stdout. Bad outputs
are refused before anything is written, and nothing existing is replaced."""

from __future__ import annotations

import gzip
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from cim_cli.main import main
from cim_spec import chipstate
from golden import data, model_file

RNG = np.random.default_rng(20240613)


def npz_bytes(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, raw in members.items():
            zf.writestr(name, raw)
    return buf.getvalue()


def npy_bytes(a) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, a, allow_pickle=True)
    return buf.getvalue()


def damaged_bytes(good: bytes) -> dict[str, bytes]:
    """Byte-level damage to a good file."""
    out = {"empty": b"", "random": RNG.bytes(3000), "text": b"hello, world\n",
           "gzip": gzip.compress(b"not an archive"), "npy": npy_bytes(np.arange(5)),
           "zip_not_npy": zip_bytes({"readme.txt": b"hi"}),
           "object_array": zip_bytes({"x_test.npy": npy_bytes(np.array([{}], dtype=object)),
                                      "codes.npy": npy_bytes(np.array([{}], dtype=object))}),
           "huge_header": zip_bytes({"x_test.npy": npy_bytes(np.zeros(4, np.uint8))
                                     .replace(b"(4,)", b"(4000000000000,)")})}
    for frac in (0.05, 0.5, 0.97):
        out[f"truncated_{frac}"] = good[:int(len(good) * frac)]
    out["minus_one_byte"] = good[:-1]
    mid = bytearray(good)
    for i in RNG.integers(200, len(good) - 200, 8):
        mid[i] ^= 0xFF
    out["flipped_bytes"] = bytes(mid)
    return out


def write_cases(tmp: Path, good: bytes, extra: dict[str, bytes] | None = None) -> list[Path]:
    tmp.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, raw in {**damaged_bytes(good), **(extra or {})}.items():
        p = tmp / f"{name}.npz"
        p.write_bytes(raw)
        paths.append(p)
    (tmp / "a_directory.npz").mkdir()
    return [*paths, tmp / "a_directory.npz", tmp / "missing.npz", Path("/dev/null")]


def refused(argv: list[str], capsys, names: str | None) -> str:
    """Run `cim ... --json`: refused with one line and one JSON error document."""
    rc = main([*argv, "--json"])
    cap = capsys.readouterr()
    assert rc == 2, (argv, cap.err)
    assert "Traceback" not in cap.err
    lines = cap.err.strip().splitlines()
    assert len(lines) == 1, cap.err
    assert "pickled data" not in lines[0]
    doc = json.loads(cap.out)          # exactly one document
    assert list(doc) == ["error"] and doc["error"] == lines[0]
    if names is not None:
        assert names in lines[0], (names, lines[0])
    return lines[0]


# ---------------------------------------------------------------------------------------------
# Loaders, through the commands that use them.

@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("corpus")
    mnist = data.BUNDLED_PATH.read_bytes()
    model = model_file.BUNDLED_WEIGHTS.read_bytes()
    d = data.load_bundled()
    empty_test = npz_bytes(x_train=d.train_images[:5], y_train=d.train_labels[:5],
                           x_test=d.test_images[:0], y_test=d.test_labels[:0])
    return {"mnist": write_cases(tmp / "mnist", mnist, {"model_as_mnist": model,
                                                        "no_test_images": empty_test}),
            "model": write_cases(tmp / "model", model, {"mnist_as_model": mnist})}


def test_damaged_mnist(corpus, capsys):
    for p in corpus["mnist"]:
        refused(["eval", "--stage", "float", "--limit", "2", "--data", str(p)], capsys, str(p))


def test_damaged_model(corpus, capsys):
    for p in corpus["model"]:
        refused(["eval", "--stage", "float", "--limit", "2", "--weights", str(p)], capsys,
                str(p))


@pytest.fixture(scope="module")
def chip(tmp_path_factory):
    d = tmp_path_factory.mktemp("chip")
    assert main(["program", "--out", str(d / "s"), "--json"]) == 0
    return d / "s"


def manifest_damage(m: dict) -> dict[str, str]:
    """Manifest texts: broken JSON, and well-formed JSON with a bad field (the checksum is
    fixed, so the field check behind it is reached)."""
    def edit(fn):
        mm = json.loads(json.dumps(m))
        fn(mm)
        mm["checksum"]["manifest"] = chipstate.manifest_checksum(mm)
        return json.dumps(mm)

    def set_(path, value):
        def fn(mm):
            *head, last = path
            for k in head:
                mm = mm[k]
            mm[last] = value
        return fn

    def nan(mm):
        mm["scales"]["logit_scale"] = float("nan")

    out = {"truncated": json.dumps(m)[:500], "list": "[]", "random": RNG.bytes(200).hex(),
           "nan": json.dumps(m).replace('"logit_scale": ', '"logit_scale": NaN, "x": '),
           "infinity_seed": json.dumps(m).replace('"seed": 1,', '"seed": Infinity,'),
           "binary": "\udcff"}
    for name, path, value in [
            ("negative_seed", ["seed"], -1), ("float_read_noise", ["digital", "read_noise"], 1.5),
            ("history_not_object", ["history"], [3]),
            ("history_bad_stage", ["history"], [{"stage": "baked"}]),
            ("history_missing_field", ["history"], [{"stage": "transfer", "seed": 1}]),
            ("scales_missing", ["scales"], {"logit_scale": 1.0}),
            ("weight_scale_zero", ["scales", "weight_scales", "FC"], 0.0),
            ("stage_mismatch", ["stage"], "hybrid"), ("unknown_field", ["extra"], 1),
            ("adc_gain_string", ["digital", "adc_gain", "C1"], "7"),
            ("config_huge", ["config", "g_max_us"], 1e300),
            ("config_code_bits_64", ["config", "cond_code_bits"], 64),
            ("device_preset_other", ["device", "preset"], "ideal"),
            ("checksum_not_dict", ["checksum", "algorithm"], "md5"),
            ("arrays_extra", ["arrays", "evil"], {"dtype": "<i4", "shape": [1]})]:
        out[name] = edit(set_(path, value))
    return out


def test_damaged_chip_states(chip, tmp_path, capsys):
    npz, js = chipstate.paths(chip)
    m = json.loads(js.read_text())
    cases = []
    for i, p in enumerate(write_cases(tmp_path / "npz", npz.read_bytes(),
                                      {"model_as_chip": model_file.BUNDLED_WEIGHTS
                                       .read_bytes()})):
        if p.is_file() and p.parent == tmp_path / "npz":
            stem = tmp_path / f"n{i}"
            p.rename(stem.with_suffix(".npz"))
            (stem.with_suffix(".json")).write_bytes(js.read_bytes())
            cases.append((stem, str(stem.with_suffix(".npz"))))
    for name, text in manifest_damage(m).items():
        stem = tmp_path / f"m_{name}"
        stem.with_suffix(".npz").write_bytes(npz.read_bytes())
        stem.with_suffix(".json").write_bytes(text.encode("utf-8", "surrogateescape"))
        cases.append((stem, str(stem.with_suffix(".json"))))
    assert len(cases) > 30
    for stem, names in cases:
        refused(["eval", "--chip", str(stem), "--limit", "2"], capsys, names)


@pytest.mark.parametrize("text", [
    "[system]\ng_max_us = inf\n", "[system]\nn_pe = 9223372036854775807\n",
    "[system]\ncond_code_bits = 64\n", "[system]\nn_pe = 256\narray_rows = 4096\n"
    "array_cols = 4096\nreplication = 1\n", "[system]\ncell_states = 1\nweight_levels = 1\n",
    "[system]\nadc_bits = \"8\"\n", "[system]\nclock_mhz = nan\n", "[system]\n[device]\n",
    "[system]\nn_pe = [1]\n", "[system]\nadcs_per_pe = 0\n", "\x00\x01\x02",
    "[system\n", "system = 3\n", "[system]\nextra = 1\n", "[other]\nx = 1\n"])
def test_bad_configurations(text, tmp_path, capsys):
    p = tmp_path / "c.toml"
    p.write_text(text, errors="surrogateescape")
    refused(["map", "--config", str(p)], capsys, str(p))


def test_config_that_is_not_a_file(tmp_path, capsys):
    for p in (tmp_path, Path("/dev/null"), tmp_path / "missing.toml"):
        refused(["map", "--config", str(p)], capsys, str(p))


def test_bad_device_files(tmp_path, capsys):
    for i, text in enumerate(["[device]\nc2c_sigma = inf\n", "[device]\nmax_pulses = 10000000000\n",
                              "[device]\n[other]\n", "[device]\ng_ceil_us = 1e300\n", "\xff"]):
        p = tmp_path / f"d{i}.toml"
        p.write_text(text, errors="surrogateescape")
        refused(["program", "--preset", str(p), "--out", str(tmp_path / "o")], capsys, str(p))


# ---------------------------------------------------------------------------------------------
# Options.

@pytest.mark.parametrize("argv, says", [
    (["sim", "--shards", "0"], "--shards must be in [1, 64], got 0"),
    (["demo", "--rtl-images", "-1"], "--rtl-images must be in [0, "),
    (["eval", "--limit", "0"], "--limit must be in [1, "),
    (["eval", "--age", "-5", "--chip", "x"], "--age must be in [0, "),
    (["eval", "--age", "nan", "--chip", "x"], "--age must be a finite number"),
    (["hybrid", "--chip", "x", "--out", "y", "--fraction", "0"], "--fraction must be in (0,"),
    (["hybrid", "--chip", "x", "--out", "y", "--on", "board"],
     "--on board needs exactly one of --port PATH and --sim"),
    (["hybrid", "--chip", "x", "--out", "y", "--on", "board", "--sim", "--port", "/dev/x"],
     "--on board needs exactly one of --port PATH and --sim"),
    (["hybrid", "--chip", "x", "--out", "y", "--port", "/dev/ttyUSB0"],
     "--port and --sim apply only with --on board"),
    (["hybrid", "--chip", "x", "--out", "y", "--on", "rtl", "--sim"],
     "--port and --sim apply only with --on board"),
    (["eval", "--drift-seed", "3"], "--drift-seed does not apply without --age"),
    (["eval", "--chip", "x", "--weights", "w"], "--weights does not apply with --chip"),
    (["eval", "--chip", "x", "--stage", "float"], "--stage does not apply with --chip"),
    (["sim", "--chip", "x", "--replication", "3"], "--replication does not apply with --chip"),
    (["verilog", "--chip", "x", "--config", "c"], "--config does not apply with --chip"),
    (["demo", "--no-chip", "--preset", "ideal"], "--preset does not apply with --no-chip"),
    (["energy", "--cycles", "0"], "--cycles must be in [1, "),
    (["energy", "--cycles", "100"], "below the mapping's lower bound"),
    (["train", "--epochs", "0", "--qat-epochs", "0"], "nothing to train"),
    (["eval", "--limit", "many"], "invalid int value: 'many'"),
    (["frobnicate"], "invalid choice"),
])
def test_bad_options(argv, says, capsys):
    assert says in refused(argv, capsys, None)


# ---------------------------------------------------------------------------------------------
# Outputs: refused before any work, nothing existing touched.

def snapshot(d: Path) -> dict:
    return {p: p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def test_bad_outputs(chip, tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    (tmp_path / "adir.npz").mkdir()
    mnist = tmp_path / "mnist.npz"
    mnist.write_bytes(data.BUNDLED_PATH.read_bytes())
    weights = tmp_path / "w.npz"
    weights.write_bytes(model_file.BUNDLED_WEIGHTS.read_bytes())
    npz, js = chipstate.paths(chip)
    before = snapshot(tmp_path), npz.read_bytes(), js.read_bytes()
    cases = [
        (["hybrid", "--chip", str(chip), "--out", str(chip), "--force"], "also an input"),
        (["hybrid", "--chip", str(js), "--out", str(npz)], "also an input"),
        (["program", "--out", str(chip)], "exists; give --force"),
        (["program", "--out", str(weights), "--force"], "holds a model file"),
        (["program", "--weights", str(weights), "--out", str(weights), "--force"],
         "also an input"),
        (["train", "--out", str(mnist), "--force"], "holds an MNIST data set"),
        (["train", "--data", str(mnist), "--out", str(mnist), "--force"], "also an input"),
        (["train", "--out", str(tmp_path / "afile" / "m.npz")], "is not a directory"),
        (["train", "--out", str(tmp_path / "adir.npz")], "is a directory"),
        (["program", "--out", "/proc/cim_chip"], "cannot write /proc/cim_chip"),
        (["demo", "--out", str(tmp_path / "afile")], "is a file, not a directory"),
        (["verilog", "--out", str(tmp_path / "afile")], "is a file, not a directory"),
        (["energy", "--run", str(tmp_path / "afile")], "is a file, not a directory"),
    ]
    for argv, says in cases:
        assert says in refused(argv, capsys, None), argv
    assert (snapshot(tmp_path), npz.read_bytes(), js.read_bytes()) == before


def test_existing_outputs_need_force(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["energy", "--run", str(run), "--json"]) == 0
    capsys.readouterr()
    first = (run / "energy.json").read_bytes()
    assert "energy.json exists; give --force" in refused(["energy", "--run", str(run)], capsys,
                                                         None)
    assert main(["energy", "--run", str(run), "--force", "--replication", "3", "--json"]) == 0
    capsys.readouterr()
    assert (run / "energy.json").read_bytes() != first
    assert sorted(p.name for p in run.iterdir()) == ["energy.json"]
