"""The crossbar macro of one PE, in three interchangeable forms with the same ports.

* ``"verilog"``: the behavioral Verilog model `hdl/verilog/cim_crossbar.v`, which computes only
  on a read slot and only the selected lines: the fast form for Verilator.
* ``"amaranth"``: the same function in Amaranth (a memory and adder trees): simulates under
  amaranth.sim and synthesizes as the FPGA emulation of the analog array.
* ``"blackbox"``: an instance of `cim_crossbar` with no contents, for ASIC flows
  (`hdl/verilog/cim_crossbar_blackbox.v` declares it).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from amaranth import ClockSignal, Const, Instance, Module, Mux, ResetSignal, Signal
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from . import layouts, noise
from .params import PEParams

VERILOG_DIR = Path(__file__).resolve().parent / "verilog"
BEHAVIORAL_SOURCE = VERILOG_DIR / "cim_crossbar.v"
BLACKBOX_SOURCE = VERILOG_DIR / "cim_crossbar_blackbox.v"
FORMS = ("verilog", "amaranth", "blackbox")


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

    def __init__(self, p: PEParams, init=None, form: str = "verilog"):
        if form not in FORMS:
            raise ValueError(f"crossbar form must be one of {FORMS}, got {form!r}")
        self.p, self.form = p, form
        self.init = check_init(p, init)
        super().__init__({
            "i": In(stream.Signature(layouts.slot(p))),
            "o": Out(stream.Signature(layouts.currents(p))),
            "prog": In(stream.Signature(layouts.program_write(p))),
        })

    def elaborate(self, platform):
        m = Module()
        sample = Signal()
        m.d.comb += [
            self.i.ready.eq(~self.o.valid | self.o.ready),
            sample.eq(self.i.valid & self.i.ready),
            self.prog.ready.eq(1),
        ]
        with m.If(sample):
            m.d.sync += [self.o.valid.eq(1), self.o.payload.ctx.eq(self.i.payload.ctx)]
        with m.Elif(self.o.ready):
            m.d.sync += self.o.valid.eq(0)

        if self.form == "amaranth":
            self._amaranth_array(m, sample)
        else:
            self._instance(m, sample)
        return m

    def _instance(self, m, sample):
        p, s = self.p, self.i.payload
        params = dict(p_ROWS=p.rows, p_COLS=p.cols, p_CODE_BITS=p.code_bits,
                      p_MAX_LINES=p.max_lines, p_ROW_BITS=p.row_bits, p_COL_BITS=p.col_bits,
                      p_LINE_BITS=p.line_bits, p_SLOT_BITS=p.slot_bits,
                      p_CUR_BITS=p.current_bits, p_READ_NOISE=p.read_noise,
                      p_PE_SEED=Const(p.pe_seed, 32))
        if self.form == "verilog":
            params["p_INIT"] = Const(pack_init(p, self.init), p.rows * p.cols * p.code_bits)
        m.submodules.macro = Instance(
            "cim_crossbar", **params,
            i_clk=ClockSignal("sync"), i_rst=ResetSignal("sync"),
            i_sample=sample, i_bits=s.bits, i_row0=s.row0, i_n_lines=s.ctx.n_lines,
            i_slot=s.ctx.slot, i_nonce=s.nonce,
            o_currents=self.o.payload.current,
            i_prog_en=self.prog.valid, i_prog_row=self.prog.payload.row,
            i_prog_col=self.prog.payload.col, i_prog_code=self.prog.payload.code)

    def _amaranth_array(self, m, sample):
        p, s = self.p, self.i.payload
        cell_row = data.ArrayLayout(p.code_bits, p.cols)
        m.submodules.cells = cells = memory.Memory(
            shape=cell_row, depth=p.rows, init=[list(map(int, r)) for r in self.init])
        wr = cells.write_port(granularity=1)   # one enable bit per cell (ArrayLayout element)
        m.d.comb += [
            wr.addr.eq(self.prog.payload.row),
            wr.data.eq(self.prog.payload.code.replicate(p.cols)),
            wr.en.eq(Mux(self.prog.valid, 1 << self.prog.payload.col, 0)),
        ]
        for j in range(p.max_lines):
            rd = cells.read_port(domain="comb")
            row = Signal(p.row_bits, name=f"row_{j}")
            m.d.comb += [row.eq(s.row0 + j), rd.addr.eq(row)]
            total = sum(Mux(s.bits[c], rd.data[c], 0) for c in range(p.cols))
            if p.read_noise:
                h = noise.line_hash(p.pe_seed, s.nonce, s.ctx.slot, row)
                total = noise.noisy_current(total, h, p.read_noise)
            with m.If(sample):
                m.d.sync += self.o.payload.current[j].eq(Mux(j < s.ctx.n_lines, total, 0))

