"""The board as the chip of a hybrid-training loop (`cim hybrid --on board`): the calls of
testbench.chip_session.ChipSession (cell writes, then images; logits and the FC inputs back),
over the serial link (cim_flows.board_link) to a ULX3S or to the simulated board behind a
pseudo-terminal (testbench.board_sim).

The images go as IMAGE_FEATURES frames and come back as RESULT_FEATURES (logits and the last
weight layer's input map, docs/board.md); the cells go as PROG frames, one acknowledged at a
time, while the chip is idle (a batch's results are all in before the next writes). A frame
lost or damaged either way is sent again; an image that gets no result after the retries
ends the run (hybrid training must not go on without it). Nothing is compared here: the
loop (cim_flows.hybrid_loop) holds the answers to the golden model.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from dataclasses import dataclass

import numpy as np

from cim_spec import link, program

from . import board_link


@dataclass
class BoardAnswer:
    logits: np.ndarray          # (N, n_out) int64
    labels: np.ndarray          # (N,) the board's labels
    features: np.ndarray        # (N, n_in) the last weight layer's inputs, golden order


class BoardSession:
    """One link to a board that holds `chip`. With `sim`, the simulated board built from
    `chip` (its cells and gains are the chip's already); with `port`, a ULX3S whose bitstream
    holds other cells: every cell of `chip` and every layer's ADC gain is written first (its
    requantization parameters must be the bitstream's: the loop's check of the FC layer
    against the golden model shows otherwise). Use as a context manager."""

    def __init__(self, chip: program.Chip, port: str | None = None, sim: bool = False,
                 baud: int | None = None, timeout: float = 2.0, window: int = 2,
                 retries: int = 2):
        if (port is None) == (not sim):
            raise ValueError("a board session needs exactly one of a port and the simulation")
        self.chip = chip
        cfg = chip.config
        self.cells = (cfg.n_pe, cfg.array_rows, cfg.array_cols)
        self.timeout = max(timeout, 60.0) if sim else timeout   # simulated time is slow
        self.window, self.retries = window, retries
        self.calls = 0
        self.build_seconds = 0.0
        self.sim_seconds = 0.0       # images over the link (frames out, results back)
        self.call_seconds = 0.0      # the whole of the calls: also cell writes, idle checks
        self.setup_seconds = 0.0     # writing the state into a real board
        self.images_sent = 0
        self.lost = self.resent = 0
        self._stack = ExitStack()
        try:
            if sim:
                from testbench import board_sim
                t0 = time.perf_counter()
                board_sim.build_board(chip)
                self.build_seconds = time.perf_counter() - t0
                path = self._stack.enter_context(board_sim.simulated_board(chip))
            else:
                path = str(port)
            self.port = board_link.Port(path, None if sim else baud)
            self._stack.callback(self.port.close)
            self.link = board_link.Session(self.port)
            self.link.status(self.timeout)      # the board answers before anything else
            if not sim:
                t0 = time.perf_counter()
                self._write_state()
                self.setup_seconds = time.perf_counter() - t0
        except BaseException:
            self._stack.close()
            raise

    def _write_state(self) -> None:
        g = np.asarray(self.chip.conductance)
        cells = [(pe, row, col, int(g[pe, row, col])) for pe, row, col in np.ndindex(g.shape)]
        self.link.program(cells, self.timeout, self.retries)
        names = [layer.name for layer in self.chip.mapping.network.weight_layers()]
        self.link.set_gains([(i, self.chip.digital.adc_gain[n]) for i, n in enumerate(names)],
                            self.timeout, self.retries)

    def run(self, images: np.ndarray, image_ids, writes=()) -> BoardAnswer:
        """Write `writes` ((pe, row, col, code) each) through PROG frames, then run `images`
        with their ids; returns the board's logits, labels and features in the images'
        order."""
        t0 = time.perf_counter()
        if writes:
            self.link.program(writes, self.timeout, self.retries)
        ids = [int(i) for i in image_ids]
        st = board_link.stream_images(self.link, self.chip, images, ids, features=True,
                                      timeout=self.timeout, retries=self.retries,
                                      window=self.window)
        if st.failed:
            raise link.LinkError(f"images {st.failed[:5]} got no result from the board after "
                                 f"{self.retries} retries")
        self.images_sent += len(ids) + st.resent
        self.lost += st.lost
        self.resent += st.resent
        if st.resent:
            self._drain()
        n_out = self.chip.mapping.network.layers[-1].n_out
        logits = np.array([st.results[i].logits for i in ids], np.int64).reshape(-1, n_out)
        labels = np.array([st.results[i].label for i in ids], np.int64)
        n_in = int(np.prod(board_link.feature_shape(self.chip)[:2]))
        feats = np.array([st.features[i] for i in ids], np.int64).reshape(-1, n_in)
        self.calls += 1
        self.sim_seconds += st.seconds
        self.call_seconds += time.perf_counter() - t0
        return BoardAnswer(logits, labels, feats)

    def _drain(self) -> None:
        """After a resend the first copy's result may still come: wait until the board has
        run every image it took (two status replies alike, the chip idle) and drop what is
        left, so a late result never answers the next batch's image of the same id (its
        cells will have changed)."""
        last = None
        while True:
            st = self.link.status(self.timeout)
            if last is not None and not st.busy and st.images_done == last.images_done:
                break
            last = st
            time.sleep(0.05)
        self.link.poll(0.05)
        self.link.replies = [(k, p) for k, p in self.link.replies
                             if k not in (link.Reply.RESULT, link.Reply.RESULT_FEATURES)]

    def writes_for(self, cells: np.ndarray, codes: np.ndarray) -> list[tuple]:
        """(pe, row, col, code) writes setting the flat cell indices `cells` to `codes`."""
        pe, row, col = np.unravel_index(np.asarray(cells, np.int64), self.cells)
        return [(int(a), int(b), int(c), int(v))
                for a, b, c, v in zip(pe, row, col, codes, strict=True)]

    def close(self) -> None:
        self._stack.close()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close()
