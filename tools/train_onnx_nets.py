"""Train the networks shipped as ONNX files (golden/data/lenet5.onnx, resnet6.onnx, resnet20.onnx)
on MNIST with the numpy trainer (golden/train.py), and write them with `cim export`'s writer.

    python tools/train_onnx_nets.py --data /path/to/mnist [--epochs 3] [--qat-epochs 1]

Short runs on purpose (a few epochs): the figures in docs/onnx.md are for these settings.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from threadpoolctl import threadpool_limits

from cim_flows import onnx_io
from cim_spec import files
from cim_spec.network import Add, Conv, Dense, Network, Pool
from golden import data, net_float, train

# LeNet-5 (LeCun 1998) for 28 x 28 inputs: C1 padded to keep 28 x 28 as the 32 x 32 original
# did; F5 and F6 narrowed from 120 / 84 to 64 / 48 outputs: a layer's outputs must fit one
# array's 128 source lines (64 differential pairs) until the mapping splits outputs.
LENET5 = Network("lenet5", (1, 28, 28), (
    Conv("C1", 1, 6, 5, pad=2, bias=True), Pool("S2", 2, 2, mode="avg"),
    Conv("C3", 6, 16, 5, bias=True), Pool("S4", 2, 2, mode="avg"),
    Dense("F5", 400, 64, bias=True), Dense("F6", 64, 48, bias=True),
    Dense("F7", 48, 10, bias=True)))

# A small residual network: a padded stem and a max-pool to 14 x 14, two basic blocks (the
# second with stride 2 and a 1 x 1 projection shortcut), a 2 x 2 average pool (ceil mode: 7 x 7
# to 4 x 4) and the logits layer. (Global average pooling instead reached 95% after two epochs:
# too little for 16 channels.)
RESNET6 = Network("resnet6", (1, 28, 28), (
    Conv("stem", 1, 8, 3, pad=1, bias=True),
    Pool("pool", 2, 2),
    Conv("b1c1", 8, 8, 3, pad=1, bias=True),
    Conv("b1c2", 8, 8, 3, pad=1, bias=True, relu=False),
    Add("b1add", other="pool"),
    Conv("b2c1", 8, 16, 3, stride=2, pad=1, bias=True),
    Conv("b2c2", 16, 16, 3, pad=1, bias=True, relu=False),
    Conv("b2proj", 8, 16, 1, stride=2, bias=True, relu=False, src="b1add"),
    Add("b2add", other="b2c2"),
    Pool("avg", 2, 2, mode="avg"),
    Dense("fc", 256, 10, bias=True)))



def resnet20() -> Network:
    """ResNet-20 (He et al. 2016, the CIFAR-10 shape) for 28 x 28 MNIST: a padded 3x3 stem
    with 16 channels, three stages of three basic blocks (16, 32, 64 channels on 28 x 28,
    14 x 14, 7 x 7 maps; the first block of stages 2 and 3 has stride 2 and a 1 x 1 projection
    shortcut), a global average pool and the logits layer: 19 convs and one dense layer.
    64 channels is the widest a layer can be (its outputs must fit one array's 128 source
    lines), which the shape's last stage needs exactly. Every conv has a bias (the folded
    BatchNormalization of an exported network)."""
    layers = [Conv("stem", 1, 16, 3, pad=1, bias=True)]
    prev, ch = "stem", 16
    for s, width in enumerate((16, 32, 64), start=1):
        for b in range(1, 4):
            n = f"s{s}b{b}"
            stride = 2 if width != ch else 1
            layers += [Conv(f"{n}c1", ch, width, 3, stride=stride, pad=1, bias=True, src=prev),
                       Conv(f"{n}c2", width, width, 3, pad=1, bias=True, relu=False)]
            if stride == 1:
                layers.append(Add(f"{n}add", other=prev))
            else:  # the projection reads the block's input; the add takes c2's map
                layers += [Conv(f"{n}proj", ch, width, 1, stride=2, bias=True, relu=False,
                                src=prev),
                           Add(f"{n}add", other=f"{n}c2")]
            prev, ch = f"{n}add", width
    layers += [Pool("gap", 7, 7, mode="avg"), Dense("fc", 64, 10, bias=True)]
    return Network("resnet20", (1, 28, 28), tuple(layers))


RESNET20 = resnet20()

NETWORKS = {"lenet5": LENET5, "resnet6": RESNET6, "resnet20": RESNET20}
OUT = Path(__file__).resolve().parents[1] / "golden" / "data"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--nets", nargs="+", default=list(NETWORKS), choices=list(NETWORKS))
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--qat-epochs", type=int, default=1)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--batch-size", type=int, default=128, dest="batch_size")
    ap.add_argument("--float-mix", type=float, default=0.0,
                    help="weight of the float loss in the QAT epochs (0: QAT loss only)")
    ap.add_argument("--train-images", type=int, dest="train_images",
                    help="train on this many images of the training set (stratified)")
    ap.add_argument("--qat-images", type=int, dest="qat_images",
                    help="run the quantization-aware epochs on this many of the training "
                         "images (stratified) after the float epochs on all of them")
    ap.add_argument("--no-evaluate", action="store_false", dest="evaluate",
                    help="skip the test-set accuracies at the end (cim eval gives them)")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--force", action="store_true")
    args = ap.parse_args(argv)
    d = data.load(args.data)
    if args.train_images:
        idx = data.stratified_indices(d.train_labels, args.train_images, 0)
        d = data.Mnist(d.train_images[idx], d.train_labels[idx], d.test_images, d.test_labels)
    # One BLAS thread: the skinny products of numpy training lose far more to thread
    # contention than they gain (measured 0.85 s against 2-6 s per batch on a busy machine).
    with threadpool_limits(1):
        for name in args.nets:
            _one(args, d, name)
    return 0


def _one(args, d, name) -> None:
    net = NETWORKS[name]
    path = args.out / f"{name}.onnx"
    files.check_output(path, {files.OTHER}, args.force)
    kw = dict(lr=args.lr, batch_size=args.batch_size, float_mix=args.float_mix,
              progress=sys.stderr.isatty(), evaluate=args.evaluate,
              log=lambda s: print(s, file=sys.stderr))
    if name == "resnet20":
        kw["init"] = _zero_residual_init(net)
    if args.qat_images and args.epochs and args.qat_epochs:
        # A network too slow to fine-tune on every image (resnet20): the float epochs on the
        # whole set, then the quantization-aware ones from those weights on a subset.
        first = train.train(net, d, epochs=args.epochs, qat_epochs=0,
                            **{**kw, "evaluate": False})
        kw.pop("init", None)
        idx = data.stratified_indices(d.train_labels, args.qat_images, 1)
        sub = data.Mnist(d.train_images[idx], d.train_labels[idx], d.test_images, d.test_labels)
        model = train.train(net, sub, epochs=0, qat_epochs=args.qat_epochs, init=first, **kw)
        model.meta["float_run"] = {k: first.meta[k] for k in (
            "epochs", "lr", "train_images", "train_seconds", "final_losses")}
    else:
        model = train.train(net, d, epochs=args.epochs, qat_epochs=args.qat_epochs, **kw)
    files.write_bytes(path, onnx_io.to_onnx(net, model.weights, model.biases,
                                            model.weight_scales, model.act_scales))
    keys = ("float_accuracy", "quant_accuracy", "test_images", "train_images",
            "train_seconds", "final_losses", "float_run")
    print(json.dumps({"net": name, "out": str(path), **{k: model.meta.get(k) for k in keys}}),
          flush=True)


def _zero_residual_init(net: Network) -> SimpleNamespace:
    """He-normal weights, but zero for the last conv of every residual branch (the conv an
    add reads, not a projection): without batch normalization, nine blocks that each add a
    He-initialized branch blow the logits up; a branch that starts at zero starts the block
    as the identity (Goyal et al. 2017, "zero-gamma"). The first training of resnet20 without
    it reached 31% float accuracy."""
    params = net_float.init_params(net, seed=0)
    for layer in net.layers:
        if isinstance(layer, Add):
            i = [la.name for la in net.layers].index(layer.name)
            src = net.source(i)
            branch = layer.other if src.endswith("proj") else src
            params[branch] = np.zeros_like(params[branch])
    return SimpleNamespace(
        weights={k: v for k, v in params.items() if not k.endswith(".bias")},
        biases={k.removesuffix(".bias"): v for k, v in params.items() if k.endswith(".bias")})


if __name__ == "__main__":
    sys.exit(main())
