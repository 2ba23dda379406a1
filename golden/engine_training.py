"""Training with the update engine (golden/update_engine.py) instead of the host's gradient:
the chip classifies each labelled image, its engine turns the logits and FC inputs into pulse
requests, and the host applies one device-model pulse per request before the next image (the
engine asks for the direction; the pulse response stays the device's).

Like golden/hybrid.py the conv layers stay as programmed, so the FC inputs of each image are
computed once; the logits of an image are the FC layer's on the chip as pulsed so far.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from tqdm import tqdm

from cim_spec.chipstate import ChipState
from cim_spec.config import ConfigError
from golden import hybrid
from golden.update_engine import EngineParams, UpdateEngine, apply_requests

ENGINE_STREAM = 0xE61E  # separates the engine run's draws from hybrid's and the transfer's
# The rule's defaults (`cim hybrid --engine`), chosen on a validation split of the training
# set, never the test set (docs/chip.md, "Update engine").
DEFAULT_THRESHOLD = 512
DEFAULT_MARGIN = 10000


@dataclass
class EngineReport:
    images: int
    epochs: int
    requests: int       # pulse requests the engine issued
    pulses: int         # pulses applied
    refused: int        # requests refused at the window's edge
    updates: int        # images that updated
    train_accuracy: list[float]

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def engine_params(state: ChipState, acc_bits: int = 12) -> EngineParams:
    lm = state.mapping.layer(hybrid.fc_name(state))
    return EngineParams(n_out=lm.n_out, n_in=lm.n_in, lanes=12 if lm.n_in % 12 == 0 else 1,
                        input_bits=state.config.input_bits, acc_bits=acc_bits)


def train(state: ChipState, images, labels, threshold: int = DEFAULT_THRESHOLD,
          margin: int = DEFAULT_MARGIN, epochs: int = 3, seed: int = 0, acc_bits: int = 12,
          progress: bool = False) -> tuple[ChipState, EngineReport]:
    images = np.asarray(images)
    labels = np.asarray(labels, dtype=np.int64)
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ConfigError(f"engine training epochs must be an integer >= 1, got {epochs!r}")
    if len(images) == 0 or len(images) != len(labels):
        raise ConfigError(f"engine training needs images with one label each, got "
                          f"{len(images)} images and {len(labels)} labels")
    p = engine_params(state, acc_bits)
    eng = UpdateEngine(p, threshold, margin)
    # The host side of the chip: conductances, pulse counts, pair indices (as hybrid's).
    tr = hybrid.Trainer(state, labels, hybrid.HybridParams(epochs=epochs, seed=seed))
    rng = np.random.default_rng([ENGINE_STREAM, state.seed, seed])
    x = hybrid.fc_inputs(state, images, tr.ids, progress)
    n_req = n_pulses = refused = updates = 0
    train_acc = []
    chip = tr.chip()
    bar = tqdm(total=epochs * len(labels), desc="engine training", unit="img",
               disable=not progress, leave=False)
    for _ in range(epochs):
        correct = 0
        for i in rng.permutation(len(labels)):
            logits = hybrid.fc_logits(chip, x[i:i + 1], tr.ids[i:i + 1])[0]
            correct += int(np.argmax(logits) == labels[i])
            reqs = eng.image(logits, int(labels[i]), x[i])
            if reqs:
                updates += 1
                n_req += len(reqs)
                a, r = apply_requests(tr.g, tr.pulses, reqs, tr.pos, tr.neg, tr.stuck, tr.gain,
                                      state.config, state.device, rng)
                n_pulses += a
                refused += r
                chip = tr.chip()
        bar.update(len(labels))
        train_acc.append(correct / len(labels))
    bar.close()
    shape = state.g_us.shape
    entry = {"stage": "engine", "images": len(labels), "epochs": epochs,
             "threshold": int(threshold), "margin": int(margin), "acc_bits": acc_bits,
             "seed": seed, "requests": n_req, "updates": updates, "pulses": n_pulses}
    new = replace(state, g_us=tr.g.reshape(shape), pulses=tr.pulses.reshape(shape),
                  history=state.history + [entry])
    return new, EngineReport(len(labels), epochs, n_req, n_pulses, refused, updates, train_acc)
