import pytest

from cim_spec.config import ConfigError, SystemConfig


def test_paper_defaults():
    cfg = SystemConfig()
    assert (cfg.n_pe, cfg.array_rows, cfg.array_cols) == (8, 128, 16)
    assert (cfg.weight_levels, cfg.cell_states, cfg.input_bits, cfg.adc_bits) == (15, 8, 8, 8)
    # The state codes are evenly spaced from g_min to g_max.
    codes = [cfg.state_code(s) for s in range(cfg.cell_states)]
    assert codes[0] == round(cfg.g_min_us / cfg.g_lsb_us)
    assert codes[-1] == round(cfg.g_max_us / cfg.g_lsb_us)
    assert len({b - a for a, b in zip(codes, codes[1:], strict=False)}) == 1


def test_toml_round_trip(tmp_path):
    cfg = SystemConfig(replication=3, adc_bits=6, g_max_us=18.0)
    path = tmp_path / "c.toml"
    cfg.save(path)
    assert SystemConfig.load(path) == cfg


@pytest.mark.parametrize("changes, message", [
    (dict(adc_bits=0), "adc_bits must be at least 1, got 0"),
    (dict(adc_bits=8.0), "adc_bits must be an integer"),
    (dict(n_pe=-1), "n_pe must be at least 1"),
    (dict(weight_levels=16), "weight_levels=16 cannot be made from differential pairs"),
    (dict(g_max_us=2.0), r"g_max_us \(2.0\) must exceed g_min_us"),
    (dict(g_max_us=40.0), "does not fit cond_code_bits=8"),
    (dict(g_lsb_us=5.0), "coarser than one conductance state"),
    (dict(replication=9), "replication=9 needs more PE groups than n_pe=8"),
    (dict(array_rows=127), "array_rows must be even"),
    (dict(act_bits=6), "act_bits"),
    (dict(read_voltage_v=0), "read_voltage_v must be a positive number"),
])
def test_impossible_configs_are_refused(changes, message):
    with pytest.raises(ConfigError, match=message):
        SystemConfig(**changes)


def test_bad_files_are_refused(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text("[system]\nadc_bits = 0\n")
    with pytest.raises(ConfigError, match=r"bad.toml: adc_bits must be at least 1"):
        SystemConfig.load(p)
    p.write_text("[system]\nadc_bitz = 4\n")
    with pytest.raises(ConfigError, match=r"unknown configuration keys: \['adc_bitz'\]"):
        SystemConfig.load(p)
    p.write_text("[system\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        SystemConfig.load(p)
    with pytest.raises(ConfigError, match="does not exist"):
        SystemConfig.load(tmp_path / "missing.toml")
