"""The update engine's energy (cim_flows/engine_energy.py) against its closed form, written
out here from the published per-operation figures (Horowitz, ISSCC 2014, scaled to 130 nm /
1.2 V) and E = V^2 G t for a pulse."""

import pytest

from cim_flows import engine_energy
from cim_spec.config import ConfigError, SystemConfig

NODE = (130 / 45) * (1.2 / 0.9) ** 2
ADD_BIT = 0.1 / 32 * NODE             # pJ per bit of an add or comparison
SRAM_BYTE = 10.0 / 8 * NODE           # pJ per byte of an 8 KB SRAM access


@pytest.mark.parametrize("n_out, n_in, acc_bits, logit_bits", [(10, 192, 12, 24), (3, 8, 10, 6)])
def test_figures_are_the_closed_form(n_out, n_in, acc_bits, logit_bits):
    f = engine_energy.engine_figures(SystemConfig(), n_out, n_in, acc_bits, logit_bits)
    # two rows of n_in accumulators, each read and written (acc_bits / 8 bytes each way)
    memory = 2 * n_in * 2 * acc_bits / 8 * SRAM_BYTE
    adds = 2 * n_in * acc_bits * ADD_BIT
    compares = 2 * n_in * 2 * acc_bits * ADD_BIT
    assert f["per_update_digital_pj"] == pytest.approx(
        {"memory": memory, "adds": adds, "compares": compares}, rel=1e-12)
    assert f["per_update_digital_total_pj"] == pytest.approx(memory + adds + compares)
    assert f["per_image_pj"] == pytest.approx((n_out + 1) * logit_bits * ADD_BIT)
    assert f["per_request_pj"] == pytest.approx(acc_bits * ADD_BIT)
    # 2 V across a 20 uS cell for 5 cycles at 100 MHz
    assert f["per_pulse_pj"] == pytest.approx(2.0 ** 2 * 20e-6 * 50e-9 * 1e12)


def test_default_engine_figure():
    """The figure docs/energy.md quotes: 7.62 nJ digital per updating image, 4 pJ a pulse."""
    f = engine_energy.engine_figures()
    assert round(f["per_update_digital_total_pj"] / 1e3, 2) == 7.62
    assert f["per_pulse_pj"] == pytest.approx(4.0)


def test_run_totals():
    run = {"stage": "engine", "images": 100, "epochs": 3, "updates": 40, "requests": 250,
           "pulses": 245}
    cfg = SystemConfig(clock_mhz=50.0, pulse_cycles=10, g_max_us=15.0)
    f = engine_energy.engine_figures(cfg, run=run)
    pulse = 2.0 ** 2 * 15e-6 * 200e-9 * 1e12
    assert f["per_pulse_pj"] == pytest.approx(pulse)
    want = {"scan": 300 * f["per_image_pj"], "updates": 40 * f["per_update_digital_total_pj"],
            "requests": 250 * f["per_request_pj"], "pulses": 245 * pulse}
    assert f["run"]["energy_pj"] == pytest.approx(want)
    assert f["run"]["total_pj"] == pytest.approx(sum(want.values()))
    assert f["run"]["per_update_pj"] == pytest.approx(
        (want["updates"] + want["requests"] + want["pulses"]) / 40)
    assert f["run"]["per_training_image_pj"] == pytest.approx(sum(want.values()) / 300)
    with pytest.raises(ConfigError, match="updates"):
        engine_energy.engine_figures(run={**run, "updates": -1})
    with pytest.raises(ConfigError, match="n_in"):
        engine_energy.engine_figures(n_in=0)
