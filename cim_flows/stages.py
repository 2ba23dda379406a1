"""Accuracy of the network at each stage of the flow: float, quantized ideal chip, and (with a
chip-state file) the programmed chip. Shared by `cim eval` and `cim demo`."""

from __future__ import annotations

import numpy as np
from tqdm import tqdm

from cim_spec import program
from cim_spec.config import ConfigError, SystemConfig
from cim_spec.mapping import Mapping, map_network
from cim_spec.network import MCNN
from cim_spec.program import Program
from golden import chip_model, data, float_model, model_file
from golden.quantize import compile_model

CALIB_IMAGES = 500


def load_model(path=None):
    """The bundled mCNN, or a model file of any network (its network: :func:`network`)."""
    return model_file.load_bundled(MCNN) if path is None else model_file.load_any(path)[1]


def network(model):
    """The network of a loaded model (the mCNN unless the file described another)."""
    return model.net if model.net is not None else MCNN


def calibration_images() -> np.ndarray:
    """The images that set the ADC full scales: the first of the bundled training subset."""
    return data.load_bundled().train_images[:CALIB_IMAGES]


def ideal_program(config: SystemConfig, model) -> tuple[Mapping, Program]:
    mapping = map_network(config, network(model))
    return mapping, compile_model(model, mapping, calibration_images())


def float_accuracy(model, images, labels) -> float:
    from golden import net_float
    net = network(model)
    if net_float.uses(net):
        return net_float.accuracy(net, net_float.model_params(model), images, labels)
    return float_model.accuracy(net, model.weights, images, labels)


def chip_accuracy(chip: program.Chip, images, labels, progress: bool = True,
                  desc: str = "chip", image_ids=None) -> float:
    """Accuracy of the bit-accurate integer model of `chip` (batched, with a progress bar)."""
    n = len(images)
    ids = np.arange(n) if image_ids is None else np.asarray(image_ids)
    step = 2000
    correct = 0
    with tqdm(total=n, desc=desc, unit="img", disable=not progress, leave=False) as bar:
        for s in range(0, n, step):
            res = chip_model.run(chip, images[s:s + step], image_ids=ids[s:s + step])
            correct += int((res.predictions == np.asarray(labels[s:s + step])).sum())
            bar.update(min(step, n - s))
    return correct / n if n else 0.0


def transfer_state(cfg, model, preset, seed):
    """Compile the model for `cfg` and program it into a chip of `preset` cells."""
    from golden import transfer
    mapping, prog = ideal_program(cfg, model)
    return transfer.program_chip(mapping, prog, preset, seed)


def hybrid_subset(d, fraction: float | None, count: int | None, seed: int):
    """Training images for hybrid training: `count` of them, or `fraction` of the set,
    stratified by class (deterministic for `seed`)."""
    from golden.data import stratified_indices
    n_all = d.n_train
    if count is not None:
        if not 1 <= count <= n_all:
            raise ConfigError(f"hybrid training images (--images) must be in 1..{n_all} "
                              f"(the training set), got {count}")
        n = count
    else:
        if not 0 < fraction <= 1:
            raise ConfigError(f"hybrid training fraction (--fraction) must be in (0, 1], "
                              f"got {fraction}")
        n = max(1, round(fraction * n_all))
    idx = np.arange(n_all) if n == n_all else stratified_indices(d.train_labels, n, seed)
    return d.train_images[idx], d.train_labels[idx]


def perturbed_chip(replication: int, seed: int = 2020) -> program.Chip:
    """The bundled network's ideal chip with every code moved by a seeded -4..4 and read noise
    on: the verification chip of the chip regressions and the coverage run (a chip whose cells
    are not the targets, so an RTL that read the targets instead would disagree)."""
    cfg = SystemConfig(replication=replication)
    mapping, prog = ideal_program(cfg, load_model())
    rng = np.random.default_rng(seed)
    g = np.clip(prog.target + rng.integers(-4, 5, size=prog.target.shape), 0, cfg.code_max)
    d = prog.digital
    return program.Chip(mapping, g, program.Digital(
        d.adc_gain, d.requant_mult, d.requant_shift, read_noise=119, noise_seed=seed))
