#!/usr/bin/env python3
"""Regenerate golden/data/mnist_subset.npz: 2,000 training and 1,000 test images drawn from the
full MNIST set, stratified by class (proportional to the class frequencies), deterministic seed.

    python tools/make_subset.py [--src /work/shared/data/mnist] [--out golden/data/...]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from golden import data  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", default=str(ROOT.parent / "shared" / "data" / "mnist"),
                    help="full MNIST: IDX directory or mnist.npz")
    ap.add_argument("--out", default=str(data.BUNDLED_PATH))
    ap.add_argument("--train", type=int, default=data.BUNDLED_TRAIN)
    ap.add_argument("--test", type=int, default=data.BUNDLED_TEST)
    ap.add_argument("--seed", type=int, default=data.BUNDLED_SEED)
    args = ap.parse_args(argv)

    full = data.load_mnist(args.src)
    sub, tr, te = data.make_subset(full, args.train, args.test, args.seed)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    data.save_npz(sub, out, train_index=tr.astype(np.int32), test_index=te.astype(np.int32),
                  seed=np.array(args.seed))
    print(f"wrote {out}: {sub.n_train} train, {sub.n_test} test images, "
          f"{out.stat().st_size / 1e6:.2f} MB")
    print("train class counts:", np.bincount(sub.train_labels, minlength=10).tolist())
    print("test class counts: ", np.bincount(sub.test_labels, minlength=10).tolist())
    return 0


if __name__ == "__main__":
    sys.exit(main())
