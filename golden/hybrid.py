"""Hybrid training: retrain the FC layer in situ, with programming pulses, from the errors the
hardware makes.

Per mini-batch of training images:

1. the chip computes the logits with the golden integer model (read noise on, keyed by each
   image's id, so an image sees the same noise every epoch);
2. the host forms the softmax cross-entropy gradient of the FC weights from the hardware's
   logits (times the logit scale) and the hardware's own FC inputs (S4 activations), and
   turns the wanted weight change into a wanted change of each pair's differential
   conductance, added to a per-weight accumulator;
3. threshold rule: where an accumulator exceeds ``threshold_us``, the host applies pulses to
   one cell of the pair (RESET the partner cell if it is above state 0, else SET the main cell)
   through the device model's pulse response, and subtracts the nominal change of the pulses
   it applied. Sub-threshold wants stay in the accumulator (no pulse).

The conv layers stay as programmed. Their outputs are a pure function of the image and its id
(cells unchanged, read noise keyed by id), so the chip's S4 activations are computed once and
only the FC layer is re-run each batch; `fc_logits` equals `chip_model.run(...).logits`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from tqdm import tqdm

from cim_spec import device_params, program
from cim_spec.chipstate import ChipState
from cim_spec.config import ConfigError
from golden import chip_model, device

HYBRID_STREAM = 0x4B1D  # separates the hybrid draws of a seed from the transfer draws
TRAIN_ID_BASE = 1 << 24  # training images get read-noise ids apart from test images 0..N-1


@dataclass(frozen=True)
class HybridParams:
    epochs: int = 3
    batch: int = 50
    lr: float = 0.05                 # SGD step on the float FC weights
    threshold_us: float = 0.3        # pulse only where the wanted change exceeds this
    max_pulses_per_update: int = 4   # per cell, per batch
    seed: int = 0                    # shuffling and pulse noise

    def __post_init__(self):
        for name in ("epochs", "batch", "max_pulses_per_update"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"hybrid {name} must be an integer >= 1, got {v!r}")
        for name in ("lr", "threshold_us"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0 \
                    or v == float("inf"):
                raise ConfigError(f"hybrid {name} must be a positive number, got {v!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"hybrid seed must be an integer >= 0, got {self.seed!r}")


@dataclass
class HybridReport:
    images: int
    epochs: int
    pulses: int                      # pulses applied to FC cells
    updates: int                     # (weight, batch) updates that fired
    saturated: int                   # wanted updates refused at the window's edge
    train_accuracy: list[float]      # on the hardware, per epoch (during training)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def fc_name(state: ChipState) -> str:
    return state.mapping.network.weight_layers()[-1].name


def fc_cells(state: ChipState) -> tuple[np.ndarray, np.ndarray]:
    """Flat cell indices (n_out, n_in) of the FC layer's G+ and G- cells."""
    cfg, name = state.config, fc_name(state)
    lm = state.mapping.layer(name)
    pos = np.full((lm.n_out, lm.n_in), -1, dtype=np.int64)
    neg = pos.copy()
    shape = (cfg.n_pe, cfg.array_rows, cfg.array_cols)
    for b in state.mapping.blocks_of(name):
        o, i = np.meshgrid(np.arange(b.n_out), np.arange(b.n_in), indexing="ij")
        pos[:, b.in0:b.in0 + b.n_in] = np.ravel_multi_index((b.pe, b.row0 + 2 * o, i), shape)
        neg[:, b.in0:b.in0 + b.n_in] = np.ravel_multi_index((b.pe, b.row0 + 2 * o + 1, i), shape)
    return pos, neg


def fc_inputs(state: ChipState, images, image_ids, progress: bool = False) -> np.ndarray:
    """The FC layer's input vectors (N, n_in) uint8, as the chip computes them."""
    net = state.mapping.network
    prev = net.source(net.layers.index(net.weight_layers()[-1]))   # the layer it reads
    chip = state.chip
    out = []
    step = 1000
    with tqdm(total=len(images), desc="chip conv layers", unit="img", disable=not progress,
              leave=False) as bar:
        for s in range(0, len(images), step):
            res = chip_model.run(chip, images[s:s + step], image_ids=image_ids[s:s + step],
                                 trace=True)
            out.append(res.trace[prev].reshape(len(res.logits), -1))
            bar.update(len(res.logits))
    return np.concatenate(out).astype(np.uint8)


