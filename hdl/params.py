"""Elaboration parameters of a processing element, derived from the system configuration.

The gateware takes one `PEParams`; widths are computed here once, from the ranges of
docs/datapath.md section 7, so that every block agrees on them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from cim_spec.config import ConfigError, SystemConfig


class CrossbarForm(enum.Enum):
    """How a PE's crossbar is built (hdl/crossbar.py); the values are the names the command
    line and the flows use (`CrossbarForm("amaranth")`)."""

    VERILOG = "verilog"      # behavioral Verilog macro: the fast form for Verilator
    AMARANTH = "amaranth"    # Amaranth in block RAM: amaranth.sim and the FPGA emulation
    BLACKBOX = "blackbox"    # an empty macro instance, for ASIC flows


def check_form(form) -> CrossbarForm:
    """`form` itself if it is a CrossbarForm; a name (a string) is refused, so that only the
    edge (flows, command line) converts names."""
    if not isinstance(form, CrossbarForm):
        raise TypeError(f"crossbar form must be a CrossbarForm (CrossbarForm({form!r}) converts "
                        f"a name), got {form!r}")
    return form


# Read noise keys each line read by (slot << 8) | row (docs/datapath.md section 6), so rows
# above 255 would collide with the slot bits: with read noise an array has at most this many.
NOISE_MAX_ROWS = 256


def bits_for(n: int) -> int:
    """Bits of an unsigned value 0..n."""
    return max(1, int(n).bit_length())


@dataclass(frozen=True)
class PEParams:
    """Everything a PE's gateware is elaborated from: the array and converter sizes of the
    system configuration, the most lines and chunks one read and one partial sum use (from
    the mapping), the read-noise amplitude and this PE's noise seed, and the FPGA crossbar's
    lanes and ADC gain multipliers. Checked on construction (ConfigError); the widths below
    derive from it."""

    rows: int = 128
    cols: int = 16
    code_bits: int = 8
    input_bits: int = 8
    adc_bits: int = 8
    adcs: int = 32
    gain_bits: int = 32
    gain_frac_bits: int = 16
    pulse_cycles: int = 5
    adc_conv_cycles: int = 1
    max_lines: int = 24         # most source lines one read selects (2 x outputs of a block)
    max_chunks: int = 16        # most chunk reads one partial sum accumulates
    read_noise: int = 0         # integer amplitude of docs/datapath.md section 6; 0 = off
    pe_seed: int = 0
    # Source lines the AMARANTH crossbar (the FPGA emulation) sums per cycle; None derives
    # the fewest that never lengthen the slot period (default_lanes). Fewer: less area, and
    # slower once ceil(n_lines / lanes) + 1 exceeds the slot period (docs/pe.md).
    lanes: int | None = None
    # ADC gain multipliers of the AMARANTH form (the FPGA emulation), shared by the lines of a
    # slot over successive cycles; None derives the fewest that never lengthen the slot period
    # (default_gain_mults). The macros' forms convert with `adcs` ADCs as modelled.
    gain_mults: int | None = None

    def __post_init__(self):
        for name in ("rows", "cols", "code_bits", "input_bits", "adc_bits", "adcs", "gain_bits",
                     "pulse_cycles", "adc_conv_cycles", "max_lines", "max_chunks"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"PE parameter {name} must be a positive integer, got {v!r}")
        if self.max_lines % 2 or self.max_lines > self.rows:
            raise ConfigError(f"max_lines={self.max_lines} must be even and at most rows="
                              f"{self.rows} (lines come in differential pairs)")
        if not 0 <= self.read_noise < 2 ** 13:
            raise ConfigError(f"read_noise={self.read_noise} must be in 0..8191")
        if self.read_noise and self.rows > NOISE_MAX_ROWS:
            raise ConfigError(f"rows={self.rows}: read noise keys a line by (slot << 8) | row "
                              f"(docs/datapath.md section 6), so arrays with read noise have "
                              f"at most {NOISE_MAX_ROWS} rows")
        if not 0 <= self.pe_seed < 2 ** 32:
            raise ConfigError(f"pe_seed={self.pe_seed} must be a 32-bit unsigned value")
        if not 0 <= self.gain_frac_bits < self.gain_bits:
            raise ConfigError(f"gain_frac_bits={self.gain_frac_bits} must be below gain_bits="
                              f"{self.gain_bits}")
        if self.lanes is None:
            object.__setattr__(self, "lanes", self.default_lanes())
        if isinstance(self.lanes, bool) or not isinstance(self.lanes, int) or \
                not 1 <= self.lanes <= self.max_lines:
            raise ConfigError(f"lanes={self.lanes!r} must be an integer in 1..max_lines="
                              f"{self.max_lines}")
        if self.gain_mults is None:
            object.__setattr__(self, "gain_mults", self.default_gain_mults())
        if isinstance(self.gain_mults, bool) or not isinstance(self.gain_mults, int) or \
                not 1 <= self.gain_mults <= self.max_lines:
            raise ConfigError(f"gain_mults={self.gain_mults!r} must be an integer in "
                              f"1..max_lines={self.max_lines}")

    def default_gain_mults(self) -> int:
        """Fewest multipliers whose conversion, ceil(max_lines / gain_mults) + 1 cycles (the
        multiplies, then their pipeline register), plus the ADC's output register fits the
        slot period the modelled ADCs and the pulse already need: max(pulse_cycles,
        conversions * adc_conv_cycles + 1, 2). The AMARANTH ADC then never lengthens the slot
        period (24 lines, 5-cycle pulses: 8); at most max_lines (one per line)."""
        budget = max(self.pulse_cycles, self.conversions * self.adc_conv_cycles + 1, 3) - 2
        return min(self.max_lines, -(-self.max_lines // budget))

    def default_lanes(self) -> int:
        """Fewest lanes whose groups, ceil(max_lines / lanes), plus one cycle fit the
        shortest slot period the other stages allow, max(pulse_cycles, 2) (24 lines, 5-cycle
        pulses: 6 lanes, 24 DP16KD per PE). The crossbar's register between block RAM and
        adder tree adds one more cycle, so a slot of max_lines lines takes one cycle longer
        than the pulse (docs/pe.md); one lane more per group would cost 4 block RAMs each."""
        budget = max(self.pulse_cycles, 2) - 1
        return -(-self.max_lines // budget)

    @classmethod
    def from_config(cls, cfg: SystemConfig, *, max_lines: int | None = None,
                    max_chunks: int = 16, read_noise: int = 0, pe_seed: int = 0,
                    gain_bits: int = 32, lanes: int | None = None,
                    gain_mults: int | None = None) -> PEParams:
        """The PE of a system configuration; what the mapping and the chip program decide
        (lines, chunks, read noise, seed, gain width) is given separately."""
        return cls(rows=cfg.array_rows, cols=cfg.array_cols, code_bits=cfg.cond_code_bits,
                   input_bits=cfg.input_bits, adc_bits=cfg.adc_bits, adcs=cfg.adcs_per_pe,
                   gain_frac_bits=cfg.adc_gain_frac_bits, pulse_cycles=cfg.pulse_cycles,
                   adc_conv_cycles=cfg.adc_conv_cycles,
                   max_lines=max_lines if max_lines is not None else min(cfg.array_rows, 24),
                   max_chunks=max_chunks, read_noise=read_noise, pe_seed=pe_seed,
                   gain_bits=gain_bits, lanes=lanes, gain_mults=gain_mults)

    # Derived widths.
    @property
    def row_bits(self) -> int:
        return bits_for(self.rows - 1)

    @property
    def col_bits(self) -> int:
        return bits_for(self.cols - 1)

    @property
    def line_bits(self) -> int:
        return bits_for(self.max_lines)

    @property
    def slot_bits(self) -> int:
        return bits_for(self.input_bits - 1)

    @property
    def max_outputs(self) -> int:
        return self.max_lines // 2

    @property
    def current_bits(self) -> int:
        # Noise can add less than the noiseless current itself (datapath.md section 7).
        top = self.cols * (2 ** self.code_bits - 1)
        return bits_for(2 * top if self.read_noise else top)

    @property
    def acc_bits(self) -> int:
        """Signed partial sum: |sum| < max_chunks * 2**(adc_bits + input_bits)."""
        return self.adc_bits + self.input_bits + bits_for(self.max_chunks) + 1

    @property
    def conversions(self) -> int:
        """ADC conversions per slot when all max_lines lines are read."""
        return -(-self.max_lines // self.adcs)

    def conversions_for(self, lines: int) -> int:
        return -(-lines // self.adcs)

    def crossbar_cycles(self, lines: int, form: CrossbarForm = CrossbarForm.VERILOG) -> int:
        """Cycles from a slot's sample to its currents at the crossbar's output: 1 for the
        behavioral and black-box macros; for the AMARANTH emulation one cycle per group of
        `lanes` lines (at least one group), plus the block-RAM read and the register before
        the adder trees."""
        if check_form(form) is not CrossbarForm.AMARANTH:
            return 1
        return max(1, -(-lines // self.lanes)) + 2

    def adc_cycles(self, lines: int, form: CrossbarForm = CrossbarForm.VERILOG) -> int:
        """Cycles from a sample to the codes in the ADC's output register, that register not
        counted: the modelled conversion rounds, ceil(lines / adcs) * adc_conv_cycles; in the
        AMARANTH form at least ceil(lines / gain_mults) + 1 (the shared multipliers, one group
        of lines per cycle, and their pipeline register), so it never converts faster than
        the modelled ADCs."""
        rounds = self.conversions_for(lines) * self.adc_conv_cycles
        if check_form(form) is not CrossbarForm.AMARANTH:
            return rounds
        return max(rounds, max(1, -(-lines // self.gain_mults)) + 1)

    def slot_cycles(self, lines: int, form: CrossbarForm = CrossbarForm.VERILOG) -> int:
        """Cycles per read slot in steady state: the pulse, or the ADC or the crossbar if one
        of them is slower (each stage takes a new slot as it hands on the last)."""
        return max(self.pulse_cycles, self.adc_cycles(lines, form) + 1,
                   self.crossbar_cycles(lines, form))

    def busy_cycles(self, n: int, lines: int,
                    form: CrossbarForm = CrossbarForm.VERILOG) -> int:
        """Busy cycles for n back-to-back vectors reading `lines` lines, outputs never stalled.

        The first slot's pulse, then one slot period for each further slot, then the last
        slot's trip through the crossbar (crossbar_cycles), the ADC (adc_cycles), the ADC's output
        register (1) and the shift-add's (1). docs/pe.md draws the timing.
        """
        slots = n * self.input_bits
        return (self.pulse_cycles + (slots - 1) * self.slot_cycles(lines, form)
                + self.crossbar_cycles(lines, form) + self.adc_cycles(lines, form) + 2)
