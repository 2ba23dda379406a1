"""Property-based fuzzing (hypothesis) of the configuration and the loaders: whatever the
input, the answer is a valid object or the loader's own error, never another exception."""

import io
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cim_spec import chipstate
from cim_spec.chipstate import ChipStateError
from cim_spec.config import ConfigError, SystemConfig
from cim_spec.device_params import DeviceError, DeviceParams
from cim_spec.npzread import read_npz
from golden import data, model_file
from golden.data import MnistError
from golden.model_file import ModelFileError

FAST = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])

values = st.one_of(
    st.integers(min_value=-2 ** 70, max_value=2 ** 70), st.floats(allow_nan=True),
    st.booleans(), st.text(max_size=5), st.none(), st.lists(st.integers(), max_size=2),
    st.sampled_from([0, 1, 2, 3, 8, 16, 64, 128, 4096, 0.125, 2.5, 20.0, 1e300]))


@FAST
@given(st.dictionaries(st.sampled_from([*SystemConfig().to_dict(), "bogus"]), values,
                       max_size=4))
def test_config_from_any_table(table):
    try:
        cfg = SystemConfig.from_dict(table)
    except ConfigError:
        return
    # What is accepted is usable: the derived quantities exist and are finite.
    assert 0 < cfg.g_min_code < cfg.g_max_code <= cfg.code_max < 2 ** 16
    assert cfg.state_step_code >= 1 and cfg.n_pe * cfg.array_rows * cfg.array_cols <= 1 << 24


@FAST
@given(st.dictionaries(st.sampled_from([*DeviceParams().to_dict(), "bogus"]), values,
                       max_size=4))
def test_device_from_any_table(table):
    try:
        DeviceParams.from_dict(table)
    except DeviceError:
        pass


@FAST
@given(st.binary(max_size=300))
def test_config_file_of_any_bytes(tmp_path, raw):
    p = tmp_path / "c.toml"
    p.write_bytes(raw)
    try:
        SystemConfig.load(p)
    except ConfigError as e:
        assert str(p) in str(e)


def _npz(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


GOOD_MNIST = _npz(x_train=np.zeros((3, 28, 28), np.uint8), y_train=np.arange(3, dtype=np.uint8),
                  x_test=np.ones((2, 28, 28), np.uint8), y_test=np.arange(2, dtype=np.uint8))


@st.composite
def damaged(draw, good: bytes):
    raw = bytearray(good)
    for _ in range(draw(st.integers(0, 6))):
        i = draw(st.integers(0, len(raw) - 1))
        raw[i] = draw(st.integers(0, 255))
    cut = draw(st.integers(0, len(raw)))
    return bytes(raw[:cut]) if draw(st.booleans()) else bytes(raw)


@FAST
@given(damaged(GOOD_MNIST))
def test_mnist_loader_of_damaged_bytes(tmp_path, raw):
    p = tmp_path / "m.npz"
    p.write_bytes(raw)
    try:
        d = data.load_mnist(p)
    except MnistError as e:
        assert str(e).startswith(str(p))
        assert "pickled" not in str(e)
        return
    assert d.n_test > 0


@FAST
@given(damaged(model_file.BUNDLED_WEIGHTS.read_bytes()) | st.binary(max_size=200))
def test_model_loader_of_damaged_bytes(tmp_path, raw):
    from cim_spec.network import MCNN
    p = tmp_path / "w.npz"
    p.write_bytes(raw)
    try:
        model = model_file.load(p, MCNN)
    except ModelFileError as e:
        assert str(e).startswith(str(p))
        return
    model_file.validate(model, MCNN)      # what loads is a whole model


@FAST
@given(damaged(GOOD_MNIST))
def test_npz_reader_errors_are_its_own(tmp_path, raw):
    p = tmp_path / "x.npz"
    p.write_bytes(raw)
    try:
        arrays = read_npz(p, ValueError)
    except ValueError as e:
        assert type(e) is ValueError and str(e).startswith(str(p))
        return
    assert all(isinstance(a, np.ndarray) for a in arrays.values())


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    from cim_spec import device_params
    from golden import transfer
    from tests.cim_spec.test_files import TINY, random_program
    cfg = SystemConfig(n_pe=4, array_rows=32, array_cols=16)
    mapping, prog = random_program(cfg, seed=5, net=TINY)
    state = transfer.program_chip(mapping, prog, device_params.load_preset("yao2020"), 3)
    stem = tmp_path_factory.mktemp("fuzz") / "s"
    chipstate.save(state, stem)
    return stem


def _leaves(obj, path=()):
    if isinstance(obj, dict) and obj:
        for k, v in obj.items():
            yield from _leaves(v, (*path, k))
    elif isinstance(obj, list) and obj:
        for i, v in enumerate(obj):
            yield from _leaves(v, (*path, i))
    yield path


@settings(max_examples=80, deadline=None)
@given(st.data())
def test_chip_manifest_with_any_field_changed(saved, data):
    """A manifest with one field set to anything (checksum fixed, so every check behind it
    is reached) loads, or is refused with a ChipStateError naming the manifest."""
    npz, js = chipstate.paths(saved)
    m = json.loads(js.read_text())
    path = data.draw(st.sampled_from([p for p in _leaves(m) if p and p[0] != "checksum"]))
    value = data.draw(values.filter(lambda v: not (isinstance(v, float) and not
                                                   np.isfinite(v))))
    target = m
    for k in path[:-1]:
        target = target[k]
    target[path[-1]] = value
    m["checksum"]["manifest"] = chipstate.manifest_checksum(m)
    case = saved.with_name("case")
    case.with_suffix(".npz").write_bytes(npz.read_bytes())
    case.with_suffix(".json").write_text(json.dumps(m))
    try:
        chipstate.load(case)
    except ChipStateError as e:
        assert str(case) in str(e)


def test_chip_manifest_whose_device_no_longer_fits_the_config(saved):
    """A device edited (checksum fixed) so that its write tolerance overlaps the
    configuration's states: refused naming the manifest, as every other field is (a case
    the test above found)."""
    npz, js = chipstate.paths(saved)
    m = json.loads(js.read_text())
    m["device"]["params"]["tolerance_us"] = 2.0
    m["checksum"]["manifest"] = chipstate.manifest_checksum(m)
    case = saved.with_name("narrow")
    case.with_suffix(".npz").write_bytes(npz.read_bytes())
    case.with_suffix(".json").write_text(json.dumps(m))
    with pytest.raises(ChipStateError, match="half a state step") as e:
        chipstate.load(case)
    assert str(case) in str(e.value)
