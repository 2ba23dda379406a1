"""Chip-state files: round trip, byte-for-byte reproducibility, and every kind of damage
refused with a message that names it."""

import json

import numpy as np
import pytest

from cim_spec import chipstate, device_params, program
from cim_spec.chipstate import ChipStateError
from cim_spec.config import SystemConfig
from cim_spec.mapping import map_network
from cim_spec.network import MCNN, Conv, Dense, Network, Pool, weight_shape
from golden import transfer
from golden.model_file import TrainedModel
from golden.quantize import compile_model


def random_program(cfg, seed=0, net=MCNN):
    """A quantized random network: enough to fill every cell with a meaningful target."""
    rng = np.random.default_rng(seed)
    w = {layer.name: rng.standard_normal(weight_shape(layer)).astype(np.float32)
         for layer in net.weight_layers()}
    acts = {layer.name: 0.01 * (i + 1) for i, layer in enumerate(net.weight_layers()[:-1])}
    model = TrainedModel(net.name, w, {k: float(np.abs(v).max() / 7) for k, v in w.items()},
                         acts)
    mapping = map_network(cfg, net)
    images = rng.integers(0, 256, size=(16, *net.input_shape[1:])).astype(np.uint8)
    return mapping, compile_model(model, mapping, images)


# A network other than the mCNN: the format holds any network the mapping accepts.
TINY = Network("tiny", (1, 10, 10), (Conv("A", 1, 4, 3), Pool("P", 2, 2), Conv("B", 4, 6, 2),
                                      Dense("F", 54, 5)))


@pytest.fixture(scope="module")
def programmed():
    mapping, prog = random_program(SystemConfig())
    return mapping, prog


def make_state(programmed, seed=7, preset="yao2020"):
    mapping, prog = programmed
    return transfer.program_chip(mapping, prog, device_params.load_preset(preset), seed)


def test_round_trip_and_chip(programmed, tmp_path):
    state = make_state(programmed)
    npz, js = chipstate.save(state, tmp_path / "chip")
    assert (npz.name, js.name) == ("chip.npz", "chip.json")
    for path in (tmp_path / "chip", npz, js):
        back = chipstate.load(path)
        assert np.array_equal(back.g_us, state.g_us)
        assert np.array_equal(back.chip.conductance,
                              device_params.to_codes(state.g_us, state.config))
        assert back.digital == state.digital
        assert back.config == state.config and back.device == state.device
        assert back.stage == "transfer" and back.manifest["seed"] == 7
    assert isinstance(back.chip, program.Chip)
    assert back.mapping.to_dict() == state.mapping.to_dict()
    m = json.loads(js.read_text())
    assert m["digital"]["read_noise"] == state.device.read_noise_amplitude > 0
    assert m["device"]["preset"] == "yao2020" and m["schema_version"] == chipstate.SCHEMA_VERSION


def test_another_network_round_trips(tmp_path):
    cfg = SystemConfig(n_pe=4, array_rows=32, array_cols=16)
    mapping, prog = random_program(cfg, seed=5, net=TINY)
    state = transfer.program_chip(mapping, prog, device_params.load_preset("yao2020"), 2)
    chipstate.save(state, tmp_path / "tiny")
    back = chipstate.load(tmp_path / "tiny")
    assert back.mapping.network == TINY
    assert back.mapping.to_dict() == mapping.to_dict()
    assert np.array_equal(back.chip.conductance, state.chip.conductance)
    assert sorted(back.levels) == ["A", "B", "F"]


def test_network_description_round_trips_and_is_checked():
    assert Network.from_dict(MCNN.to_dict()) == MCNN
    assert Network.from_dict(TINY.to_dict()) == TINY
    d = TINY.to_dict()
    d["layers"][0]["type"] = "lstm"
    with pytest.raises(ValueError, match=r"layers\[0\].type must be one of"):
        Network.from_dict(d)
    d = TINY.to_dict()
    d["layers"][3]["n_in"] = 55            # inconsistent with the map before it
    with pytest.raises(ValueError, match="expects 55 inputs"):
        Network.from_dict(d)
    d = TINY.to_dict()
    del d["layers"][1]["stride"]
    with pytest.raises(ValueError, match="must have exactly the fields"):
        Network.from_dict(d)


