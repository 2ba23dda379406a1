"""cocotb testbench of the whole chip, through its simulation harness (hdl/harness.py): images
in, logits out, cell writes through the programming port and ADC gain writes through the gain
port between images.

The host (testbench/chip_sim.py) names a job file in CIM_CHIP_JOB (testbench/chip_job.py):
the images, their ids, the logits the golden model expects for them, the cell and gain writes
and the options. The scoreboard compares every result as it arrives; the answer (CIM_CHIP_OUT) holds
what the RTL computed and which images differed, so the host can report a mismatch with the
golden model's trace.

Two kinds of traffic:
* fast (the default): every image queued at once, the result port always ready; Python
  wakes about a dozen times per image and the simulator runs freely in between.
* random (`pauses` seed in the job meta, or cell writes): random idle cycles between load
  beats and random gaps between images, random back-pressure bursts on the result port,
  cell writes between images, and passive monitors checking every handshake.
"""

from __future__ import annotations

import logging
import os
import time

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import (
    ClockCycles,
    Event,
    ReadOnly,
    RisingEdge,
    SimTimeoutError,
    Timer,
    with_timeout,
)
from cocotb.utils import get_sim_time

from testbench import chip_job
from testbench.chip_job import pack_beats, unpack_result
from testbench.scoreboard import Scoreboard
from testbench.stream import (
    StreamBus,
    StreamMonitor,
    StreamSink,
    StreamSource,
    burst_pauses,
    random_pauses,
)

PERIOD_NS = 10
RESULT_TIMEOUT_CYCLES = 2_000_000
# How often the testbench looks at the engine's image count (an image's requests take a few
# hundred cycles; a Python wake-up costs as much as many simulated cycles).
ENGINE_POLL_CYCLES = 32


def unpack_request(value: int, meta: dict) -> tuple[int, int, int]:
    """The engine's request beat (hdl.chip_engine.engine_requests): out, inp, down."""
    return tuple((value >> off) & ((1 << width) - 1)
                 for off, width in (meta["engine"]["requests"][f] for f in ("out", "inp", "down")))


class TapMonitor:
    """Records every feature-map write (debug runs only: it wakes Python every cycle)."""

    def __init__(self, clk, ports: dict, buffers: dict, n_images: int):
        self.clk, self.ports, self.buffers = clk, ports, buffers
        self.image = 0
        self.words = {name: np.zeros((n_images, depth), dtype=object)
                      for name, (channels, depth, bits) in buffers.items()}
        cocotb.start_soon(self._run())

    async def _run(self):
        while True:
            await RisingEdge(self.clk)
            await ReadOnly()
            for name, (en, addr, word) in self.ports.items():
                if en.value:
                    self.words[name][self.image, int(addr.value)] = int(word.value)

    def arrays(self) -> dict:
        out = {}
        for name, (channels, depth, bits) in self.buffers.items():
            w = self.words[name]
            out[f"tap_{name}"] = np.array(
                [[[(int(w[i, a]) >> (c * bits)) & ((1 << bits) - 1) for c in range(channels)]
                  for a in range(depth)] for i in range(w.shape[0])], dtype=np.int64)
        return out


