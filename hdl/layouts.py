"""Stream payload layouts between the blocks of a PE, built from its `PEParams`."""

from __future__ import annotations

from amaranth import signed, unsigned
from amaranth.lib import data

from .params import PEParams


def read_request(p: PEParams) -> data.StructLayout:
    """One array read: an input vector for the bit lines and which lines to read.

    `first` starts a new partial sum; `last` emits it after this read (chunk accumulation).
    """
    return data.StructLayout({
        "x": data.ArrayLayout(unsigned(p.input_bits), p.cols),
        "row0": unsigned(p.row_bits),
        "n_lines": unsigned(p.line_bits),
        "gain": unsigned(p.gain_bits),
        "nonce": unsigned(32),
        "first": unsigned(1),
        "last": unsigned(1),
    })


def slot_context(p: PEParams) -> data.StructLayout:
    """What the back half of the pipeline needs to know about a slot."""
    return data.StructLayout({
        "slot": unsigned(p.slot_bits),
        "first_slot": unsigned(1),
        "last_slot": unsigned(1),
        "first_read": unsigned(1),
        "last_read": unsigned(1),
        "n_lines": unsigned(p.line_bits),
        "gain": unsigned(p.gain_bits),
    })


def slot(p: PEParams) -> data.StructLayout:
    """One read slot as the DAC drives it: which bit lines pulse, which source lines read."""
    return data.StructLayout({
        "bits": unsigned(p.cols),
        "row0": unsigned(p.row_bits),
        "nonce": unsigned(32),
        "ctx": slot_context(p),
    })


def currents(p: PEParams) -> data.StructLayout:
    return data.StructLayout({
        "current": data.ArrayLayout(unsigned(p.current_bits), p.max_lines),
        "ctx": slot_context(p),
    })


def codes(p: PEParams) -> data.StructLayout:
    return data.StructLayout({
        "code": data.ArrayLayout(unsigned(p.adc_bits), p.max_lines),
        "ctx": slot_context(p),
    })


def partial_sums(p: PEParams) -> data.ArrayLayout:
    return data.ArrayLayout(signed(p.acc_bits), p.max_outputs)


def program_write(p: PEParams) -> data.StructLayout:
    """A write of one cell's conductance code through the programming port."""
    return data.StructLayout({
        "row": unsigned(p.row_bits),
        "col": unsigned(p.col_bits),
        "code": unsigned(p.code_bits),
    })
