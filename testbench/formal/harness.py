"""The pieces every formal harness is built from.

A harness (an Amaranth module elaborated for the "formal" platform) holds the block under
proof, drives each of its inputs from a free signal (`AnySeq`, any value on any cycle), ties
reset low so the proof starts from the block's reset state, assumes the stream contract on the
streams the block consumes and asserts it on the streams it produces
(`hdl.checks.stream_contract`), and adds block-specific properties: transfer conservation
(`in_flight`) and data contracts against small references written here.
"""

from __future__ import annotations

import itertools

from amaranth import ClockDomain, Elaboratable, Module, Signal
from amaranth.asserts import AnySeq
from amaranth.hdl import Assert, Assume
from amaranth.lib.wiring import Flow

from hdl.checks import stream_contract


def is_stream(member) -> bool:
    return member.is_signature and {"valid", "ready", "payload"} <= set(member.signature.members)


def streams(dut):
    """(name, flow, interface) of each stream of `dut`'s signature, arrays flattened."""
    for name, member in dut.signature.members.items():
        if not is_stream(member):
            continue
        value = getattr(dut, name)
        if member.dimensions:
            for index in itertools.product(*(range(n) for n in member.dimensions)):
                port = value
                for i in index:
                    port = port[i]
                yield f"{name}{''.join(f'_{i}' for i in index)}", member.flow, port
        else:
            yield name, member.flow, value


def drive_inputs(m: Module, dut, fixed=()) -> None:
    """Every input port of `dut` (except the paths in `fixed`) from a free signal."""
    for path, member, value in dut.signature.flatten(dut):
        if member.flow == Flow.In and path not in fixed:
            m.d.comb += value.eq(AnySeq(value.shape()))


def contracts(m: Module, dut, assume_inputs: bool = True) -> None:
    """Assume the stream contract on the streams `dut` consumes (unless the harness drives
    them itself) and assert it on those it produces."""
    for name, flow, port in streams(dut):
        if flow == Flow.In:
            if assume_inputs:
                stream_contract(m, port, Assume, name=f"assume_{name}")
        else:
            stream_contract(m, port, Assert, name=f"assert_{name}")


def took(port):
    """A transfer on `port` this cycle."""
    return port.valid & port.ready


def in_flight(m: Module, name: str, enter, leave, held=None, capacity: int = 1,
              idle=None) -> Signal:
    """No transfer lost or duplicated across a stage: the count of items that entered and
    have not left never goes below 0 or above `capacity`; it equals `held` (the stage's own
    account of what it holds, e.g. its busy output) on every cycle, and is 0 whenever `idle`
    holds."""
    count = Signal(range(-1, capacity + 2), name=f"{name}_in_flight")
    m.d.sync += count.eq(count + enter - leave)
    m.d.comb += [Assert(count >= 0, f"{name}: a transfer left that never entered"),
                 Assert(count <= capacity, f"{name}: more in flight than the stage holds")]
    if held is not None:
        m.d.comb += Assert(count == held, f"{name}: in flight disagrees with the stage")
    if idle is not None:
        with m.If(idle):
            m.d.comb += Assert(count == 0, f"{name}: idle with a transfer inside")
    return count


class Harness(Elaboratable):
    """`dut` with free inputs and the stream contracts; `extra(m, dut)` adds the block's own
    properties (and may fix inputs it names in `fixed`, paths as `signature.flatten` gives)."""

    def __init__(self, dut, extra=None, fixed=()):
        self.dut, self.extra, self.fixed = dut, extra, tuple(fixed)
        self.cd_sync = ClockDomain("sync")

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = self.dut
        # The harness's own clock domain (its clock the design's one port), its reset tied
        # low, as Amaranth's FIFO proofs do.
        m.domains.sync = self.cd_sync
        m.d.comb += self.cd_sync.rst.eq(0)
        drive_inputs(m, self.dut, self.fixed)
        contracts(m, self.dut)
        if self.extra is not None:
            self.extra(m, self.dut)
        return m