class ChipTB:
    """The harness's drivers, monitors and counters. Every name of the harness's ports that
    the testbench uses is in this constructor."""

    def __init__(self, dut, job: chip_job.Job, taps: bool = False):
        self.dut, self.job, self.meta = dut, job, job.meta
        self.log = logging.getLogger("cocotb.tb")
        self.clk = dut.clk
        load, result, prog, gain = (StreamBus.from_prefix(dut, n)
                                    for n in ("load", "result", "prog", "gain"))
        self.cycles_image, self.cycles_layer = dut.cycles_image, dut.cycles_layer
        self.images_done = dut.images_done
        # Tap i shows the i-th buffer of the job's list (hdl.chip.tapped_buffers).
        tap_ports = {name: (getattr(dut, f"tap__{i}__en"), getattr(dut, f"tap__{i}__addr"),
                            getattr(dut, f"tap__{i}__data"))
                     for i, name in enumerate(self.meta["buffers"])} if taps else {}

        # The harness has no reset port: its registers start from their reset values. The
        # clock starts low: a rising edge at time 0 would make Icarus clock in the inputs
        # before the drivers set them, and X would then circulate in the reset-free loops.
        Clock(self.clk, PERIOD_NS, unit="ns").start(start_high=False)
        self.load = StreamSource(load, self.clk)
        self.prog = StreamSource(prog, self.clk)
        self.gain = StreamSource(gain, self.clk)
        self.result = StreamSink(result, self.clk)
        self.taps = (TapMonitor(self.clk, tap_ports, self.meta["buffers"], len(job.images))
                     if taps else None)
        self.random = self.meta.get("pauses") is not None or len(job.prog_payload) > 0 \
            or len(job.gain_payload) > 0
        self.monitors = {}
        self.rng = np.random.default_rng(self.meta.get("pauses") or 0)
        if self.random:
            self.monitors = {n: StreamMonitor(b, self.clk, n)
                             for n, b in (("load", load), ("result", result), ("prog", prog),
                                          ("gain", gain))}
        if self.meta.get("pauses") is not None:
            self.load.set_pause_generator(random_pauses(self.rng, 0.3))
            # Bursts up to about an image's cycles, so results back up into the chip.
            self.result.set_pause_generator(
                burst_pauses(self.rng, 0.5, max(8, int(self.meta["cycles_hint"]))))
        self.results_seen = 0
        self._result_seen = Event()
        self.gap_cycles = 0
        # The update engine's requests: a sink that always takes them, a monitor checking
        # their handshakes, and the count of images the engine has finished.
        self.engine = self.meta.get("engine")
        if self.engine:
            bus = StreamBus.from_prefix(dut, "requests")
            self.requests = StreamSink(bus, self.clk)
            self.request_monitor = StreamMonitor(bus, self.clk, "requests")
            self.updates_done = dut.updates_done

    async def start(self):
        await ClockCycles(self.clk, 2)

    def image_beats(self, k: int) -> list[int]:
        return pack_beats(self.job.images[k], self.job.image_ids[k],
                          self.meta["pixels_per_beat"], self.meta["pixel_bits"],
                          int(self.job.labels[k]) if self.engine else 0)

    async def image_requests(self, n: int) -> list[tuple[int, int, int]]:
        """Once the engine has finished its n-th image since power-up: the requests taken
        since the last call (out, inp, down). The engine counts an image finished after its
        last request left the chip; the harness's register then hands it over in a cycle."""
        t0 = get_sim_time("ns")
        while int(self.updates_done.value) < n:
            if get_sim_time("ns") - t0 > RESULT_TIMEOUT_CYCLES * PERIOD_NS:
                raise AssertionError(f"the engine did not finish image {n - 1} within "
                                     f"{RESULT_TIMEOUT_CYCLES:,} cycles")
            await ClockCycles(self.clk, ENGINE_POLL_CYCLES)
        await ClockCycles(self.clk, 4)
        out = []
        while (t := self.requests.recv_nowait()) is not None:
            out.append(unpack_request(t.payload, self.meta))
        return out

    async def feed(self):
        """Load every image, with the job's gaps and cell writes between them."""
        if not self.random:
            for k in range(len(self.job.images)):
                for beat in self.image_beats(k):
                    self.load.send_nowait(beat)
            return
        gap_top = max(2, 2 * int(self.meta["cycles_hint"]))
        for k in range(len(self.job.images)):
            writes, gains = self.job.writes_before(k), self.job.gains_before(k)
            if writes or gains:
                await self.program(k, writes, gains)
            if self.meta.get("pauses") is not None and k:
                kind = self.rng.integers(3)     # back to back, a short gap, a long one
                gap = 0 if kind == 0 else int(self.rng.integers(1, 64 if kind == 1 else gap_top))
                self.gap_cycles += gap
                if gap:
                    await Timer(gap * PERIOD_NS, unit="ns")
                    await RisingEdge(self.clk)  # drive after an edge, not at one
            for beat in self.image_beats(k):
                self.load.send_nowait(beat)
            await self.load.wait()

    async def program(self, k: int, writes: list[int], gains: list[int] = ()):
        """Cell and gain writes between images: after image k-1's result (so the chip has
        finished it and the next image is not loaded yet: the chip takes writes only while
        idle)."""
        while self.results_seen < k:
            self._result_seen.clear()
            await self._result_seen.wait()
        for src, items in ((self.prog, writes), (self.gain, gains)):
            for w in items:
                src.send_nowait(w)
        for src in (self.prog, self.gain):
            await src.wait()
        # The harness registers the ports: a port's ready is high again once the chip took
        # the last write out of its register.
        for src in (self.prog, self.gain):
            ready = src.bus.ready
            await ReadOnly()
            while not ready.value:
                await RisingEdge(ready)
                await ReadOnly()
            await RisingEdge(self.clk)

    async def next_result(self, i: int) -> tuple[list[int], int, int, list[int]]:
        """Image i's logits, label, the cycle its result was taken and the last layer's
        input vector."""
        try:
            # A chip that stops answering fails the test instead of hanging it.
            tr = await with_timeout(self.result.recv(), RESULT_TIMEOUT_CYCLES * PERIOD_NS, "ns")
        except SimTimeoutError:
            raise AssertionError(f"no result for image {i} within {RESULT_TIMEOUT_CYCLES:,} "
                                 f"cycles") from None
        self.results_seen += 1
        self._result_seen.set()
        if self.taps is not None:
            self.taps.image += 1
        logits, label, feats = unpack_result(tr.payload, self.meta)
        return logits, label, tr.time_ns // PERIOD_NS, feats

    def traffic(self) -> dict:
        """What the monitors saw (random traffic only)."""
        out = dict(gap_cycles=self.gap_cycles) if self.random else {}
        for name, mon in self.monitors.items():
            out[f"{name}_transfers"] = len(mon.transfers)
            out[f"{name}_stalls"] = mon.stalls
            out[f"{name}_stalled_cycles"] = mon.stalled_ns // PERIOD_NS
        return out

    def counters(self) -> dict:
        n_layers = self.meta["n_layers"]
        layer_bits = int(self.cycles_layer.value)
        return dict(cycles_image=int(self.cycles_image.value),
                    cycles_layer=[(layer_bits >> (32 * i)) & 0xFFFFFFFF for i in range(n_layers)],
                    images_done=int(self.images_done.value))


