"""Ex-situ, quantization-aware training of a :class:`cim_spec.network.Network` on MNIST.

Two phases, deterministic for a seed (on a given machine and BLAS):

1. float training: Adam, mini-batches, cosine learning-rate decay after a short warm-up,
   optional random-shift augmentation;
2. quantization-aware fine-tuning (QAT): the forward pass uses 15-level weights
   (``s_w = max|W| / 7`` recomputed every step) and 8-bit activations; the activation scales
   are calibrated on training data, tracked (exponential moving average of a high percentile
   of each ReLU output) and frozen for the last QAT epoch. Straight-through gradients.
   With ``hwa`` (a :class:`golden.hwa.HwaNoise`) the QAT forward passes also carry the
   device's programming errors, stuck cells and read noise (hardware-aware training).

``init`` starts from a trained model's float weights instead of a random initialization (e.g.
``epochs=0`` and a few hardware-aware QAT epochs on top of the bundled weights).

The result is a :class:`golden.model_file.TrainedModel`: float weights, the final weight
scales and activation scales, and a ``meta`` record of the run.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from tqdm import tqdm

from cim_spec.network import Network
from golden import float_model, net_float
from golden.data import Mnist
from golden.hwa import HwaNoise
from golden.model_file import TrainedModel


class Adam:
    """Adam with decoupled weight decay (AdamW when ``weight_decay`` > 0)."""

    def __init__(self, params: dict[str, np.ndarray], beta1=0.9, beta2=0.999, eps=1e-8,
                 weight_decay=0.0):
        self.m = {k: np.zeros_like(v) for k, v in params.items()}
        self.v = {k: np.zeros_like(v) for k, v in params.items()}
        self.b1, self.b2, self.eps, self.wd = beta1, beta2, eps, weight_decay
        self.t = 0

    def step(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray], lr: float):
        self.t += 1
        c1 = 1 - self.b1 ** self.t
        c2 = 1 - self.b2 ** self.t
        for k, g in grads.items():
            m, v = self.m[k], self.v[k]
            m *= self.b1
            m += (1 - self.b1) * g
            v *= self.b2
            v += (1 - self.b2) * g * g
            upd = (m / c1) / (np.sqrt(v / c2) + self.eps)
            if self.wd:
                upd = upd + self.wd * params[k]
            params[k] -= (lr * upd).astype(params[k].dtype)


def cosine_lr(base: float, step: int, total: int, warmup: int = 0, floor: float = 0.01
              ) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay from ``base`` to
    ``base * floor`` at ``total`` steps."""
    if warmup and step < warmup:
        return base * (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    return base * (floor + (1 - floor) * 0.5 * (1 + np.cos(np.pi * t)))


def random_shift(images: np.ndarray, max_shift: int, rng: np.random.Generator) -> np.ndarray:
    """Translate each (H, W) image by a random integer offset in [-max_shift, max_shift]^2,
    filling with zeros."""
    if max_shift <= 0:
        return images
    n, h, w = images.shape
    p = max_shift
    padded = np.pad(images, ((0, 0), (p, p), (p, p)))
    win = sliding_window_view(padded, (h, w), axis=(1, 2))  # (n, 2p+1, 2p+1, h, w)
    dy = rng.integers(0, 2 * p + 1, n)
    dx = rng.integers(0, 2 * p + 1, n)
    return win[np.arange(n), dy, dx]


def _fm(net: Network):
    """The float model of `net`: golden.float_model for the mCNN-shaped networks (which gave
    the bundled weights), golden.net_float for those with padding, stride, biases, adds."""
    return net_float if net_float.uses(net) else float_model


def _epoch(net, params, opt, images, labels, rng, *, batch, lr_at, step0, quant, shift,
           track: Callable[[dict], None] | None, desc, progress, mix=0.0) -> tuple[float, int]:
    fm = _fm(net)
    order = rng.permutation(len(labels))
    n_batches = -(-len(order) // batch)
    bar = tqdm(range(n_batches), desc=desc, disable=not progress, leave=True,
               dynamic_ncols=True)
    total, seen, step = 0.0, 0, step0
    acts: dict | None = {} if track else None
    for b in bar:
        idx = order[b * batch:(b + 1) * batch]
        x = fm.images_to_input(random_shift(images[idx], shift, rng))
        loss, grads, _ = fm.loss_and_grads(net, params, x, labels[idx], quant, acts)
        if track:
            track(acts)
        if quant is not None and mix > 0:  # also keep the float network good
            loss_f, grads_f, _ = fm.loss_and_grads(net, params, x, labels[idx])
            loss = (1 - mix) * loss + mix * loss_f
            grads = {k: (1 - mix) * g + mix * grads_f[k] for k, g in grads.items()}
        opt.step(params, grads, lr_at(step))
        step += 1
        total += loss * len(idx)
        seen += len(idx)
        if b % 20 == 0 or b == n_batches - 1:
            bar.set_postfix(loss=f"{total / seen:.4f}", lr=f"{lr_at(step - 1):.2e}")
    bar.close()
    return total / max(1, seen), step


def train(net: Network, data: Mnist, epochs: int = 20, seed: int = 0, *, qat_epochs: int = 4,
          batch_size: int = 128, lr: float = 5e-3, qat_lr: float = 5e-4,
          weight_decay: float = 0.0, shift: int = 1, act_percentile: float = 99.99,
          ema: float = 0.99, calib_images: int = 5000, float_mix: float = 0.25,
          weight_rule: str = "mse", hwa: HwaNoise | None = None,
          init: TrainedModel | None = None, progress: bool = True,
          evaluate: bool = True, log: Callable[[str], None] | None = print) -> TrainedModel:
    """Train ``net`` on ``data.train_*``: ``epochs`` float epochs, then ``qat_epochs``
    quantization-aware epochs. Accuracies on ``data.test_*`` (float and fake-quantized) are
    measured at the end and recorded in ``meta`` when ``evaluate``."""
    if epochs < 0 or qat_epochs < 0 or epochs + qat_epochs == 0:
        raise ValueError("need at least one epoch of training")
    log = log or (lambda s: None)
    fm = _fm(net)
    t0 = time.time()
    rng = np.random.default_rng(seed)
    params = fm.init_params(net, seed=int(rng.integers(2**31)))
    if init is not None:
        params = {k: np.array(init.weights[k] if k in init.weights
                              else init.biases[k.removesuffix(".bias")], dtype=np.float32)
                  for k in params}
    images, labels = data.train_images, data.train_labels.astype(np.int64)
    n_batches = -(-len(labels) // batch_size)

    # phase 1: float
    opt = Adam(params, weight_decay=weight_decay)
    total = epochs * n_batches

    def lr_float(s: int) -> float:
        return cosine_lr(lr, s, total, warmup=min(n_batches // 2, 500))

    step = 0
    history = []
    for e in range(epochs):
        loss, step = _epoch(net, params, opt, images, labels, rng, batch=batch_size,
                            lr_at=lr_float, step0=step, quant=None, shift=shift, track=None,
                            desc=f"float {e + 1}/{epochs}", progress=progress)
        history.append(("float", e + 1, loss))

    if evaluate and data.n_test and epochs:
        acc = fm.accuracy(net, params, data.test_images, data.test_labels)
        log(f"after float training: test accuracy {acc:.4f}")
        float_phase_acc = round(acc, 6)
    else:
        float_phase_acc = None

    # phase 2: quantization-aware fine-tuning
    calib = images[rng.choice(len(images), min(calib_images, len(images)), replace=False)]
    act_scales = fm.calibrate_act_scales(net, params, fm.images_to_input(calib),
                                         act_percentile)
    if float_phase_acc is not None:
        ptq = fm.QuantSpec.frozen(net, params, act_scales, weight_rule)
        acc = fm.accuracy(net, params, data.test_images, data.test_labels, ptq)
        log(f"post-training quantization: test accuracy {acc:.4f}")
        ptq_acc = round(acc, 6)
    else:
        ptq_acc = None
    if qat_epochs:
        opt = Adam(params, weight_decay=weight_decay)
        qtotal = qat_epochs * n_batches

        def lr_qat(s: int) -> float:
            return cosine_lr(qat_lr, s, qtotal)

        step = 0
        for e in range(qat_epochs):
            frozen = qat_epochs > 1 and e == qat_epochs - 1
            quant = fm.QuantSpec(None, dict(act_scales), w_rule=weight_rule, hwa=hwa)

            def track(acts, quant=quant):
                for name, a in acts.items():
                    flat = a.reshape(-1)
                    p = float(np.percentile(flat[::4], act_percentile)) / fm.A_LEVELS
                    if p > 0:
                        act_scales[name] = ema * act_scales[name] + (1 - ema) * p
                        quant.act_scales[name] = act_scales[name]

            loss, step = _epoch(net, params, opt, images, labels, rng, batch=batch_size,
                                lr_at=lr_qat, step0=step, quant=quant, shift=shift,
                                track=None if frozen else track, mix=float_mix,
                                desc=f"QAT {e + 1}/{qat_epochs}", progress=progress)
            history.append(("qat", e + 1, loss))

    weight_scales = {layer.name: fm.weight_scale(params[layer.name], rule=weight_rule)
                     for layer in net.weight_layers()}
    seconds = time.time() - t0
    meta = {
        "seed": seed, "epochs": epochs, "qat_epochs": qat_epochs, "batch_size": batch_size,
        "lr": lr, "qat_lr": qat_lr, "weight_decay": weight_decay, "shift": shift,
        "act_percentile": act_percentile, "float_mix": float_mix, "optimizer": "adam",
        "float_phase_accuracy": float_phase_acc, "ptq_accuracy": ptq_acc,
        "train_images": int(len(labels)), "train_seconds": round(seconds, 1),
        "final_losses": [list(h) for h in history[-2:]],
        "hwa": hwa.describe() if hwa is not None else None,
        "init": "given model" if init is not None else None,
        "weight_rule": weight_rule, "weight_quant": "w_q = clip(round(W / s_w), -7, 7)",
        "act_rule": "a_q = clip(round(relu / s_a), 0, 255)",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    names = {layer.name for layer in net.weight_layers()}
    model = TrainedModel(net.name, {k: v.astype(np.float32) for k, v in params.items()
                                    if k in names},
                         weight_scales, dict(act_scales), meta,
                         {k.removesuffix(".bias"): v.astype(np.float32)
                          for k, v in params.items() if k not in names}, net)
    if evaluate and data.n_test:
        meta.update(evaluate_model(net, model, data))
        log(f"test accuracy: float {meta['float_accuracy']:.4f}, "
            f"quantized {meta['quant_accuracy']:.4f} ({meta['test_images']} images)")
    log(f"training took {seconds:.1f} s")
    return model


def evaluate_model(net: Network, model: TrainedModel, data: Mnist) -> dict:
    """Test-set accuracies of the float and the fake-quantized network."""
    fm = _fm(net)
    params = net_float.model_params(model) if fm is net_float else model.weights
    acc_f = fm.accuracy(net, params, data.test_images, data.test_labels)
    acc_q = fm.accuracy(net, params, data.test_images, data.test_labels,
                        model.quant_spec())
    return {"float_accuracy": round(acc_f, 6), "quant_accuracy": round(acc_q, 6),
            "test_images": int(data.n_test)}
