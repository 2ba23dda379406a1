"""cocotb test that keeps one simulation of the chip running for a host that calls it many
times (testbench/chip_session.py): hybrid training runs a batch of images, updates cells
through the programming port, runs the next batch, and so on, without a new simulator
process (and its start-up) per batch.

The host and this test meet in a session directory (CIM_CHIP_SESSION): `session.npz` holds
the formats (a job without images); for call k the host writes `job<k>.npz` (the images,
their ids and the cell writes to make before them) and then `cmd<k>` (`run` or `stop`); this
test answers with `out<k>.npz` (chip_job.Answer: logits, labels, the last layer's input
vectors, counters) and then `done<k>`. Waiting for a command blocks the simulator, which has
nothing to do meanwhile (the chip is idle between calls).

A chip with an update engine (engine training, cim_flows/hybrid_loop.py) takes a label with
each image and answers its pulse requests too. Such a call runs its images one at a time (the
next is loaded once the engine has finished the last: the host must be able to write the
cells the requests change before the next image) and, with `stop_on_update` in the job's
meta, ends after the first image that asked for pulses: the answer then holds the images up
to that one.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles

from testbench import chip_job
from testbench.chip_tests import ChipTB

POLL_S = 0.001
IDLE_LIMIT_S = 3600     # a host that vanished without `stop` does not leave us spinning


def wait_command(path: Path, parent: int) -> str:
    """The command in `path` once the host has put it there."""
    t0 = time.monotonic()
    while not path.exists():
        if os.getppid() != parent or time.monotonic() - t0 > IDLE_LIMIT_S:
            return "stop"
        time.sleep(POLL_S)
    return path.read_text().strip()


def publish(path: Path, text: str) -> None:
    """Write a file the other side polls for: complete before it appears."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


@cocotb.test()
async def serve(dut):
    d = Path(os.environ["CIM_CHIP_SESSION"])
    tb = ChipTB(dut, chip_job.read_job(d / "session.npz"))
    await tb.start()
    parent = os.getppid()
    k = images_before = 0
    while (cmd := wait_command(d / f"cmd{k}", parent)) == "run":
        t0 = time.perf_counter()
        job = chip_job.read_job(d / f"job{k}.npz")
        tb.job = job
        writes = job.writes_before(0)
        if writes:
            await tb.program(tb.results_seen, writes)
        if not tb.engine:
            for i in range(len(job.images)):
                for beat in tb.image_beats(i):
                    tb.load.send_nowait(beat)
        logits, labels, done_at, feats, reqs = [], [], [], [], []
        for i in range(len(job.images)):
            if tb.engine:
                for beat in tb.image_beats(i):
                    tb.load.send_nowait(beat)
            lg, label, cycle, feat = await tb.next_result(i)
            logits.append(lg)
            labels.append(label)
            done_at.append(cycle)
            feats.append(feat)
            if tb.engine:
                mine = await tb.image_requests(images_before + i + 1)
                reqs += [(i, *r) for r in mine]
                if mine and job.meta.get("stop_on_update"):
                    break
        images_before += len(logits)
        await ClockCycles(tb.clk, 2)
        meta = dict(tb.counters(), seconds=time.perf_counter() - t0, writes=len(writes))
        if tb.engine:
            meta.update(updates_done=int(tb.updates_done.value),
                        requests_seen=len(tb.request_monitor.transfers))
        n_out = tb.meta["n_out"]
        chip_job.write_answer(d / f"out{k}.npz", chip_job.Answer(
            np.array(logits, dtype=np.int64).reshape(-1, n_out), np.array(labels, np.int64),
            np.array(done_at, np.int64), np.zeros(0, np.int64), meta, {},
            np.array(feats, dtype=np.int64), np.array(reqs, np.int64).reshape(-1, 4)))
        publish(d / f"done{k}", "ok")
        k += 1
    assert cmd == "stop", f"unknown session command {cmd!r}"
