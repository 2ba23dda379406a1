"""The RTL's invariants as Amaranth assertions, elaborated only for verification.

Blocks add their checks when elaborated for the platform `ASSERTS` (the Verilator builds of
the testbenches, through `hdl.build.generate(..., asserts=True)`) or for Amaranth's "formal"
platform (the SymbiYosys proofs of testbench/formal). Every other build (synthesis, the ASIC
and board flows, benchmarks) has none: yosys's plain Verilog reader refuses `assert`.
"""

from __future__ import annotations

from amaranth import Module, Signal, Value
from amaranth.hdl import Assert, Assume

# The platform object a verification build elaborates for (a plain marker).
ASSERTS = "cim-asserts"


def enabled(platform) -> bool:
    return platform == ASSERTS or platform == "formal"


def on_input(platform):
    """How a block checks what its inputs promise (e.g. a read's line count): an assertion
    in simulation, which catches the producer that breaks it, and an assumption in a proof,
    whose inputs are otherwise free."""
    return Assume if platform == "formal" else Assert


def stream_contract(m: Module, port, check=Assert, name: str = "stream") -> None:
    """The stream contract of amaranth.lib.stream on `port`: once `valid` is offered it stays
    until a cycle with `ready`, and the payload does not change meanwhile. `check` is Assert
    on a producer's side and Assume (formal only) on a consumer's inputs. Reset clears the
    history, so a reset may withdraw an offer."""
    stalled = Signal(name=f"{name}_stalled")
    held = Signal(port.payload.shape(), name=f"{name}_held")
    m.d.sync += [stalled.eq(port.valid & ~port.ready), held.eq(port.payload)]
    with m.If(stalled):
        m.d.comb += [check(port.valid, f"{name}: valid withdrawn before ready"),
                     check(Value.cast(port.payload) == Value.cast(held),
                           f"{name}: payload changed while stalled")]
