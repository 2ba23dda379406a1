"""cocotb test of the whole chip: images in through the harness, logits out.

The runner (cim_core/rtl_sim.py) names a job file in CIM_CHIP_JOB: the images and their ids.
This module only drives the simulation and writes what the RTL answered (CIM_CHIP_OUT); the
comparison with the golden model happens in the runner, so a failing image can be reported
with its golden trace.
"""

from __future__ import annotations

import json
import os
import time

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge, SimTimeoutError, with_timeout


def pack_beats(image: np.ndarray, image_id: int, per_beat: int, bits: int) -> list[int]:
    """The harness's load beats: pixel i of a beat at bits [bits*i, bits*(i+1)), then the
    32-bit id."""
    flat = [int(v) for v in image.ravel()]
    flat += [0] * (-len(flat) % per_beat)
    beats = []
    for b in range(0, len(flat), per_beat):
        word = 0
        for i, v in enumerate(flat[b:b + per_beat]):
            word |= v << (bits * i)
        beats.append(word | (int(image_id) << (bits * per_beat)))
    return beats


def unpack_result(value: int, n: int, acc_bits: int) -> tuple[list[int], int]:
    logits = []
    for i in range(n):
        v = (value >> (i * acc_bits)) & ((1 << acc_bits) - 1)
        logits.append(v - (1 << acc_bits) if v >> (acc_bits - 1) else v)
    return logits, value >> (n * acc_bits)


async def loader(dut, images, ids, per_beat: int, bits: int):
    """While `load__ready` is high the harness takes a beat at every clock edge; it drops
    ready after an image's last beat and raises it again once it has fed the pixels."""
    for image, image_id in zip(images, ids, strict=True):
        # Judge ready only when settled (ReadOnly); the beats then start after the next edge.
        await ReadOnly()
        while not dut.load__ready.value:
            await RisingEdge(dut.load__ready)
            await ReadOnly()
        await RisingEdge(dut.clk)
        for beat in pack_beats(image, image_id, per_beat, bits):
            dut.load__payload.value = beat
            dut.load__valid.value = 1
            await RisingEdge(dut.clk)
        dut.load__valid.value = 0


class TapMonitor:
    """Records every feature-map write (debug runs only: it wakes Python every cycle)."""

    def __init__(self, dut, buffers: dict, n_images: int):
        self.dut, self.buffers = dut, buffers
        self.image = 0
        self.words = {name: np.zeros((n_images, depth), dtype=object)
                      for name, (channels, depth, bits) in buffers.items()}

    async def run(self):
        while True:
            await RisingEdge(self.dut.clk)
            await ReadOnly()
            # Tap i shows the i-th buffer of the job's list (hdl.chip.tapped_buffers).
            for i, name in enumerate(self.buffers):
                if getattr(self.dut, f"tap__{i}__en").value:
                    addr = int(getattr(self.dut, f"tap__{i}__addr").value)
                    word = int(getattr(self.dut, f"tap__{i}__data").value)
                    self.words[name][self.image, addr] = word

    def arrays(self) -> dict:
        out = {}
        for name, (channels, depth, bits) in self.buffers.items():
            w = self.words[name]
            out[f"tap_{name}"] = np.array(
                [[[(int(w[i, a]) >> (c * bits)) & ((1 << bits) - 1) for c in range(channels)]
                  for a in range(depth)] for i in range(w.shape[0])], dtype=np.int64)
        return out


@cocotb.test()
async def run_images(dut):
    with np.load(os.environ["CIM_CHIP_JOB"], allow_pickle=False) as job:
        images, ids = job["images"], job["image_ids"]
        meta = json.loads(str(job["meta"]))
    n_out, acc_bits = meta["n_out"], meta["acc_bits"]
    # The harness has no reset port: its registers start from their reset values.
    Clock(dut.clk, 10, unit="ns").start()
    dut.load__valid.value = 0
    dut.result__ready.value = 1
    dut.prog__valid.value = 0
    await ClockCycles(dut.clk, 2)
    t0 = time.perf_counter()
    taps = None
    if os.environ.get("CIM_CHIP_TAPS") == "1":
        taps = TapMonitor(dut, meta["buffers"], len(images))
        cocotb.start_soon(taps.run())
    cocotb.start_soon(loader(dut, images, ids, meta["pixels_per_beat"], meta["pixel_bits"]))
    logits, labels, done_at = [], [], []
    cycle_ns = 10
    for i in range(len(images)):
        try:
            # A chip that stops answering fails the test instead of hanging it.
            await with_timeout(RisingEdge(dut.result__valid), 200 * cycle_ns * 10_000, "ns")
        except SimTimeoutError:
            raise AssertionError(f"no result for image {i} within 2,000,000 cycles") from None
        await ReadOnly()
        lg, label = unpack_result(int(dut.result__payload.value), n_out, acc_bits)
        logits.append(lg)
        labels.append(label)
        done_at.append(cocotb.utils.get_sim_time("ns") // cycle_ns)
        if taps is not None:
            taps.image += 1
        if len(logits) % 20 == 0:
            with open("progress", "w") as fh:
                fh.write(str(len(logits)))
    await ClockCycles(dut.clk, 4)
    n_layers = meta["n_layers"]
    layer_bits = int(dut.cycles_layer.value)
    cycles_layer = [(layer_bits >> (32 * i)) & 0xFFFFFFFF for i in range(n_layers)]
    seconds = time.perf_counter() - t0
    np.savez(os.environ["CIM_CHIP_OUT"], **(taps.arrays() if taps else {}),
             logits=np.array(logits, dtype=np.int64),
             labels=np.array(labels), done_at=np.array(done_at, dtype=np.int64),
             meta=json.dumps(dict(cycles_image=int(dut.cycles_image.value),
                                  cycles_layer=cycles_layer, seconds=seconds,
                                  images_done=int(dut.images_done.value))))