def test_version_1_files_still_load(saved):
    arrays, m = raw(saved)
    m["schema_version"], m["network"] = 1, "mcnn"
    write_raw(saved, arrays, m)
    assert chipstate.load(saved).mapping.network == MCNN
    m["network"] = "resnet"
    write_raw(saved, arrays, m)
    refused(saved, "network 'resnet' is not supported by version 1")


def test_bad_network_description(saved):
    arrays, m = raw(saved)
    m["network"]["layers"][-1]["n_out"] = 0
    write_raw(saved, arrays, m)
    refused(saved, "bad network description: .*n_out must be a positive integer")


def test_same_seed_same_bytes(programmed, tmp_path):
    a = chipstate.save(make_state(programmed, seed=3), tmp_path / "a")
    b = chipstate.save(make_state(programmed, seed=3), tmp_path / "b")
    c = chipstate.save(make_state(programmed, seed=4), tmp_path / "c")
    assert a[0].read_bytes() == b[0].read_bytes()
    assert a[1].read_bytes() == b[1].read_bytes()
    assert a[0].read_bytes() != c[0].read_bytes()


def test_replicas_carry_independent_errors():
    mapping, prog = random_program(SystemConfig(replication=3))
    state = transfer.program_chip(mapping, prog, device_params.load_preset("yao2020"), 1)
    g0, g1 = (np.concatenate([state.g_us[b.pe, b.row0:b.row0 + b.n_rows, :b.n_in].ravel()
                              for b in mapping.blocks if b.layer == "C3" and b.group == grp])
              for grp in (0, 1))
    t = np.concatenate([state.target[b.pe, b.row0:b.row0 + b.n_rows, :b.n_in].ravel()
                        for b in mapping.blocks if b.layer == "C3" and b.group == 0])
    assert not np.array_equal(g0, g1)
    e0, e1 = g0 - t * 0.125, g1 - t * 0.125
    assert abs(np.corrcoef(e0, e1)[0, 1]) < 0.5


# ---------------------------------------------------------------------------------------------
# Damage. `rewrite` changes a saved state and fixes both checksums, so that the checks behind
# the checksums are reached (a buggy writer, not a random corruption).

