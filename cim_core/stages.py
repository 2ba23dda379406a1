"""Accuracy of the network at each stage of the flow: float, quantized ideal chip, and (with a
chip-state file) the programmed chip. Shared by `cim eval` and `cim demo`."""

from __future__ import annotations

import numpy as np
from tqdm import tqdm

from golden import chip_model, data, float_model, model_file
from golden.network import MCNN
from golden.quantize import Program, compile_model

from .config import SystemConfig
from .mapping import Mapping, map_network

CALIB_IMAGES = 500


def load_model(path=None):
    return model_file.load_bundled(MCNN) if path is None else model_file.load(path, MCNN)


def calibration_images() -> np.ndarray:
    """The images that set the ADC full scales: the first of the bundled training subset."""
    return data.load_bundled().train_images[:CALIB_IMAGES]


def ideal_program(config: SystemConfig, model) -> tuple[Mapping, Program]:
    mapping = map_network(config, MCNN)
    return mapping, compile_model(model, mapping, calibration_images())


def float_accuracy(model, images, labels) -> float:
    return float_model.accuracy(MCNN, model.weights, images, labels)


def chip_accuracy(chip: chip_model.Chip, images, labels, progress: bool = True,
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
