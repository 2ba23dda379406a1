"""cocotb drivers for Amaranth streams (`<name>__valid/__ready/__payload` ports).

The handshake is judged in the ReadOnly phase before a clock edge, when valid and ready have
settled, so the drivers are exact about which edge a transfer happens on.
"""

from __future__ import annotations

from cocotb.triggers import ReadOnly, RisingEdge


class StreamSource:
    def __init__(self, dut, name: str, rng=None, gap: float = 0.0):
        self.clk = dut.clk
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.payload = getattr(dut, f"{name}__payload")
        self.rng, self.gap = rng, gap
        self.valid.value = 0

    async def send_all(self, payloads):
        """Offer each packed payload in turn, idling randomly; returns when all are taken."""
        for value in payloads:
            while True:
                idle = self.rng is not None and self.rng.random() < self.gap
                self.valid.value = 0 if idle else 1
                self.payload.value = value
                await ReadOnly()
                taken = not idle and bool(self.ready.value)
                await RisingEdge(self.clk)
                if taken:
                    break
        self.valid.value = 0


class StreamSink:
    def __init__(self, dut, name: str, rng=None, stall: float = 0.0):
        self.clk = dut.clk
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.payload = getattr(dut, f"{name}__payload")
        self.rng, self.stall = rng, stall
        self.ready.value = 0

    async def receive(self, n: int, timeout_cycles: int = 10_000_000) -> list[int]:
        got: list[int] = []
        cycles = 0
        while len(got) < n:
            ready = not (self.rng is not None and self.rng.random() < self.stall)
            self.ready.value = int(ready)
            await ReadOnly()
            if ready and self.valid.value:
                got.append(int(self.payload.value))
            await RisingEdge(self.clk)
            cycles += 1
            if cycles > timeout_cycles:
                raise TimeoutError(f"{len(got)} of {n} outputs after {cycles} cycles")
        self.ready.value = 0
        return got
