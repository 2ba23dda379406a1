"""Accuracy of engine-driven training (golden/engine_training.py) on a programmed chip state
for a few thresholds and margins, against the chip before training; prints one line each.

    python benchmarks/update_engine_accuracy.py --chip STATE [--images 2000] [--epochs 3]
        [--threshold 256 512 1024] [--margin 0 2000]
"""

import argparse
import time

from cim_flows import stages
from cim_spec import chipstate
from golden import data, engine_training


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--chip", required=True)
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threshold", type=int, nargs="+", default=[256, 512, 1024])
    ap.add_argument("--margin", type=int, nargs="+", default=[0])
    a = ap.parse_args()
    state = chipstate.load(a.chip)
    d = data.load(None)
    images, labels = stages.hybrid_subset(d, None, a.images, a.seed)
    base = stages.chip_accuracy(state.chip, d.test_images, d.test_labels, progress=False)
    print(f"before: test accuracy {100 * base:.2f}% on {len(d.test_labels)} images")
    for t in a.threshold:
        for m in a.margin:
            t0 = time.time()
            new, rep = engine_training.train(state, images, labels, t, m, a.epochs, a.seed)
            acc = stages.chip_accuracy(new.chip, d.test_images, d.test_labels, progress=False)
            print(f"T={t} margin={m}: test {100 * acc:.2f}%, requests {rep.requests}, "
                  f"pulses {rep.pulses}, refused {rep.refused}, updating images "
                  f"{rep.updates}, train acc/epoch "
                  f"{' '.join(f'{100 * v:.1f}' for v in rep.train_accuracy)}, "
                  f"{time.time() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