def fc_logits(chip: program.Chip, x: np.ndarray, image_ids: np.ndarray) -> np.ndarray:
    """Integer logits of FC inputs x (N, n_in) on the chip (golden integer model)."""
    wl = chip.mapping.network.weight_layers()
    psum = chip_model.layer_psums(chip, len(wl) - 1, wl[-1].name, x[:, None, :],
                                  np.asarray(image_ids, dtype=np.int64))[:, 0, :]
    bias = chip.digital.bias.get(wl[-1].name)      # imported networks' logits have a bias
    return psum if bias is None else psum + np.asarray(bias, dtype=np.int64)


def softmax_grad(logits_float: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """d(mean cross-entropy)/d(logits)."""
    z = logits_float - logits_float.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(len(labels)), labels] -= 1.0
    return p / len(labels)


class Trainer:
    """The host's side of hybrid training, one mini-batch at a time, whatever computes the
    forward passes (the golden model in `train`, the chip's RTL or a board in cim_flows):

        for idx in trainer.batches():           # indices into the training images
            logits, x = <the chip's logits and FC inputs of images[idx], ids trainer.ids[idx]>
            cells = trainer.step(idx, logits, x)  # flat indices of the cells pulsed
            <write trainer.codes()[cells] into the chip>
        new_state, report = trainer.result()

    The draws (shuffling, pulse noise) come from one generator in a fixed order, so the same
    logits and inputs give the same state bit for bit."""

    def __init__(self, state: ChipState, labels, params: HybridParams = HybridParams()):
        labels = np.asarray(labels, dtype=np.int64)
        if len(labels) == 0:
            raise ConfigError("hybrid training needs at least one labelled image")
        self.state, self.labels, self.params = state, labels, params
        cfg = state.config
        self.name = fc_name(state)
        self.ids = TRAIN_ID_BASE + np.arange(len(labels), dtype=np.int64)
        self.input_scale = state.scales["input_scales"][self.name]
        # Wanted float-weight change -> wanted differential conductance change (uS).
        self.us_per_weight = cfg.state_step_us / state.scales["weight_scales"][self.name]
        self.pos, self.neg = fc_cells(state)
        self.g = state.g_us.reshape(-1).copy()
        self.stuck, self.gain = state.stuck.reshape(-1), state.gain.reshape(-1)
        self.pulses = state.pulses.reshape(-1).copy()
        self.acc = np.zeros(self.pos.shape)
        self.rng = np.random.default_rng([HYBRID_STREAM, state.seed, params.seed])
        self.fired = self.saturated = 0
        self.train_acc: list[float] = []
        self.n_batches = -(-len(labels) // params.batch)

    def batches(self):
        """The mini-batches in training order: each epoch a new permutation."""
        n = len(self.labels)
        for _ in range(self.params.epochs):
            order = self.rng.permutation(n)
            self._correct = 0
            for s in range(0, n, self.params.batch):
                yield order[s:s + self.params.batch]
            self.train_acc.append(self._correct / n)

    def codes(self) -> np.ndarray:
        """The conductance codes the chip holds now (flat)."""
        return device_params.to_codes(self.g, self.state.config)

    def chip(self) -> program.Chip:
        return program.Chip(self.state.mapping, self.codes().reshape(self.state.g_us.shape),
                            self.state.digital)

    def step(self, idx, logits, x) -> np.ndarray:
        """One batch's update from the chip's `logits` (B, n_out) and FC inputs `x`
        (B, n_in) of images `idx`; returns the flat indices of the cells it pulsed."""
        labels = self.labels[idx]
        logits = np.asarray(logits)
        self._correct += int((np.argmax(logits, axis=1) == labels).sum())
        x_float = np.asarray(x).astype(np.float64) * self.input_scale
        d = softmax_grad(logits * self.state.logit_scale, labels)
        self.acc -= self.params.lr * (d.T @ x_float) * self.us_per_weight
        before = self.pulses.copy()
        f, s_ = _apply_threshold(self.g, self.acc, self.pos, self.neg, self.stuck, self.gain,
                                 self.pulses, self.state.config, self.state.device,
                                 self.params, self.rng)
        self.fired += f
        self.saturated += s_
        return np.flatnonzero(self.pulses != before)

    def result(self, on: str = "golden") -> tuple[ChipState, HybridReport]:
        """The new chip state (its history records the run, and where the forward passes
        ran unless on the golden model) and the report."""
        state, params = self.state, self.params
        codes_shape = state.g_us.shape
        new_pulses = self.pulses.reshape(codes_shape)
        applied = int(new_pulses.sum() - state.pulses.sum())
        report = HybridReport(len(self.labels), params.epochs, applied, self.fired,
                              self.saturated, self.train_acc)
        entry = {"stage": "hybrid", "images": len(self.labels), "epochs": params.epochs,
                 "batch": params.batch, "lr": params.lr, "threshold_us": params.threshold_us,
                 "seed": params.seed, "pulses": applied}
        if on != "golden":
            entry["on"] = on
        new = replace(state, g_us=self.g.reshape(codes_shape), pulses=new_pulses,
                      history=state.history + [entry])
        return new, report


def train(state: ChipState, images, labels, params: HybridParams = HybridParams(),
          progress: bool = True) -> tuple[ChipState, HybridReport]:
    """Retrain the FC cells of `state` in situ on the golden model; returns the new state
    and a report."""
    images = np.asarray(images)
    labels = np.asarray(labels, dtype=np.int64)
    if len(images) == 0 or len(images) != len(labels):
        raise ConfigError(f"hybrid training needs images with one label each, got "
                          f"{len(images)} images and {len(labels)} labels")
    tr = Trainer(state, labels, params)
    x = fc_inputs(state, images, tr.ids, progress)
    bar = tqdm(total=params.epochs * tr.n_batches, desc="hybrid training", unit="batch",
               disable=not progress, leave=False)
    for idx in tr.batches():
        tr.step(idx, fc_logits(tr.chip(), x[idx], tr.ids[idx]), x[idx])
        bar.update(1)
        if tr.train_acc:
            bar.set_postfix(train_acc=f"{100 * tr.train_acc[-1]:.2f}%")
    bar.close()
    return tr.result()


def _apply_threshold(g, acc, pos, neg, stuck, gain, pulses, cfg, dev, params, rng):
    """Pulse the pairs whose accumulated want exceeds the threshold; update in place."""
    fire = np.abs(acc) >= params.threshold_us
    if not fire.any():
        return 0, 0
    want_up = acc[fire] > 0
    p_cell, n_cell = pos[fire], neg[fire]
    # The host reads both cells (as codes) to choose which one to move: lower the partner if
    # it sits above state 0 inside the window, otherwise raise the main cell, at most to the
    # window's top or to the partner's conductance (which cancels a partner stuck on).
    read = device_params.to_codes(g, cfg) * cfg.g_lsb_us
    partner = np.where(want_up, n_cell, p_cell)
    main = np.where(want_up, p_cell, n_cell)
    lower = (read[partner] > cfg.g_min_us + dev.tolerance_us) & (read[partner] <= cfg.g_max_us)
    cell = np.where(lower, partner, main)
    up = ~lower
    ok = lower | (read[main] < np.maximum(cfg.g_max_us, read[partner]))
    step = device.nominal_step(read[cell], up, dev)
    n = np.clip(np.rint(np.abs(acc[fire]) / step), 1, params.max_pulses_per_update)
    n = np.where(ok, n, 0).astype(np.int64)
    for k in range(int(n.max(initial=0))):
        sel = n > k
        c = cell[sel]
        g[c] = device.pulse(g[c], up[sel], gain[c], stuck[c], dev, rng)
        pulses[c] += 1
    # Each pulse moves the pair's difference by about one nominal step towards the want.
    sub = acc[fire]
    sub -= np.sign(sub) * n * step
    sub[~ok] = 0.0      # a saturated pair cannot follow; drop the want instead of piling up
    acc[fire] = sub
    return int(ok.sum()), int((~ok).sum())
