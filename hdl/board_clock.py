"""The chip board's clock and serial rate: the ECP5 PLL's dividers and the UART's divisor
(hdl/board_chip.py's Ulx3sChipTop uses both; docs/board.md)."""

from __future__ import annotations


def pll_params(fin_mhz: float, fout_mhz: float) -> dict:
    """EHXPLLL dividers for fout from fin with CLKOP as feedback (as Project Trellis'
    ecppll chooses them): fout = fin / CLKI_DIV * CLKFB_DIV, the VCO (fout * CLKOP_DIV) in
    400..800 MHz, the phase detector at 3.125..400 MHz. The closest frequency wins (within
    0.1%, else refused); its value is returned as `mhz`."""
    best = None
    for clki in range(1, 129):
        pfd = fin_mhz / clki
        if not 3.125 <= pfd <= 400:
            continue
        for fb in range(1, 81):
            out = pfd * fb
            for op in range(1, 129):
                if 400 <= out * op <= 800:
                    err = abs(out - fout_mhz)
                    if best is None or err < best[0] - 1e-9:
                        best = (err, clki, fb, op, out)
                    break
    if best is None or best[0] > 0.001 * fout_mhz:
        raise ValueError(f"no EHXPLLL setting makes {fout_mhz:g} MHz from {fin_mhz:g} MHz"
                         + (f" (closest {best[4]:g} MHz)" if best else ""))
    _, clki, fb, op, out = best
    return {"CLKI_DIV": clki, "CLKFB_DIV": fb, "CLKOP_DIV": op,
            "CLKOP_CPHASE": op // 2 - 1, "mhz": out}


def uart_divisor(clock_hz: float, baud: int, tolerance: float = 0.02) -> int:
    """Clock cycles per bit; refused when the rate is off by more than `tolerance`."""
    divisor = round(clock_hz / baud)
    if divisor < 4 or abs(clock_hz / divisor - baud) > tolerance * baud:
        raise ValueError(f"{baud} baud from {clock_hz / 1e6:g} MHz is off by more than "
                         f"{tolerance:.0%} (divisor {divisor}); choose another rate or clock")
    return divisor
