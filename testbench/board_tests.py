"""cocotb bridge between a pseudo-terminal and the chip board's serial pins.

The board top (hdl/board_chip.py, PLL bypassed, a UART of CIM_LINK_DIVISOR cycles per bit)
runs on Verilator; this module opens a pty, writes the name of its terminal side into
CIM_LINK_PTY_FILE and then moves bytes at the bit level: host bytes are driven onto
`ftdi_txd` as 8N1 waveforms, the board's `ftdi_rxd` is sampled in the middle of each bit and
the bytes written back to the pty. Any program that opens the terminal (cim board run --sim)
speaks the real protocol to the simulated board. The simulation ends when CIM_LINK_STOP
exists. A small divisor keeps the simulated time short; the bit timing is the gateware's
own (testbench.board_sim starts this).
"""

from __future__ import annotations

import os
import tty
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, Timer

PERIOD_NS = 10
RESET_CYCLES = 300


async def host_to_board(dut, master: int, divisor: int, stop: Path):
    """Bytes from the pty onto the board's receive pin."""
    bit = divisor * PERIOD_NS
    polls = 0
    while True:
        try:
            data = os.read(master, 4096)
        except BlockingIOError:
            data = b""
        if not data:
            polls += 1
            if polls % 64 == 0 and stop.exists():
                return
            await Timer(10 * bit, unit="ns")
            continue
        for byte in data:
            for level in [0, *[(byte >> k) & 1 for k in range(8)], 1]:
                dut.ftdi_txd.value = level
                await Timer(bit, unit="ns")


async def board_to_host(dut, master: int, divisor: int):
    """The board's transmit pin, sampled in the middle of each bit, into the pty."""
    bit = divisor * PERIOD_NS
    while True:
        await FallingEdge(dut.ftdi_rxd)
        await Timer(bit + bit // 2, unit="ns")
        byte = 0
        for k in range(8):
            byte |= int(dut.ftdi_rxd.value) << k
            await Timer(bit, unit="ns")
        if int(dut.ftdi_rxd.value) == 1:       # stop bit; a broken one is not a byte
            os.write(master, bytes([byte]))


@cocotb.test()
async def bridge(dut):
    divisor = int(os.environ["CIM_LINK_DIVISOR"])
    stop = Path(os.environ["CIM_LINK_STOP"])
    master, slave = os.openpty()
    tty.setraw(slave)
    os.set_blocking(master, False)
    Path(os.environ["CIM_LINK_PTY_FILE"]).write_text(os.ttyname(slave))
    dut.ftdi_txd.value = 1
    dut.btn.value = 0
    Clock(dut.clk_25mhz, PERIOD_NS, unit="ns").start()
    # The board is held in reset for its first 256 cycles (hdl/board_chip.py); a host that
    # writes as soon as the terminal exists would lose the bytes driven meanwhile.
    await ClockCycles(dut.clk_25mhz, RESET_CYCLES)
    cocotb.start_soon(board_to_host(dut, master, divisor))
    await host_to_board(dut, master, divisor, stop)
    os.close(master)
    os.close(slave)
