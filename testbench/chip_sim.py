"""Running images through the chip's RTL on Verilator (cocotb) and comparing every logit with
the golden integer model for the same chip state."""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

import cim_spec
import hdl
from cim_spec import program
from golden import chip_model
from hdl import build
from hdl.chip import tapped_buffers
from hdl.chip_plan import plan_chip
from hdl.harness import LOADER_SOURCE, PIXELS_PER_BEAT, SimHarness
from hdl.params import CrossbarForm

from . import runner

TOPLEVEL = "harness"


def chip_digest(chip: program.Chip, form: CrossbarForm) -> str:
    """Everything the generated Verilog depends on: the chip, the form and the HDL code."""
    d = chip.digital
    return build.digest(chip.config.to_dict(), chip.mapping.network.to_dict(),
                        chip.conductance.tobytes(),
                        sorted(d.adc_gain.items()), sorted(d.requant_mult.items()),
                        sorted(d.requant_shift.items()), d.read_noise, d.noise_seed, form.value,
                        runner.package_digest(hdl, cim_spec))


def generate(chip: program.Chip, out_dir: Path,
             form: CrossbarForm = CrossbarForm.VERILOG) -> list[Path]:
    """Write the chip's simulation top (harness + chip) and return its Verilog sources."""
    harness = SimHarness(plan_chip(chip), form)
    return [*build.generate(harness, TOPLEVEL, out_dir, form), LOADER_SOURCE]


def build_chip(chip: program.Chip, build_dir: Path | None = None,
               waves: bool = False) -> tuple[Path, float]:
    """Generate and compile (cached by content); returns the build directory and seconds."""
    build_dir = Path(build_dir or runner.BUILD_ROOT /
                     f"chip_{chip_digest(chip, CrossbarForm.VERILOG)}{'_waves' if waves else ''}")
    t0 = time.perf_counter()
    stamp = build_dir / "generated.ok"
    if stamp.exists():   # the directory name is the digest of everything that went in
        sources = [build_dir / f"{TOPLEVEL}_gen.v", *build.macro_sources(CrossbarForm.VERILOG),
                   LOADER_SOURCE]
    else:
        sources = generate(chip, build_dir)
        stamp.write_text("")
    runner.build(sources, TOPLEVEL, build_dir, waves=waves, quiet=True)
    return build_dir, time.perf_counter() - t0


@dataclass
class Mismatch:
    index: int
    image_id: int
    rtl: list[int]
    golden: list[int]

    @property
    def first_difference(self) -> tuple[int, int, int]:
        o = next(i for i, (a, b) in enumerate(zip(self.rtl, self.golden, strict=True)) if a != b)
        return o, self.rtl[o], self.golden[o]


@dataclass
class SimResult:
    images: int
    logits: np.ndarray
    labels_rtl: np.ndarray
    golden_logits: np.ndarray
    mismatches: list[Mismatch]
    cycles_image: int
    cycles_layer: dict[str, int]
    cycles_per_image: float          # steady state, from the spacing of the results
    sim_seconds: float
    build_seconds: float
    build_dir: Path | None = None
    run_dir: Path | None = None          # kept (with the waveforms) only when asked for

    @property
    def bitexact(self) -> int:
        return self.images - len(self.mismatches)

    @property
    def sim_images_per_s(self) -> float:
        return self.images / self.sim_seconds if self.sim_seconds else 0.0


