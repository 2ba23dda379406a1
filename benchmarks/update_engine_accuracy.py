"""Accuracy of engine-driven training (golden/engine_training.py) on a programmed chip state
for a few thresholds and margins, against the chip before training and against host hybrid
training (golden/hybrid.py) on the same images; prints one line each.

    python benchmarks/update_engine_accuracy.py --chip STATE [--data PATH]
        [--images 2000 | --fraction 0.1] [--epochs 3] [--seed 0]
        [--threshold 256 512 1024] [--margin 0 2000] [--validate N]

The training images are those `cim hybrid` takes (`--images`/`--fraction`, `--seed`).
`--validate N` scores every run on the last N images of the training set, leaving out those
the run trains on, instead of on the test set: that is how the rule's defaults are chosen
(the test set must not choose them).
"""

import argparse
import time

import numpy as np

from cim_flows import stages
from cim_spec import chipstate
from golden import data, engine_training, hybrid


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--chip", required=True)
    ap.add_argument("--data", default=None, help="MNIST directory (default: bundled subset)")
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--images", type=int)
    g.add_argument("--fraction", type=float)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threshold", type=int, nargs="+", default=[256, 512, 1024])
    ap.add_argument("--margin", type=int, nargs="+", default=[0])
    ap.add_argument("--validate", type=int, metavar="N",
                    help="score on the last N training images not trained on, not the test set")
    a = ap.parse_args()
    if a.images is None and a.fraction is None:
        a.images = 2000
    state = chipstate.load(a.chip)
    d = data.load(a.data)
    images, labels = stages.hybrid_subset(d, a.fraction, a.images, a.seed)
    if a.validate:
        # The same selection as hybrid_subset, to leave the trained images out.
        from golden.data import stratified_indices
        n = len(labels)
        used = np.arange(d.n_train) if n == d.n_train else \
            stratified_indices(d.train_labels, n, a.seed)
        held = np.setdiff1d(np.arange(d.n_train - a.validate, d.n_train), used)
        ev_images, ev_labels, where = d.train_images[held], d.train_labels[held], \
            f"validation ({len(held)} of the last {a.validate} training images)"
    else:
        ev_images, ev_labels, where = d.test_images, d.test_labels, "test"

    def score(s):
        return stages.chip_accuracy(s.chip, ev_images, ev_labels, progress=False)

    print(f"{a.chip}: training on {len(labels)} images, {a.epochs} epochs; scored on {where}")
    print(f"before: {100 * score(state):.2f}%", flush=True)
    t0 = time.time()
    new, rep = hybrid.train(state, images, labels,
                            hybrid.HybridParams(epochs=a.epochs, seed=a.seed), progress=False)
    print(f"host hybrid: {100 * score(new):.2f}%, pulses {rep.pulses}, "
          f"{time.time() - t0:.0f} s", flush=True)
    for t in a.threshold:
        for m in a.margin:
            t0 = time.time()
            new, rep = engine_training.train(state, images, labels, t, m, a.epochs, a.seed)
            print(f"T={t} margin={m}: {100 * score(new):.2f}%, requests {rep.requests}, "
                  f"pulses {rep.pulses}, refused {rep.refused}, updating images "
                  f"{rep.updates}, train acc/epoch "
                  f"{' '.join(f'{100 * v:.1f}' for v in rep.train_accuracy)}, "
                  f"{time.time() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
