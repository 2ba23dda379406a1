"""Every formal proof of the gateware, and the broken variants each kind of proof must catch.

A proof is (harness factory, mode, depth). "prove" is k-induction at that depth: the
properties hold in every reachable state, unboundedly. "bmc" checks every behaviour of the
first `depth` cycles after reset; it is used where induction would need the block's internal
state in the harness (the data contracts, whose reference must agree with registers the block
keeps to itself) and for the whole PE. docs/verification.md lists what each one states.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from hdl.params import CrossbarForm

from . import broken, chip_specs, pe_specs


@dataclass(frozen=True)
class Proof:
    build: Callable
    mode: str
    depth: int


SPECS: dict[str, Proof] = {
    "dac": Proof(pe_specs.dac, "prove", 8),
    "crossbar_fpga": Proof(pe_specs.crossbar, "prove", 8),
    "adc": Proof(pe_specs.adc, "prove", 8),
    "adc_fpga": Proof(lambda: pe_specs.adc(form=CrossbarForm.AMARANTH), "prove", 8),
    "shift_add": Proof(lambda: pe_specs.shift_add(data=False), "prove", 8),
    "shift_add_sums": Proof(pe_specs.shift_add, "bmc", 12),
    "pe": Proof(pe_specs.pe, "bmc", 24),
    "feeder_0": Proof(lambda: chip_specs.feeder(0), "prove", 8),
    "feeder_2": Proof(lambda: chip_specs.feeder(2), "prove", 8),
    "merger_0": Proof(lambda: chip_specs.merger(0), "bmc", 12),
    "merger_1": Proof(lambda: chip_specs.merger(1), "bmc", 12),
    "pool_writer": Proof(chip_specs.pool_writer, "bmc", 12),
    "image_input": Proof(chip_specs.image_input, "prove", 8),
    "frame_tx": Proof(chip_specs.frame_tx, "prove", 8),
}

# Each must FAIL: a proof that cannot fail proves nothing.
BROKEN: dict[str, Proof] = {
    "dac_withdraws_valid": Proof(lambda: pe_specs.dac(cls=broken.DroppingDac), "prove", 8),
    "adc_loses_a_beat": Proof(lambda: pe_specs.adc(cls=broken.OverwritingAdc), "prove", 8),
    "shift_add_unshifted": Proof(lambda: pe_specs.shift_add(cls=broken.UnshiftedShiftAdd),
                                 "bmc", 12),
    "merger_forgets_a_pe": Proof(lambda: chip_specs.merger(0, cls=broken.ForgetfulMerger),
                                 "bmc", 12),
    "pool_loses_a_word": Proof(lambda: chip_specs.pool_writer(cls=broken.LosingPoolWriter),
                               "bmc", 12),
}