def simulate(chip: program.Chip, images: np.ndarray, image_ids=None, *, shards: int = 1,
             waves: bool = False, progress: bool = True,
             golden: program.Chip | None = None) -> SimResult:
    """Run `images` through the RTL and the golden model; every logit is compared (with the
    golden model of `golden`, by default the same chip)."""
    net = chip.mapping.network
    images = chip_model.check_images(images, net.input_shape)
    n = len(images)
    ids = np.arange(n, dtype=np.int64) if image_ids is None else np.asarray(image_ids, np.int64)
    build_dir, build_s = build_chip(chip, waves=waves)
    plan = plan_chip(chip)
    meta = job_meta(plan)
    shards = max(1, min(shards, n))
    bounds = np.linspace(0, n, shards + 1).astype(int)
    # Each call runs in a directory of its own: simulations of the same chip (parallel tests,
    # two terminals) share the build but never each other's job and result files.
    run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=build_dir))
    dirs = []
    for s in range(shards):
        d = run_dir / f"shard{s}"
        d.mkdir()
        lo, hi = bounds[s], bounds[s + 1]
        np.savez(d / "job.npz", images=images[lo:hi, 0], image_ids=ids[lo:hi],
                 meta=json.dumps(meta))
        dirs.append(d)

    def one(d):
        runner.test(TOPLEVEL, "testbench.chip_tests", build_dir,
                    env={"CIM_CHIP_JOB": d / "job.npz", "CIM_CHIP_OUT": d / "out.npz"},
                    waves=waves, test_dir=d, quiet=True)

    t0 = time.perf_counter()
    stop = threading.Event()
    bar = tqdm(total=n, desc="RTL (Verilator)", unit="img", disable=not progress)
    watcher = threading.Thread(target=_watch, args=(dirs, bar, stop), daemon=True)
    watcher.start()
    try:
        with ThreadPoolExecutor(shards) as pool:
            list(pool.map(one, dirs))
    finally:
        stop.set()
        watcher.join()
        bar.update(n - bar.n)
        bar.close()
    sim_s = time.perf_counter() - t0

    outs = []
    for d in dirs:
        with np.load(d / "out.npz", allow_pickle=False) as f:
            outs.append(dict(logits=f["logits"], labels=f["labels"], done_at=f["done_at"],
                             meta=json.loads(str(f["meta"]))))
    if not waves:
        shutil.rmtree(run_dir, ignore_errors=True)
    logits = np.concatenate([o["logits"] for o in outs])
    labels = np.concatenate([o["labels"] for o in outs])
    gold = chip_model.run(golden or chip, images, image_ids=ids).logits
    mismatches = [Mismatch(i, int(ids[i]), logits[i].tolist(), gold[i].tolist())
                  for i in np.flatnonzero((logits != gold).any(axis=1))]
    spacing = [np.diff(o["done_at"]) for o in outs if len(o["done_at"]) > 1]
    per_image = float(np.mean(np.concatenate(spacing))) if spacing else float(
        outs[0]["meta"]["cycles_image"])
    last = outs[-1]["meta"]
    names = [lp.name for lp in plan.layers]
    return SimResult(n, logits, labels, gold, mismatches, int(last["cycles_image"]),
                     dict(zip(names, last["cycles_layer"], strict=True)), per_image, sim_s,
                     build_s, build_dir, run_dir if waves else None)


def job_meta(plan) -> dict:
    return dict(n_out=plan.layers[-1].n_out, acc_bits=plan.acc_bits, n_layers=len(plan.layers),
                pixels_per_beat=PIXELS_PER_BEAT, pixel_bits=plan.buffers["img"].bits,
                buffers={n: [plan.buffers[n].channels, plan.buffers[n].depth,
                             plan.buffers[n].bits] for n in tapped_buffers(plan)})


def locate(chip: program.Chip, images: np.ndarray, image_ids,
           golden: program.Chip | None = None) -> list[str]:
    """For images whose logits differ, the first layer whose output differs, and where.

    Reruns them alone with the chip's feature-map writes recorded (slow: Python sees every
    cycle) and compares each stored map with the golden model's trace (of `golden`, by
    default the same chip; tests give a different one to check the reporting).
    """
    net = chip.mapping.network
    images = chip_model.check_images(images, net.input_shape)
    ids = np.asarray(image_ids, dtype=np.int64)
    build_dir, _ = build_chip(chip)
    plan = plan_chip(chip)
    d = Path(tempfile.mkdtemp(prefix="locate-", dir=build_dir))
    np.savez(d / "job.npz", images=images[:, 0], image_ids=ids,
             meta=json.dumps(job_meta(plan)))
    runner.test(TOPLEVEL, "testbench.chip_tests", build_dir,
                env={"CIM_CHIP_JOB": d / "job.npz", "CIM_CHIP_OUT": d / "out.npz",
                     "CIM_CHIP_TAPS": "1"}, test_dir=d, quiet=True)
    gold = chip_model.run(golden or chip, images, image_ids=ids, trace=True)
    names = [layer.name for layer in net.layers]
    found = []
    with np.load(d / "out.npz", allow_pickle=False) as out:
        for i in range(len(images)):
            where = None
            for lp in plan.layers:
                if lp.dst is None:
                    break
                after = names[names.index(lp.name) + 1]
                key = after if lp.pool > 1 else lp.name
                want = gold.trace[key][i]                       # (C, H, W)
                got = out[f"tap_{lp.dst}"][i].T.reshape(want.shape)
                diff = np.argwhere(got != want)
                if len(diff):
                    c, y, x = diff[0]
                    where = (f"{key} (after {lp.name}) channel {c} at ({y}, {x}): rtl "
                             f"{got[c, y, x]}, golden {want[c, y, x]}")
                    break
            if where is None:
                o = int(np.argmax(out["logits"][i] != gold.logits[i]))
                where = (f"{names[-1]} logit {o}: rtl {out['logits'][i][o]}, golden "
                         f"{gold.logits[i][o]}")
            found.append(where)
    shutil.rmtree(d, ignore_errors=True)
    return found


def _watch(dirs, bar, stop):
    """Advance the progress bar from the shards' progress files."""
    while not stop.wait(0.5):
        done = 0
        for d in dirs:
            try:
                done += int((d / "progress").read_text() or 0)
            except (FileNotFoundError, ValueError):
                pass
        if done > bar.n:
            bar.update(done - bar.n)
