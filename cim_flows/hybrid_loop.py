"""Hybrid training with the chip's RTL in the loop (`cim hybrid --on rtl`) or the board
(`--on board`): every batch's forward passes run on the generated chip in Verilator (or on
the board over its serial link, cim_flows.board_session); the host (golden.hybrid.Trainer,
the same update as `--on golden`) takes the logits and the FC inputs the chip returns, applies
the threshold rule through the device model and writes the cells whose conductance code
changed through the chip's programming port before the next batch.

One simulator process (testbench.chip_session), or one link, serves the whole run. The chip
is bit-exact with the golden model, so with the same seeds the run ends in the same cells and
pulses as `--on golden`; a batch whose logits differ from the golden FC layer on the chip's
own inputs is counted (`fc_mismatches`), as is any image whose inputs differ from the first
epoch's.

Engine training with the RTL in the loop (`engine_on_rtl`): the chip runs its own update
engine (hdl/chip_engine.py); the host streams labelled images, applies one device-model pulse
per request the chip sends and writes the changed codes back before the next image, as
golden/engine_training.py does with the golden engine.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np
from tqdm import tqdm

from cim_spec.chipstate import ChipState
from cim_spec.config import ConfigError
from golden import engine_training, hybrid
from golden.update_engine import Request, UpdateEngine, apply_requests
from hdl.chip import feature_buffer
from hdl.chip_engine import EngineRule
from hdl.chip_plan import plan_chip
from testbench.chip_session import ChipSession

# Images per session call of engine training: a call ends early at the first image that asks
# for pulses, so this only bounds the job file of a run of images that update nothing.
ENGINE_CHUNK = 64
# Images run after engine training, unlabelled, to compare the chip's final logits.
FINAL_CHECK_IMAGES = 4


@dataclass
class LoopTimes:
    """Where the wall time of an RTL-loop or board-loop run went (seconds)."""

    build: float        # Verilog generation and Verilator build (0 when cached)
    simulation: float   # RTL: inside the simulator, images through the chip and cell writes;
    #                     board: images over the link, frames out and results back
    transport: float    # RTL: host waiting beyond that (job files, wake-ups, simulator
    #                     start-up); board: cell writes (PROG frames) and idle checks
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
    return train_in_loop(state, images, labels, params, ChipSession, "rtl", progress)


def train_on_board(state: ChipState, images, labels, params: hybrid.HybridParams, *,
                   port: str | None = None, sim: bool = False, baud: int | None = None,
                   timeout: float = 2.0, progress: bool = True):
    """Hybrid training with the forward passes on the board (a ULX3S on `port`, or with `sim`
    the simulated board); returns as train_on_rtl (the history entry says `on: board`)."""
    from .board_session import BoardSession

    def open_session(chip):
        return BoardSession(chip, port=port, sim=sim, baud=baud, timeout=timeout)

    return train_in_loop(state, images, labels, params, open_session, "board", progress)


def train_in_loop(state: ChipState, images, labels, params: hybrid.HybridParams,
                  open_session, on: str, progress: bool = True):
    """The loop: `open_session(chip)` gives a session (ChipSession's calls: run, writes_for,
    the time counters) holding the starting chip; `on` names it in the chip state's
    history."""
    t_start = time.perf_counter()
    images = np.asarray(images)
    labels = np.asarray(labels, dtype=np.int64)
    if len(images) == 0 or len(images) != len(labels):
        raise ConfigError(f"hybrid training needs images with one label each, got "
                          f"{len(images)} images and {len(labels)} labels")
    tr = hybrid.Trainer(state, labels, params)
    chip_codes = tr.codes()
    session = open_session(tr.chip())
    host_s = 0.0
    writes_n = fc_bad = x_bad = 0
    first_x: dict[int, np.ndarray] = {}
    bar = tqdm(total=params.epochs * tr.n_batches, desc=f"hybrid training ({on})", unit="batch",
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
    new, report = tr.result(on=on)
    total = time.perf_counter() - t_start
    times = LoopTimes(session.build_seconds, session.sim_seconds,
                      session.call_seconds - session.sim_seconds, host_s, total,
                      session.calls, params.epochs * len(images), writes_n)
    return new, report, {"fc_mismatches": fc_bad, "input_mismatches": x_bad}, times


def engine_on_rtl(state: ChipState, images, labels, threshold: int, margin: int,
                  epochs: int = 3, seed: int = 0, acc_bits: int = 12, progress: bool = True):
    """Engine training (golden/engine_training.py) with the chip's RTL and its update engine
    in the loop: the same draws in the same order, so the same seeds end in the same state.
    Returns the new state (history entry `on: rtl`), the report, the check counts (the FC
    layer, its inputs and the requests against the golden model, image by image; the final
    chip's logits on a few images), the times and every request the chip sent (rows: epoch,
    image index, out, inp, down)."""
    t_start = time.perf_counter()
    images = np.asarray(images)
    labels = np.asarray(labels, dtype=np.int64)
    if len(images) == 0 or len(images) != len(labels):
        raise ConfigError(f"engine training needs images with one label each, got "
                          f"{len(images)} images and {len(labels)} labels")
    p = engine_training.engine_params(state, acc_bits)
    golden_engine = UpdateEngine(p, threshold, margin)        # checks the rule (ConfigError)
    tr = hybrid.Trainer(state, labels, hybrid.HybridParams(epochs=epochs, seed=seed))
    buf = feature_buffer(plan_chip(tr.chip()))
    if (buf.channels, buf.depth) != (p.lanes, p.words):
        # The request order follows the chip's feature words (docs/chip.md).
        raise ConfigError(f"the chip's FC-input words ({buf.depth} of {buf.channels}) are not "
                          f"the golden engine's ({p.words} of {p.lanes})")
    rng = np.random.default_rng([engine_training.ENGINE_STREAM, state.seed, seed])
    x = hybrid.fc_inputs(state, images, tr.ids)
    chip_codes = tr.codes()
    golden_chip = tr.chip()
    session = ChipSession(golden_chip, engine=EngineRule(int(threshold), int(margin), acc_bits))
    n = len(labels)
    host_s = 0.0
    n_req = n_pulses = refused = updates = writes_n = 0
    checks = {"fc_mismatches": 0, "input_mismatches": 0, "request_mismatches": 0}
    train_acc, trace = [], []
    bar = tqdm(total=epochs * n, desc="engine training (RTL)", unit="img",
               disable=not progress, leave=False)
    with session:
        writes = []
        for epoch in range(epochs):
            order, pos, correct = rng.permutation(n), 0, 0
            while pos < n:
                idx = order[pos:pos + ENGINE_CHUNK]
                ans = session.run(images[idx], tr.ids[idx], writes, labels=labels[idx],
                                  stop_on_update=True)
                t0 = time.perf_counter()
                idx = idx[:len(ans.labels)]
                pos += len(idx)
                correct += int((ans.labels == labels[idx]).sum())
                # Checks: the FC layer and the engine against the golden model on the
                # chip's own logits and the golden inputs.
                checks["input_mismatches"] += int(np.any(ans.features != x[idx], axis=1).sum())
                checks["fc_mismatches"] += int(np.any(hybrid.fc_logits(
                    golden_chip, x[idx], tr.ids[idx]) != ans.logits, axis=1).sum())
                writes = []
                for j, i in enumerate(idx):
                    got = [Request(int(o), int(c), bool(d))
                           for k, o, c, d in ans.requests if k == j]
                    want = golden_engine.image(ans.logits[j], int(labels[i]), x[i])
                    checks["request_mismatches"] += int(got != want)
                    trace += [(epoch, int(i), r.out, r.inp, int(r.down)) for r in got]
                    if not got:
                        continue
                    updates += 1
                    n_req += len(got)
                    before = tr.pulses.copy()
                    a, r = apply_requests(tr.g, tr.pulses, got, tr.pos, tr.neg, tr.stuck,
                                          tr.gain, state.config, state.device, rng)
                    n_pulses += a
                    refused += r
                    cells = np.flatnonzero(tr.pulses != before)
                    codes = tr.codes()
                    changed = cells[codes[cells] != chip_codes[cells]]
                    chip_codes[changed] = codes[changed]
                    writes += session.writes_for(changed, codes[changed])
                    golden_chip = tr.chip()
                writes_n += len(writes)
                host_s += time.perf_counter() - t0
                bar.update(len(idx))
            train_acc.append(correct / n)
        # The last image's updates, then a few images without a label (they update nothing)
        # to check that the chip ends as the state says.
        last = slice(0, min(n, FINAL_CHECK_IMAGES))
        ans = session.run(images[last], tr.ids[last], writes, labels=np.full(
            last.stop, p.n_out))
        checks["final_mismatches"] = int(np.any(hybrid.fc_logits(
            golden_chip, x[last], tr.ids[last]) != ans.logits, axis=1).sum()) + len(ans.requests)
        bar.close()
    shape = state.g_us.shape
    entry = {"stage": "engine", "images": n, "epochs": epochs, "threshold": int(threshold),
             "margin": int(margin), "acc_bits": acc_bits, "seed": seed, "requests": n_req,
             "updates": updates, "pulses": n_pulses, "on": "rtl"}
    new = replace(state, g_us=tr.g.reshape(shape), pulses=tr.pulses.reshape(shape),
                  history=state.history + [entry])
    report = engine_training.EngineReport(n, epochs, n_req, n_pulses, refused, updates,
                                          train_acc)
    times = LoopTimes(session.build_seconds, session.sim_seconds,
                      session.call_seconds - session.sim_seconds, host_s,
                      time.perf_counter() - t_start, session.calls, epochs * n, writes_n)
    return new, report, checks, times, np.array(trace, np.int64).reshape(-1, 5)
