"""The crossbar macro of one PE, in three interchangeable forms (`CrossbarForm`) with the
same ports.

* ``VERILOG``: the behavioral Verilog model `hdl/verilog/cim_crossbar.v`, which computes only
  on a read slot and only the selected lines: the fast form for Verilator.
* ``AMARANTH``: the same function in Amaranth, time-multiplexed for block RAM: the cells in
  memories with synchronous read ports, `p.lanes` source lines summed per cycle, so one slot
  takes ceil(n_lines / lanes) + 1 cycles instead of 1 (docs/pe.md, "Timing"). It simulates
  under amaranth.sim and synthesizes as the FPGA emulation of the analog array.
* ``BLACKBOX``: an instance of `cim_crossbar` with no contents, for ASIC flows
  (`hdl/verilog/cim_crossbar_blackbox.v` declares it).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from amaranth import ClockSignal, Const, Instance, Module, ResetSignal, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from . import checks, layouts
from .crossbar_fpga import emulate
from .params import CrossbarForm, PEParams, check_form

VERILOG_DIR = Path(__file__).resolve().parent / "verilog"
BEHAVIORAL_SOURCE = VERILOG_DIR / "cim_crossbar.v"
BLACKBOX_SOURCE = VERILOG_DIR / "cim_crossbar_blackbox.v"


def check_init(p: PEParams, init) -> np.ndarray:
    """A (rows, cols) array of conductance codes, or all zeros for None."""
    if init is None:
        return np.zeros((p.rows, p.cols), dtype=np.int64)
    g = np.asarray(init)
    if g.shape != (p.rows, p.cols):
        raise ValueError(f"crossbar init has shape {g.shape}, the array is {(p.rows, p.cols)}")
    if not np.issubdtype(g.dtype, np.integer) or (g.size and (g.min() < 0 or
                                                             g.max() >= 2 ** p.code_bits)):
        raise ValueError(f"crossbar init must hold integer codes 0..{2 ** p.code_bits - 1}")
    return g.astype(np.int64)


def pack_init(p: PEParams, g: np.ndarray) -> int:
    """The cells as one integer, cell (r, c) at bits [(r*cols + c)*code_bits +: code_bits]."""
    flat = g.reshape(-1)
    value = 0
    for i in range(len(flat) - 1, -1, -1):
        value = (value << p.code_bits) | int(flat[i])
    return value


class Crossbar(wiring.Component):
    """Read slots in, per-line integer currents out; a programming port writes cells."""

    def __init__(self, p: PEParams, init=None, form: CrossbarForm = CrossbarForm.VERILOG):
        self.p, self.form = p, check_form(form)
        self.init = check_init(p, init)
        super().__init__({
            "i": In(stream.Signature(layouts.slot(p))),
            "o": Out(stream.Signature(layouts.currents(p))),
            "prog": In(stream.Signature(layouts.program_write(p))),
            # A slot is being read or its currents wait at the output: the PE stays busy (no
            # programming) until they are handed on.
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        if checks.enabled(platform):
            checks.stream_contract(m, self.o, name="crossbar.o")
        if self.form is CrossbarForm.AMARANTH:
            emulate(m, self)
            return m
        # The macro samples the selected lines' currents in one cycle.
        sample = Signal()
        m.d.comb += [
            self.i.ready.eq(~self.o.valid | self.o.ready),
            sample.eq(self.i.valid & self.i.ready),
            self.prog.ready.eq(1),
            self.busy.eq(self.o.valid),
        ]
        with m.If(sample):
            m.d.sync += [self.o.valid.eq(1), self.o.payload.ctx.eq(self.i.payload.ctx)]
        with m.Elif(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        self._instance(m, sample)
        return m

    def _instance(self, m, sample):
        p, s = self.p, self.i.payload
        params = dict(p_ROWS=p.rows, p_COLS=p.cols, p_CODE_BITS=p.code_bits,
                      p_MAX_LINES=p.max_lines, p_ROW_BITS=p.row_bits, p_COL_BITS=p.col_bits,
                      p_LINE_BITS=p.line_bits, p_SLOT_BITS=p.slot_bits,
                      p_CUR_BITS=p.current_bits, p_READ_NOISE=p.read_noise,
                      p_PE_SEED=Const(p.pe_seed, 32))
        if self.form is CrossbarForm.VERILOG:
            params["p_INIT"] = Const(pack_init(p, self.init), p.rows * p.cols * p.code_bits)
        m.submodules.macro = Instance(
            "cim_crossbar", **params,
            i_clk=ClockSignal("sync"), i_rst=ResetSignal("sync"),
            i_sample=sample, i_bits=s.bits, i_row0=s.row0, i_n_lines=s.ctx.n_lines,
            i_slot=s.ctx.slot, i_nonce=s.nonce,
            o_currents=self.o.payload.current,
            i_prog_en=self.prog.valid, i_prog_row=self.prog.payload.row,
            i_prog_col=self.prog.payload.col, i_prog_code=self.prog.payload.code)
