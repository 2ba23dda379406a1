#!/usr/bin/env python3
"""Regenerate golden/data/mcnn_weights.npz: ex-situ quantization-aware training of the mCNN on
the full MNIST training set, accuracies measured on the full 10,000-image test set.

    python tools/train_default.py [--data /work/shared/data/mnist] [--out ...] [--seed 0]

BLAS runs single-threaded (faster for these small matrices, and reproducible).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cim_spec.network import MCNN  # noqa: E402
from golden import data, float_model, model_file, train  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "mnist"),
                    help="full MNIST: IDX directory or mnist.npz")
    ap.add_argument("--out", default=str(model_file.BUNDLED_WEIGHTS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=20, help="float epochs")
    ap.add_argument("--qat-epochs", type=int, default=4)
    ap.add_argument("--lr", type=float, default=5e-3)
    ap.add_argument("--qat-lr", type=float, default=5e-4)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--shift", type=int, default=1, help="random-shift augmentation, pixels")
    ap.add_argument("--float-mix", type=float, default=0.25,
                    help="weight of the float loss during QAT")
    ap.add_argument("--weight-rule", choices=("max", "mse"), default="mse")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)

    full = data.load_mnist(args.data)
    model = train.train(MCNN, full, epochs=args.epochs, seed=args.seed,
                        qat_epochs=args.qat_epochs, batch_size=args.batch_size, lr=args.lr,
                        qat_lr=args.qat_lr, shift=args.shift, float_mix=args.float_mix,
                        weight_rule=args.weight_rule, progress=not args.no_progress)
    model.meta["data"] = f"MNIST {full.n_train} train / {full.n_test} test images"
    try:
        sub = data.load_bundled()
        model.meta["subset_float_accuracy"] = round(float_model.accuracy(
            MCNN, model.weights, sub.test_images, sub.test_labels), 6)
        model.meta["subset_quant_accuracy"] = round(float_model.accuracy(
            MCNN, model.weights, sub.test_images, sub.test_labels, model.quant_spec()), 6)
    except data.MnistError as e:
        print(f"(no bundled subset: {e})")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    model_file.save(model, out, MCNN)
    model_file.load(out, MCNN)  # check the round trip
    m = model.meta
    print(f"wrote {out} ({out.stat().st_size} bytes)")
    print(f"full test set: float {m['float_accuracy']:.2%}, fake-quantized "
          f"{m['quant_accuracy']:.2%}; training {m['train_seconds']} s")
    print("weight scales:", model.weight_scales)
    print("act scales:   ", model.act_scales)
    return 0


if __name__ == "__main__":
    sys.exit(main())
