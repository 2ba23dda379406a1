"""The chip board top's clock and serial-rate choices (no simulation: hdl/board_chip.py's
protocol runs end to end in tests/cim_flows/test_board_link.py)."""

import pytest

from hdl.board_chip import pll_params, uart_divisor


@pytest.mark.parametrize("mhz", [50.0, 75.0, 100.0, 62.5, 40.0, 33.3333])
def test_pll_settings_make_the_frequency_within_the_ecp5_ranges(mhz):
    s = pll_params(25.0, mhz)
    pfd = 25.0 / s["CLKI_DIV"]
    out = pfd * s["CLKFB_DIV"]
    assert out == pytest.approx(mhz, rel=1e-3) and out == s["mhz"]
    assert 3.125 <= pfd <= 400 and 400 <= out * s["CLKOP_DIV"] <= 800
    assert s["CLKOP_CPHASE"] == s["CLKOP_DIV"] // 2 - 1


def test_pll_refuses_what_it_cannot_make():
    with pytest.raises(ValueError, match="EHXPLLL"):
        pll_params(25.0, 5000.0)


def test_uart_divisor_is_exact_or_refused():
    assert uart_divisor(50e6, 2_000_000) == 25
    assert uart_divisor(75e6, 3_000_000) == 25
    assert uart_divisor(100e6, 3_000_000) == 33          # 1% fast: within the 2%
    with pytest.raises(ValueError, match="off by more"):
        uart_divisor(50e6, 3_000_000, tolerance=0.01)  # 17 cycles: 1.96% off
    with pytest.raises(ValueError, match="off by more"):
        uart_divisor(10e6, 3_000_000)                   # fewer than 4 cycles per bit
