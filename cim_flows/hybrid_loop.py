"""Hybrid training with the chip's RTL in the loop (`cim hybrid --on rtl`): every batch's
forward passes run on the generated chip in Verilator; the host (golden.hybrid.Trainer, the
same update as `--on golden`) takes the logits and the FC inputs the chip returns, applies
the threshold rule through the device model and writes the cells whose conductance code
changed through the chip's programming port before the next batch.

One simulator process serves the whole run (testbench.chip_session). The chip is bit-exact
with the golden model, so with the same seeds the run ends in the same cells and pulses as
`--on golden`; a batch whose logits differ from the golden FC layer on the chip's own inputs
is counted (`fc_mismatches`), as is any image whose inputs differ from the first epoch's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from cim_spec.chipstate import ChipState
from cim_spec.config import ConfigError
from golden import hybrid
from testbench.chip_session import ChipSession


@dataclass
class LoopTimes:
    """Where the wall time of an RTL-loop run went (seconds)."""

    build: float        # Verilog generation and Verilator build (0 when cached)
    simulation: float   # inside the simulator: images through the chip, cell writes
    transport: float    # host waiting beyond that: job files, wake-ups, simulator start-up
    host: float         # the host's update (gradient, threshold rule, pulses) and checks
    total: float
    batches: int
    images: int         # forward passes
    writes: int         # cell writes through the programming port

    def to_dict(self) -> dict:
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in self.__dict__.items()}


def train_on_rtl(state: ChipState, images, labels, params: hybrid.HybridParams,
                 progress: bool = True):
    """Hybrid training with the forward passes on the RTL; returns the new state (its history
    entry says `on: rtl`), the report, the check counts and the times."""
    t_start = time.perf_counter()
    images = np.asarray(images)
    labels = np.asarray(labels, dtype=np.int64)
    if len(images) == 0 or len(images) != len(labels):
        raise ConfigError(f"hybrid training needs images with one label each, got "
                          f"{len(images)} images and {len(labels)} labels")
    tr = hybrid.Trainer(state, labels, params)
    chip_codes = tr.codes()
    session = ChipSession(tr.chip())
    host_s = 0.0
    writes_n = fc_bad = x_bad = 0
    first_x: dict[int, np.ndarray] = {}
    bar = tqdm(total=params.epochs * tr.n_batches, desc="hybrid training (RTL)", unit="batch",
               disable=not progress, leave=False)
    with session:
        writes = []
        for idx in tr.batches():
            ans = session.run(images[idx], tr.ids[idx], writes)
            t0 = time.perf_counter()
            x = ans.features.astype(np.uint8)
            # Checks that cost little: the FC layer against the golden model on the chip's
            # own inputs, and the conv layers against themselves (same image, same inputs).
            fc_bad += int(np.any(hybrid.fc_logits(tr.chip(), x, tr.ids[idx]) != ans.logits,
                                 axis=1).sum())
            for i, row in zip(idx, x, strict=True):
                x_bad += int(not np.array_equal(first_x.setdefault(int(i), row), row))
            cells = tr.step(idx, ans.logits, x)
            codes = tr.codes()
            changed = cells[codes[cells] != chip_codes[cells]]
            chip_codes[changed] = codes[changed]
            writes = session.writes_for(changed, codes[changed])
            writes_n += len(writes)
            host_s += time.perf_counter() - t0
            bar.update(1)
        if writes:      # the last batch's updates: the chip ends as the state says
            session.run(images[:0], tr.ids[:0], writes)
        bar.close()
    new, report = tr.result(on="rtl")
    total = time.perf_counter() - t_start
    times = LoopTimes(session.build_seconds, session.sim_seconds,
                      session.call_seconds - session.sim_seconds, host_s, total,
                      session.calls, params.epochs * len(images), writes_n)
    return new, report, {"fc_mismatches": fc_bad, "input_mismatches": x_bad}, times
