"""cocotb drivers and a monitor for Amaranth streams (`valid`, `ready`, `payload`), in the
manner of cocotbext-axi's StreamSource/StreamSink/StreamMonitor: a queue per driver, a task
that drives the handshake, and pause generators that insert idle cycles on the source side
and back-pressure on the sink side.

Unlike cocotbext-axi, whose tasks wake at every clock edge, these sleep on the handshake
signals' edges whenever nothing can happen (queue empty, stream stalled, no data offered):
a Python wake-up costs as much as many simulated cycles, and the chip's fast path must let
the simulator run between results. So a pause generator is advanced only on the cycles its
driver is awake: a source's before offering a new item (never while an item waits for
`ready`: valid stays high and the payload stable until the transfer, as the stream contract
asks), a sink's on every cycle in which `valid` is high.

The handshake is judged in the ReadOnly phase before a clock edge, when valid and ready have
settled, so the drivers know exactly which edge a transfer happens on. Items are handed to
waiting tasks, and `send_nowait` must be called, in a writable phase (after a clock edge or
a timer), never from ReadOnly.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

import cocotb
from cocotb.triggers import Event, FallingEdge, First, ReadOnly, RisingEdge, ValueChange
from cocotb.utils import get_sim_time


@dataclass(frozen=True)
class StreamBus:
    """The three signals of one stream port."""

    valid: object
    ready: object
    payload: object

    @classmethod
    def from_prefix(cls, dut, prefix: str) -> StreamBus:
        """Amaranth's names for a stream member `prefix` of a top-level component."""
        return cls(getattr(dut, f"{prefix}__valid"), getattr(dut, f"{prefix}__ready"),
                   getattr(dut, f"{prefix}__payload"))


@dataclass(frozen=True)
class Transfer:
    payload: int
    time_ns: int            # the ReadOnly phase before the edge that transferred it


class StreamProtocolError(AssertionError):
    pass


def random_pauses(rng, p: float) -> Iterator[bool]:
    """Each awake cycle paused with probability p."""
    while True:
        yield bool(rng.random() < p)


def burst_pauses(rng, p: float, max_len: int) -> Iterator[bool]:
    """Bursts of 1..max_len paused cycles, a burst starting with probability p on each
    unpaused cycle (long stalls reach back into the design, short ones test the edges)."""
    while True:
        if rng.random() < p:
            yield from itertools.repeat(True, int(rng.integers(1, max_len + 1)))
        yield False


class _PauseMixin:
    _pause: Iterator[bool] | None = None

    def set_pause_generator(self, generator: Iterator[bool] | None = None) -> None:
        self._pause = generator

    def clear_pause_generator(self) -> None:
        self._pause = None

    def _paused(self) -> bool:
        return self._pause is not None and next(self._pause, False)


class StreamSource(_PauseMixin):
    """Offers queued payloads in order; holds each until the sink takes it."""

    def __init__(self, bus: StreamBus, clock):
        self.bus, self.clock = bus, clock
        self.queue: deque[int] = deque()
        self.transfers = 0
        self._queued, self._idle = Event(), Event()
        bus.valid.value = 0
        self._task = cocotb.start_soon(self._run())

    def send_nowait(self, payload: int) -> None:
        self.queue.append(int(payload))
        self._queued.set()

    async def send(self, payload: int) -> None:
        self.send_nowait(payload)

    def idle(self) -> bool:
        return not self.queue

    async def wait(self) -> None:
        """Until every queued payload has been transferred (returns after that edge)."""
        while self.queue:
            self._idle.clear()
            await self._idle.wait()

    async def _run(self):
        valid, ready, payload = self.bus.valid, self.bus.ready, self.bus.payload
        while True:
            if not self.queue:
                valid.value = 0
                self._idle.set()
                self._queued.clear()
                await self._queued.wait()
            if self._paused():
                valid.value = 0
                await RisingEdge(self.clock)
                continue
            payload.value = self.queue[0]
            valid.value = 1
            await ReadOnly()
            while not ready.value:
                # Stalled: sleep until the sink is ready (valid and payload are held).
                await RisingEdge(ready)
                await ReadOnly()
            await RisingEdge(self.clock)
            self.queue.popleft()
            self.transfers += 1


class StreamSink(_PauseMixin):
    """Takes every payload offered, holding `ready` low on paused cycles."""

    def __init__(self, bus: StreamBus, clock):
        self.bus, self.clock = bus, clock
        self.queue: deque[Transfer] = deque()
        self.transfers = 0
        self._got = Event()
        bus.ready.value = 0
        self._task = cocotb.start_soon(self._run())

    def empty(self) -> bool:
        return not self.queue

    def count(self) -> int:
        return len(self.queue)

    def recv_nowait(self) -> Transfer | None:
        return self.queue.popleft() if self.queue else None

    async def recv(self) -> Transfer:
        while not self.queue:
            self._got.clear()
            await self._got.wait()
        return self.queue.popleft()

    async def _run(self):
        valid, ready, payload = self.bus.valid, self.bus.ready, self.bus.payload
        while True:
            take = not self._paused()
            ready.value = int(take)
            await ReadOnly()
            got = None
            if valid.value:
                if take:
                    got = Transfer(int(payload.value), int(get_sim_time("ns")))
                await RisingEdge(self.clock)
            else:
                # Nothing offered: sleep; valid rises after an edge, and this task sets
                # ready for the edge after that one as soon as it wakes.
                await RisingEdge(valid)
            if got is not None:            # handed over after the edge, in a writable phase
                self.queue.append(got)
                self.transfers += 1
                self._got.set()


class StreamMonitor:
    """Passive: records every transfer and checks the stream contract at every edge where
    valid is high and ready low (the payload is held and valid stays high until taken)."""

    def __init__(self, bus: StreamBus, clock, name: str):
        self.bus, self.clock, self.name = bus, clock, name
        self.transfers: list[Transfer] = []
        self.stalls = 0              # transfers that waited for at least one edge
        self.stalled_ns = 0          # total time items waited for ready
        self._task = cocotb.start_soon(self._run())

    async def _run(self):
        valid, ready, payload = self.bus.valid, self.bus.ready, self.bus.payload
        held = None                  # the payload that was offered, and not taken, at the last edge
        since = 0
        while True:
            await ReadOnly()
            now = int(get_sim_time("ns"))
            if held is not None and not (valid.value and int(payload.value) == held):
                raise StreamProtocolError(
                    f"{self.name}: at {now} ns a stalled transfer was "
                    + ("withdrawn" if not valid.value else
                       f"changed from {held:#x} to {int(payload.value):#x}")
                    + " before the sink took it")
            if not valid.value:
                await RisingEdge(valid)
                continue
            if ready.value:
                self.transfers.append(Transfer(int(payload.value), now))
                if held is not None:
                    self.stalls += 1
                    self.stalled_ns += now - since
                held = None
                await RisingEdge(self.clock)
            else:
                if held is None:
                    held, since = int(payload.value), now
                # Wake when anything relevant moves, not at every edge of a long stall.
                await First(RisingEdge(ready), FallingEdge(valid), ValueChange(payload))
