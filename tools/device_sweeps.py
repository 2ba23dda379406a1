#!/usr/bin/env python3
"""The device figures of `cim report`: JSON artifacts in a run directory.

    python tools/device_sweeps.py hwa --run RUN [--weights W.npz ...] [--data M]
        [--sigmas 0.5,0.7,0.88,1.0,1.2] [--seeds 1,2,3] [--limit N] [--force]
    python tools/device_sweeps.py drift --run RUN --chip STATE [--chip STATE2 ...] [--data M]
        [--ages 0,3600,86400,2592000,31536000] [--recalibrate N] [--limit N] [--force]

`hwa` writes RUN/hwa_sweep.json: transfer accuracy (golden model, read noise on) against the
programming error (the `yao2020` preset with its `relax_sigma_us` replaced), mean over chip
seeds, for the bundled default weights and every model given with --weights (the
hardware-aware ones: golden/data/mcnn_weights_hwa.npz by default when it exists).
`drift` writes RUN/drift.json: accuracy of each chip state against its age, without and with
drift compensation, and with --recalibrate N compensated and recalibrated (`cim eval --chip S
--age T [--compensate [--recalibrate N]]`).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from cim_flows import stages  # noqa: E402
from cim_spec import chipstate, files  # noqa: E402
from cim_spec.config import SystemConfig  # noqa: E402
from cim_spec.device_params import load_preset  # noqa: E402
from golden import compensate, data, drift, hybrid  # noqa: E402

HWA_WEIGHTS = ROOT / "golden" / "data" / "mcnn_weights_hwa.npz"


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v]


def _test_set(args):
    d = data.load(args.data)
    n = args.limit or d.n_test
    return d.test_images[:n], d.test_labels[:n], "bundled" if args.data is None else str(args.data)


def sweep_hwa(args) -> dict:
    images, labels, src = _test_set(args)
    weights = args.weights or ([HWA_WEIGHTS] if HWA_WEIGHTS.is_file() else [])
    models = {"default": None, **{Path(w).stem: Path(w) for w in weights}}
    base = load_preset("yao2020")
    seeds = [int(s) for s in _floats(args.seeds)]
    out = {"param": "relax_sigma_us", "preset": base.name, "x": _floats(args.sigmas),
           "seeds": seeds, "images": int(len(labels)), "data": src, "models": {}}
    cfg = SystemConfig()
    for name, path in models.items():
        model = stages.load_model(path)
        acc = [[stages.chip_accuracy(
                    stages.transfer_state(cfg, model, base.with_(relax_sigma_us=x), s).chip,
                    images, labels, progress=False) for s in seeds] for x in out["x"]]
        out["models"][name] = {"weights": str(path) if path else "bundled",
                               "accuracy": acc, "mean": [float(np.mean(a)) for a in acc]}
        print(name, " ".join(f"{x:g}:{100 * m:.2f}%" for x, m in
                             zip(out["x"], out["models"][name]["mean"], strict=True)),
              file=sys.stderr)
    return out


def sweep_drift(args) -> dict:
    images, labels, src = _test_set(args)
    ages = _floats(args.ages)
    cal = stages.calibration_images()[:compensate.CALIB_IMAGES]
    out = {"ages_s": ages, "images": int(len(labels)), "data": src, "chips": {}}
    if args.recalibrate:
        # the labelled images of `cim eval --compensate --recalibrate N`
        d = data.load(args.data)
        rec_images, rec_labels = stages.hybrid_subset(d, None, args.recalibrate,
                                                      compensate.RECAL_SEED)
        out["recalibration_images"] = args.recalibrate
    for path in args.chip:
        fresh = chipstate.load(path)
        raw, comp, recal = [], [], []
        for age in ages:
            aged = drift.aged(fresh, age) if age else fresh
            raw.append(stages.chip_accuracy(aged.chip, images, labels, progress=False))
            fixed, _ = compensate.compensate_state(fresh, aged, cal, age)
            comp.append(stages.chip_accuracy(fixed.chip, images, labels, progress=False))
            line = f"{path} age {age:g} s: {100 * raw[-1]:.2f}% -> {100 * comp[-1]:.2f}%"
            if args.recalibrate:
                new, _ = hybrid.train(fixed, rec_images, rec_labels, compensate.RECAL_PARAMS,
                                      progress=False)
                recal.append(stages.chip_accuracy(new.chip, images, labels, progress=False))
                line += f" -> {100 * recal[-1]:.2f}% recalibrated"
            print(line, file=sys.stderr, flush=True)
        out["chips"][Path(path).name] = {"chip": str(path), "stage": fresh.stage,
                                         "ages_s": ages, "raw": raw, "compensated": comp,
                                         **({"recalibrated": recal} if recal else {})}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="what", required=True)
    for name in ("hwa", "drift"):
        sp = sub.add_parser(name)
        sp.add_argument("--run", type=Path, required=True)
        sp.add_argument("--data", type=Path)
        sp.add_argument("--limit", type=int)
        sp.add_argument("--force", action="store_true")
    sub.choices["hwa"].add_argument("--weights", type=Path, action="append")
    sub.choices["hwa"].add_argument("--sigmas", default="0.5,0.7,0.88,1.0,1.2")
    sub.choices["hwa"].add_argument("--seeds", default="1,2,3")
    sub.choices["drift"].add_argument("--chip", type=Path, action="append", required=True)
    sub.choices["drift"].add_argument("--ages", default="0,3600,86400,2592000,31536000")
    sub.choices["drift"].add_argument("--recalibrate", type=int, default=0, metavar="N",
                                      help="also the compensated chip recalibrated by hybrid "
                                           "training on N labelled images (0: not)")
    args = ap.parse_args(argv)
    target = args.run / ("hwa_sweep.json" if args.what == "hwa" else "drift.json")
    files.check_output(args.run, {files.DIRECTORY}, True)
    files.check_output(target, {files.JSON}, args.force)
    args.run.mkdir(parents=True, exist_ok=True)
    result = sweep_hwa(args) if args.what == "hwa" else sweep_drift(args)
    files.write_json(target, result)
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