@cocotb.test()
async def run_images(dut):
    job = chip_job.read_job(os.environ["CIM_CHIP_JOB"])
    tb = ChipTB(dut, job, taps=os.environ.get("CIM_CHIP_TAPS") == "1")
    await tb.start()
    n = len(job.images)
    sb = Scoreboard(job.expected, job.image_ids, "logits")
    t0 = time.perf_counter()
    feeder = cocotb.start_soon(tb.feed())
    labels, done_at, feats = [], [], []
    for i in range(n):
        logits, label, cycle, feat = await tb.next_result(i)
        sb.add(logits)
        labels.append(label)
        done_at.append(cycle)
        feats.append(feat)
        if (i + 1) % 20 == 0:
            with open("progress", "w") as fh:
                fh.write(str(i + 1))
    await ClockCycles(tb.clk, 4)
    assert feeder.done(), "the feeder had not finished after the last result"
    meta = dict(tb.counters(), seconds=time.perf_counter() - t0, **tb.traffic())
    if tb.random:
        beats = len(tb.image_beats(0))
        want = dict(load_transfers=n * beats, result_transfers=n,
                    prog_transfers=len(job.prog_payload),
                    gain_transfers=len(job.gain_payload))
        seen = {k: meta[k] for k in want}
        assert seen == want, f"the monitors saw {seen}, the drivers sent {want}"
    tb.log.info(sb.summary())
    chip_job.write_answer(os.environ["CIM_CHIP_OUT"], chip_job.Answer(
        np.array(sb.received, dtype=np.int64), np.array(labels), np.array(done_at),
        np.array([m.index for m in sb.mismatches]), meta,
        tb.taps.arrays() if tb.taps else {}, np.array(feats, dtype=np.int64)))
