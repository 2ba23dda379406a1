"""Amaranth gateware of the CIM chip: DAC drivers, crossbar macro, ADCs, shift-add, PE, chip."""