def raw(path):
    npz, js = chipstate.paths(path)
    with np.load(npz, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    return arrays, json.loads(js.read_text())


def write_raw(path, arrays, manifest, fix_checksums=True):
    npz, js = chipstate.paths(path)
    if fix_checksums:
        manifest["arrays"] = {k: {"dtype": a.dtype.str, "shape": list(a.shape)}
                              for k, a in arrays.items()}
        manifest["checksum"]["arrays"] = chipstate.arrays_checksum(arrays)
        manifest["checksum"]["manifest"] = chipstate.manifest_checksum(manifest)
    np.savez(npz, **arrays)
    js.write_text(json.dumps(manifest))


@pytest.fixture
def saved(programmed, tmp_path):
    chipstate.save(make_state(programmed), tmp_path / "s")
    return tmp_path / "s"


def refused(path, message):
    with pytest.raises(ChipStateError, match=message):
        chipstate.load(path)


def test_missing_files(saved):
    npz, js = chipstate.paths(saved)
    npz.unlink()
    refused(saved, "array file does not exist")
    js.unlink()
    refused(saved, "manifest does not exist")


def test_truncated_npz(saved):
    npz, _ = chipstate.paths(saved)
    data = npz.read_bytes()
    npz.write_bytes(data[:len(data) // 2])
    refused(saved, "truncated or corrupt chip-state array file")


def test_garbage_npz(saved):
    chipstate.paths(saved)[0].write_bytes(b"not a zip file at all")
    refused(saved, "not a readable chip-state array file: no zip header")


def test_pickled_arrays_are_refused(saved):
    arrays, m = raw(saved)
    arrays["codes"] = np.array([{"evil": 1}], dtype=object)
    npz, js = chipstate.paths(saved)
    np.savez(npz, **arrays)            # the manifest still declares int codes
    refused(saved, "pickled object array")


def test_bad_json(saved):
    chipstate.paths(saved)[1].write_text("{not json")
    refused(saved, "manifest is not valid JSON")


def test_wrong_schema(saved):
    arrays, m = raw(saved)
    m["schema_version"] = 99
    write_raw(saved, arrays, m)
    refused(saved, r"schema version 99; this version of cim reads versions \[1, 2\]")
    m["schema"] = "something-else"
    write_raw(saved, arrays, m)
    refused(saved, "not a chip-state manifest")


def test_array_checksum_mismatch(saved):
    arrays, m = raw(saved)
    arrays["g_us"] = arrays["g_us"].copy()
    arrays["g_us"][0, 0, 0] += 0.01
    write_raw(saved, arrays, m, fix_checksums=False)
    refused(saved, "checksum mismatch: the arrays are not the ones")


def test_manifest_tampered(saved):
    arrays, m = raw(saved)
    m["digital"]["adc_gain"]["C1"] += 1
    write_raw(saved, arrays, m, fix_checksums=False)
    refused(saved, "manifest checksum mismatch")


def test_shapes_mismatch(saved):
    arrays, m = raw(saved)
    arrays["codes"] = arrays["codes"][:, :, :15].copy()
    write_raw(saved, arrays, m)
    refused(saved, r"array 'codes' is declared as dtype <i4 shape \[8, 128, 15\], the "
                   r"configuration needs dtype <i4 shape \[8, 128, 16\]")


def test_npz_differs_from_its_manifest(saved):
    arrays, m = raw(saved)
    arrays["stuck"] = arrays["stuck"][:4].copy()
    np.savez(chipstate.paths(saved)[0], **arrays)     # the manifest is untouched
    refused(saved, r"array 'stuck' has dtype \|i1 shape \[4, 128, 16\], expected \|i1 "
                   r"\[8, 128, 16\]")


def test_config_does_not_match_arrays(saved):
    arrays, m = raw(saved)
    m["config"]["n_pe"] = 9      # a valid configuration, but the arrays hold 8 PEs
    m["mapping"] = json.loads(json.dumps(map_network(SystemConfig(n_pe=9), MCNN).to_dict()))
    write_raw(saved, arrays, m)
    refused(saved, r"array 'codes' is declared as .*the configuration needs dtype <i4 shape "
                   r"\[9, 128, 16\]")


def test_codes_out_of_range(saved):
    arrays, m = raw(saved)
    arrays["codes"] = arrays["codes"].copy()
    arrays["codes"][1, 2, 3] = 256
    write_raw(saved, arrays, m)
    refused(saved, r"conductance codes \d+\.\.256 lie outside 0\.\.255")


def test_codes_not_the_conductances(saved):
    arrays, m = raw(saved)
    arrays["codes"] = arrays["codes"].copy()
    arrays["codes"][1, 2, 3] += 1
    write_raw(saved, arrays, m)
    refused(saved, "codes are not the quantized conductances")


def test_mapping_mismatch(saved):
    arrays, m = raw(saved)
    m["mapping"]["blocks"][0]["pe"], m["mapping"]["blocks"][-1]["pe"] = \
        m["mapping"]["blocks"][-1]["pe"], m["mapping"]["blocks"][0]["pe"]
    write_raw(saved, arrays, m)
    refused(saved, "stored mapping is not the one the configuration gives")


def test_targets_not_from_levels(saved):
    arrays, m = raw(saved)
    arrays["levels.FC"] = arrays["levels.FC"].copy()
    arrays["levels.FC"][0, 0] = 7 if arrays["levels.FC"][0, 0] != 7 else -7
    write_raw(saved, arrays, m)
    refused(saved, "target codes are not those of the weight levels")


def test_bad_config_and_device_and_digital(saved):
    arrays, m = raw(saved)
    bad = json.loads(json.dumps(m))
    bad["config"]["adc_bits"] = 0
    write_raw(saved, arrays, bad)
    refused(saved, "bad configuration: adc_bits must be at least 1")
    bad = json.loads(json.dumps(m))
    bad["device"]["params"]["c2c_sigma"] = -1
    write_raw(saved, arrays, bad)
    refused(saved, "c2c_sigma must not be negative")
    bad = json.loads(json.dumps(m))
    bad["digital"]["requant_shift"]["C1"] = 0
    write_raw(saved, arrays, bad)
    refused(saved, "bad digital parameters: requant_shift\\[C1\\]")


def test_a_residual_network_with_named_replication_round_trips(tmp_path):
    from cim_spec.network import Add
    res = Network("res", (1, 8, 8), (
        Conv("A", 1, 4, 3, pad=1, bias=True), Conv("B", 4, 4, 3, pad=1, relu=False),
        Add("R", other="A"), Pool("G", 2, 2, mode="avg"), Dense("F", 64, 3, bias=True)))
    cfg = SystemConfig(n_pe=6, array_rows=32, array_cols=16, replication=2)
    mapping = map_network(cfg, res, replicate=["B"])
    rng = np.random.default_rng(3)
    levels = {la.name: rng.integers(-7, 8, (weight_shape(la)[0],
                                            int(np.prod(weight_shape(la)[1:]))))
              for la in res.weight_layers()}
    target = program.target_conductance(mapping, levels)
    dig = program.Digital({n: 100 + i for i, n in enumerate(["A", "B", "F"])},
                          {"A": 3000, "B": 2000, "R": 1500}, {"A": 12, "B": 12, "R": 12},
                          bias={"A": (1, -2, 3, -4), "F": (5, 6, -7)})
    prog = program.Program(levels, target, dig, 0.01, {n: 0.1 for n in levels},
                           {n: 0.01 for n in levels})
    state = transfer.program_chip(mapping, prog, device_params.load_preset("yao2020"), 2)
    chipstate.save(state, tmp_path / "res")
    back = chipstate.load(tmp_path / "res")
    assert back.mapping.network == res and back.digital == state.digital
    assert back.mapping.to_dict() == mapping.to_dict()
    assert not back.mapping.layer("A").replicated and back.mapping.layer("B").replicated
    # A bias of the wrong length is refused by the digital checks.
    with pytest.raises(ValueError, match=r"bias\[F\] must be 3 integers"):
        program.Digital(dig.adc_gain, dig.requant_mult, dig.requant_shift,
                        bias={"A": (1, 2, 3, 4), "F": (1,)}).check(mapping)


def test_hybrid_history_records_where_it_ran(programmed, tmp_path):
    """A hybrid entry may say where its forward passes ran (`cim hybrid --on`), only with a
    known value and only on a hybrid entry."""
    from dataclasses import replace
    state = make_state(programmed)
    entry = {"stage": "hybrid", "images": 10, "epochs": 1, "batch": 5, "lr": 0.05,
             "threshold_us": 0.3, "seed": 0, "pulses": 3}
    for on in (None, "rtl", "board"):
        e = dict(entry) if on is None else dict(entry, on=on)
        chipstate.save(replace(state, history=state.history + [e]), tmp_path / f"ok{on}")
        assert chipstate.load(tmp_path / f"ok{on}").history[-1] == e
    bad = [state.history + [dict(entry, on="gpu")], state.history + [dict(entry, on=1)],
           [dict(state.history[0], on="rtl"), entry]]
    for i, history in enumerate(bad):
        chipstate.save(replace(state, history=history), tmp_path / f"bad{i}")
        with pytest.raises(ChipStateError, match="on"):
            chipstate.load(tmp_path / f"bad{i}")


def test_engine_history_entry(programmed, tmp_path):
    """An engine entry (`cim hybrid --engine`) loads with its fields, and is refused naming
    the field when one is missing, unknown or out of range."""
    from dataclasses import replace
    state = make_state(programmed)
    entry = {"stage": "engine", "images": 10, "epochs": 1, "threshold": 512, "margin": 0,
             "acc_bits": 12, "seed": 0, "requests": 7, "updates": 2, "pulses": 6}
    chipstate.save(replace(state, history=state.history + [entry]), tmp_path / "ok")
    back = chipstate.load(tmp_path / "ok")
    assert back.history[-1] == entry and back.stage == "engine"
    bad = [({k: v for k, v in entry.items() if k != "margin"}, "lacks the fields"),
           (dict(entry, lr=0.1), "unknown fields"),
           (dict(entry, threshold=0), "threshold must be"),
           (dict(entry, margin=-1), "margin must be"),
           (dict(entry, updates=1.5), "updates must be")]
    for i, (e, message) in enumerate(bad):
        chipstate.save(replace(state, history=state.history + [e]), tmp_path / f"bad{i}")
        with pytest.raises(ChipStateError, match=message):
            chipstate.load(tmp_path / f"bad{i}")
