"""A chip on Verilator that stays up across calls: `ChipSession(chip).run(images, ids,
writes)` runs images through the RTL and returns the chip's logits and the last layer's input
vectors (read from the chip, hdl.chip.CimChip `features`), after writing cells through the
programming port. One simulator process serves every call (testbench/chip_serve_tests.py),
so a caller with many small batches (hybrid training) pays the simulator's start-up once.

With an update engine (`ChipSession(chip, engine=EngineRule(...))`) each image goes in with its
label and the answer holds the engine's pulse requests (engine training,
cim_flows/hybrid_loop.py).

Unlike `chip_sim.simulate` nothing is compared here: the caller is the host of a chip, and
what the chip answered is what it gets (tests hold the session to the golden model).
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from cim_spec import program
from golden import chip_model
from hdl.chip_engine import EngineRule
from hdl.chip_plan import plan_chip

from . import chip_job, runner
from .chip_job import CellWrite
from .chip_sim import TOPLEVEL, build_chip, host_pixels, job_meta, prog_payload

POLL_S = 0.001


class ChipSession:
    """One running simulation of `chip` (its cells as the chip state programs them; `run`'s
    writes change them from there), with the update engine of `engine` if given. Use as a
    context manager, or call `close`."""

    def __init__(self, chip: program.Chip, engine: EngineRule | None = None):
        self.chip, self.engine = chip, engine
        self.build_dir, self.build_seconds = build_chip(chip, engine=engine)
        self.plan = plan_chip(chip)
        self.meta = job_meta(self.plan, chip, engine=engine)
        cfg = chip.config
        self.cells = (cfg.n_pe, cfg.array_rows, cfg.array_cols)
        self.dir = Path(tempfile.mkdtemp(prefix="session-", dir=self.build_dir))
        c, h, w = chip.mapping.network.input_shape
        chip_job.write_job(self.dir / "session.npz", chip_job.Job(
            np.zeros((0, h, w), np.int64), np.zeros(0, np.int64),
            np.zeros((0, self.meta["n_out"]), np.int64), self.meta))
        self.calls = 0
        self.sim_seconds = 0.0      # inside the simulator, as its test measured
        self.call_seconds = 0.0     # the host waiting for answers (sim + files + wake-ups)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._simulate, daemon=True)
        self._thread.start()

    def _simulate(self):
        try:
            runner.test(TOPLEVEL, "testbench.chip_serve_tests", self.build_dir,
                        env={"CIM_CHIP_SESSION": self.dir}, test_dir=self.dir, quiet=True)
        except BaseException as e:      # reported to the caller by the next run or close
            self._error = e

    def _command(self, text: str, k: int | None = None) -> None:
        k = self.calls if k is None else k
        tmp = self.dir / f"cmd{k}.tmp"
        tmp.write_text(text)
        tmp.replace(self.dir / f"cmd{k}")

    def run(self, images: np.ndarray, image_ids, writes=(), labels=None,
            stop_on_update: bool = False) -> chip_job.Answer:
        """Write `writes` (CellWrite; their `before` is ignored: all go before the first
        image) through the programming port, then run `images` (N, 1, H, W) with their ids
        (and, a chip with an engine, their `labels`). Returns the answer: logits, labels,
        features (N, n_in), counters and the engine's requests. `stop_on_update`: end after
        the first image the engine asked pulses for (the answer has the images up to it).
        A failing call leaves the session unusable."""
        t0 = time.perf_counter()
        cfg = self.chip.config
        for i, w in enumerate(writes):
            if not (0 <= w.pe < cfg.n_pe and 0 <= w.row < cfg.array_rows
                    and 0 <= w.col < cfg.array_cols and 0 <= w.code <= cfg.code_max):
                raise ValueError(f"cell write {i}: {w} is outside the chip")
        payloads = np.array([prog_payload(self.plan, w) for w in writes], dtype=np.int64)
        images = chip_model.check_images(images, self.chip.mapping.network.input_shape)
        if (labels is None) != (self.engine is None):
            raise ValueError("labels go with the images of a chip with an update engine, and "
                             "only then")
        labels = np.zeros(0, np.int64) if labels is None else np.asarray(labels, np.int64)
        if self.engine is not None and (len(labels) != len(images) or (
                len(labels) and not 0 <= labels.min() <= labels.max()
                < 2 ** self.meta["engine"]["label_bits"])):
            raise ValueError(f"{len(labels)} labels for {len(images)} images, each in "
                             f"0..{2 ** self.meta['engine']['label_bits'] - 1}")
        k = self.calls
        chip_job.write_job(self.dir / f"job{k}.npz", chip_job.Job(
            host_pixels(self.chip, images), np.asarray(image_ids, np.int64),
            np.zeros((len(images), self.meta["n_out"]), np.int64),
            dict(self.meta, stop_on_update=bool(stop_on_update)),
            np.zeros(len(payloads), np.int64), payloads, labels=labels))
        self._command("run")
        done = self.dir / f"done{k}"
        while not done.exists():
            if not self._thread.is_alive():
                raise RuntimeError(f"the chip simulation stopped (log: {self.dir / 'sim.log'})"
                                   ) from self._error
            time.sleep(POLL_S)
        ans = chip_job.read_answer(self.dir / f"out{k}.npz")
        for name in (f"job{k}.npz", f"cmd{k}", f"done{k}", f"out{k}.npz"):
            (self.dir / name).unlink()
        self.calls += 1
        self.sim_seconds += ans.meta["seconds"]
        self.call_seconds += time.perf_counter() - t0
        return ans

    def writes_for(self, cells: np.ndarray, codes: np.ndarray) -> list[CellWrite]:
        """CellWrites setting the flat cell indices `cells` to `codes`."""
        pe, row, col = np.unravel_index(np.asarray(cells, np.int64), self.cells)
        return [CellWrite(0, int(a), int(b), int(c), int(v))
                for a, b, c, v in zip(pe, row, col, codes, strict=True)]

    def close(self) -> None:
        if self._thread.is_alive():
            # A call interrupted after its command was taken leaves the simulator waiting
            # for the next one: stop it there too.
            self._command("stop", self.calls + 1)
            self._command("stop")
            self._thread.join()
        err = self._error
        if err is not None:     # the directory stays, with the simulator's log
            raise RuntimeError(f"the chip simulation failed (log: {self.dir / 'sim.log'})"
                               ) from err
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        try:
            self.close()
        except RuntimeError:
            if exc_type is None:    # do not hide the error that ended the session
                raise
