"""The verification layer's public API for the chip: running images through the chip's RTL on
Verilator (cocotb, testbench/chip_tests.py) with every logit compared, by the testbench's
scoreboard, with the golden integer model of the same chip state; locating the first layer
that differs."""

from __future__ import annotations

import re
import shutil
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from amaranth import Const, Shape
from tqdm import tqdm

import cim_spec
import hdl
from cim_spec import program
from golden import chip_model
from hdl import build
from hdl.chip import (
    feature_buffer,
    gain_layout,
    has_features,
    program_layout,
    result_layout,
    tapped_buffers,
)
from hdl.chip_engine import EngineRule, engine_requests, label_bits
from hdl.chip_plan import plan_chip
from hdl.harness import LOADER_SOURCE, PIXELS_PER_BEAT, SimHarness
from hdl.params import CrossbarForm

from . import chip_batch, chip_job, runner
from .chip_job import CellWrite, GainWrite
from .scoreboard import Mismatch

__all__ = ["CellWrite", "GainWrite", "Mismatch", "SimResult", "build_chip", "locate", "simulate"]

TOPLEVEL = "harness"
# Verilator's line (with branch) and toggle coverage. Not `--coverage`: its expression
# coverage stops Verilator 5.48 with an internal error on the memories' write statements.
COVERAGE_ARGS = ("--coverage-line", "--coverage-toggle")


def chip_digest(chip: program.Chip, form: CrossbarForm) -> str:
    """Everything the generated Verilog depends on: the chip, the form and the HDL code."""
    d = chip.digital
    return build.digest(chip.config.to_dict(), chip.mapping.network.to_dict(),
                        chip.conductance.tobytes(),
                        sorted(d.adc_gain.items()), sorted(d.requant_mult.items()),
                        sorted(d.requant_shift.items()), sorted(d.bias.items()), d.read_noise,
                        d.noise_seed, form.value,
                        runner.package_digest(hdl, cim_spec))


def generate(chip: program.Chip, out_dir: Path, form: CrossbarForm = CrossbarForm.VERILOG,
             asserts: bool = True, engine: EngineRule | None = None) -> list[Path]:
    """Write the chip's simulation top (harness + chip, with the update engine of `engine`),
    with the RTL's assertions unless told otherwise (benchmarks), and return its Verilog
    sources."""
    harness = SimHarness(plan_chip(chip), form, engine=engine)
    return [*build.generate(harness, TOPLEVEL, out_dir, form, asserts=asserts), LOADER_SOURCE]


def build_chip(chip: program.Chip, build_dir: Path | None = None,
               waves: bool = False, asserts: bool = True, simulator: str = "verilator",
               coverage: bool = False, cxx_opt: str | None = None,
               engine: EngineRule | None = None,
               batch: bool = False) -> tuple[Path, float]:
    """Generate and compile (cached by content); returns the build directory and seconds.
    `asserts=False` (benchmarks only) leaves the RTL's assertions out. `coverage`:
    Verilator's line and toggle coverage (COVERAGE_ARGS; a separate build). `cxx_opt`
    (Verilator only): the model's C++ optimization (runner.build; a separate build).
    `engine`: the chip with its update engine (a separate build per rule). `batch`: the
    free-running top of testbench/chip_batch.py instead of the cocotb build (Verilator)."""
    if simulator != "verilator":
        cxx_opt = None
    eng = "" if engine is None else \
        f"_engine{engine.threshold}m{engine.margin}a{engine.acc_bits}"
    tail = "".join(t for t, on in (("_waves", waves), ("_noassert", not asserts),
                                   ("_cov", coverage), (eng, bool(eng)), ("_batch", batch),
                                   (f"_cxx{(cxx_opt or '').lstrip('-')}", cxx_opt is not None),
                                   (f"_{simulator}", simulator != "verilator")) if on)
    build_dir = Path(build_dir or runner.BUILD_ROOT /
                     f"chip_{chip_digest(chip, CrossbarForm.VERILOG)}{tail}")
    t0 = time.perf_counter()
    stamp = build_dir / "generated.ok"
    if stamp.exists():   # the directory name is the digest of everything that went in
        sources = [build_dir / f"{TOPLEVEL}_gen.v", *build.macro_sources(CrossbarForm.VERILOG),
                   LOADER_SOURCE]
    else:
        sources = generate(chip, build_dir, asserts=asserts, engine=engine)
        stamp.write_text("")
    if batch:
        chip_batch.build(sources, build_dir, beats_per_image(chip), asserts=asserts)
        return build_dir, time.perf_counter() - t0
    if simulator == "icarus":
        sources = [icarus_copy(sources[0]), *sources[1:]]
    runner.build(sources, TOPLEVEL, build_dir, waves=waves, quiet=True, asserts=asserts,
                 simulator=simulator, extra_args=COVERAGE_ARGS if coverage else (),
                 cxx_opt=cxx_opt)
    return build_dir, time.perf_counter() - t0


def beats_per_image(chip: program.Chip) -> int:
    """The harness's load beats per image."""
    img = plan_chip(chip).buffers["img"]
    return -(-img.depth * img.channels // PIXELS_PER_BEAT)


def icarus_copy(source: Path) -> Path:
    """The generated Verilog for Icarus: every combinational process evaluated once after
    time 0.

    Icarus runs an `always @*` block only when one of its inputs changes. yosys makes each
    block read a register initialized to 0 so that it runs at time 0, but on Icarus the
    initializer takes effect before the blocks wait, so nothing fires: logic whose inputs are
    constants or registers that keep their initial value stays X, and X spreads through the
    reset-free harness. (`always_comb` instead loops forever at time 0: Icarus makes a block
    sensitive to all bits of a vector it part-selects, including its own outputs.) Here the
    trigger register changes at 1 ns, before the first clock edge (the clock starts low)."""
    out = Path(source).with_name(Path(source).stem + "_icarus.v")
    text = re.sub(r"(reg (\\\S+dump_module\$\d+ ) = 0;)", r"\1 initial #1 \2 = 1;",
                  Path(source).read_text())
    build.write_if_changed(out, text)
    return out


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
    traffic: dict = field(default_factory=dict)   # what the monitors saw (random traffic)
    # (images, n_in) the last weight layer's input vectors the chip streamed out (its
    # `features` port), in the golden model's order
    features: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.int64))
    golden_seconds: float = 0.0      # the golden model's run (overlapping the build)

    @property
    def bitexact(self) -> int:
        return self.images - len(self.mismatches)

    @property
    def sim_images_per_s(self) -> float:
        return self.images / self.sim_seconds if self.sim_seconds else 0.0


def host_pixels(chip: program.Chip, images: np.ndarray) -> np.ndarray:
    """What the host sends the chip's pixel port: the 8-bit pixels at the DAC's width
    (docs/datapath.md section 0), (N, H, W) for one channel, else (N, C, H, W), which the
    loader flattens into the order the image input takes (plane by plane,
    hdl/image_in.py)."""
    x = images[:, 0] if images.shape[1] == 1 else images
    return program.dac_inputs(x, chip.config.input_bits)


def check_writes(chip: program.Chip, writes, n_images: int) -> list[CellWrite | GainWrite]:
    """The cell and gain writes in the order they happen (by `before`, then as given). A
    gain must fit the chip's gain register (hdl/chip_plan.py: one bit above the largest
    programmed gain)."""
    cfg = chip.config
    limits = dict(before=n_images, pe=cfg.n_pe - 1, row=cfg.array_rows - 1,
                  col=cfg.array_cols - 1, code=cfg.code_max)
    gain_top = gain_register_max(chip)
    layers = [layer.name for layer in chip.mapping.network.weight_layers()]
    out = []
    for i, w in enumerate(writes or ()):
        if isinstance(w, GainWrite):
            if w.layer not in layers:
                raise ValueError(f"gain write {i}: layer {w.layer!r} is not one of {layers}")
            if not 1 <= w.gain <= gain_top:
                raise ValueError(f"gain write {i}: gain {w.gain} is outside 1..{gain_top} "
                                 f"(the chip's gain register)")
            if not 0 <= w.before <= n_images:
                raise ValueError(f"gain write {i}: before {w.before} is outside 0..{n_images}")
            out.append(w)
            continue
        if not isinstance(w, CellWrite):
            raise TypeError(f"write {i}: a CellWrite or GainWrite, got {type(w).__name__}")
        for name, top in limits.items():
            v = getattr(w, name)
            if not 0 <= v <= top:
                raise ValueError(f"cell write {i}: {name} {v} is outside 0..{top}")
        out.append(w)
    return sorted(out, key=lambda w: w.before)


def gain_register_max(chip: program.Chip) -> int:
    """The largest gain the chip's gain registers hold (hdl/chip_plan.py: one bit above the
    largest programmed gain)."""
    return 2 ** plan_chip(chip).pes[0].params.gain_bits - 1


def programmed(chip: program.Chip, writes, n_images: int):
    """(first image, end, chip as the writes before `first` left it) for each run of images
    between writes: a gain write replaces the layer's ADC gain in the digital parameters."""
    g = chip.conductance.copy()
    gains = dict(chip.digital.adc_gain)
    start = 0
    for before in [*sorted({w.before for w in writes}), n_images]:
        if before > start:
            yield start, before, program.Chip(chip.mapping, g.copy(),
                                              replace(chip.digital, adc_gain=dict(gains)))
            start = before
        for w in writes:
            if w.before == before:
                if isinstance(w, GainWrite):
                    gains[w.layer] = w.gain
                else:
                    g[w.pe, w.row, w.col] = w.code


def golden_logits(chip: program.Chip, images: np.ndarray, ids: np.ndarray,
                  writes: list[CellWrite | GainWrite] = ()) -> np.ndarray:
    """The golden model's logits, the chip re-programmed by `writes` between images."""
    if not writes:
        return chip_model.run(chip, images, image_ids=ids).logits
    return np.concatenate([chip_model.run(now, images[lo:hi], image_ids=ids[lo:hi]).logits
                           for lo, hi, now in programmed(chip, writes, len(images))])


def simulate(chip: program.Chip, images: np.ndarray, image_ids=None, *, shards: int = 1,
             waves: bool = False, progress: bool = True,
             golden: program.Chip | None = None, pauses: int | None = None,
             writes=None, asserts: bool = True, simulator: str = "verilator",
             coverage: Path | None = None, cxx_opt: str | None = None,
             prebuilt: tuple[Path, float] | None = None, batch: bool = False) -> SimResult:
    """Run `images` through the RTL (with its assertions; `asserts=False` for benchmarks);
    the testbench's scoreboard compares every logit with the golden model of `golden` (by
    default the same chip). `prebuilt` (build directory, seconds) runs another compiled
    harness of the same chip instead of building the RTL's (the gate-level netlist's:
    testbench.gate_level.build_chip).

    `pauses` (a seed) turns on random traffic: idle cycles between load beats, gaps between
    images, back-pressure bursts on the result port, monitors on every handshake. `writes`
    (CellWrite) re-program cells through the chip's programming port between images, and
    `GainWrite`s set a layer's ADC gain register through its gain port; the golden chip is
    re-programmed the same way. `simulator`: "verilator" or "icarus".
    `coverage` (a directory, Verilator only): a coverage build; each shard's Verilator
    coverage data is copied there (testbench/coverage.py merges them).
    `cxx_opt` (Verilator only, e.g. "-O0"): the C++ optimization of the model (runner.build);
    for short runs whose build dominates (benchmarks/random_configs.py).
    `batch`: on the easy path (no random traffic, no writes, Verilator, no waveforms,
    coverage or `cxx_opt`), run the harness free without cocotb (testbench/chip_batch.py, a
    build of its own; what `cim sim` does); otherwise ignored.
    """
    net = chip.mapping.network
    images = chip_model.check_images(images, net.input_shape)
    n = len(images)
    ids = np.arange(n, dtype=np.int64) if image_ids is None else np.asarray(image_ids, np.int64)
    writes = check_writes(chip, writes, n)
    batch = batch and simulator == "verilator" and pauses is None and not writes \
        and coverage is None and not waves and prebuilt is None and cxx_opt is None
    # The golden model runs while the simulator compiles: the build is mostly the C++
    # compiler in subprocesses (numpy and the compiler then share the cores), so a cold
    # regression pays for the longer of the two instead of their sum.
    with ThreadPoolExecutor(1) as pool:
        gold_job = pool.submit(_timed, golden_logits, golden or chip, images, ids, writes)
        build_dir, build_s = prebuilt or build_chip(chip, waves=waves, asserts=asserts,
                                                    simulator=simulator,
                                                    coverage=coverage is not None,
                                                    cxx_opt=cxx_opt, batch=batch)
        gold, gold_s = gold_job.result()
    plan = plan_chip(chip)
    meta = job_meta(plan, chip, pauses)
    if coverage is not None:
        Path(coverage).mkdir(parents=True, exist_ok=True)
    cells = [w for w in writes if isinstance(w, CellWrite)]
    gains = [w for w in writes if isinstance(w, GainWrite)]
    payloads = np.array([prog_payload(plan, w) for w in cells], dtype=np.int64)
    befores = np.array([w.before for w in cells], dtype=np.int64)
    g_payloads = np.array([gain_payload(plan, w) for w in gains], dtype=np.int64)
    g_befores = np.array([w.before for w in gains], dtype=np.int64)
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
        # A shard starts from the chip as the writes before its first image left it.
        mine, g_mine = befores < hi, g_befores < hi
        chip_job.write_job(d / "job.npz", chip_job.Job(
            host_pixels(chip, images[lo:hi]), ids[lo:hi], gold[lo:hi],
            dict(meta, shard_start=int(lo)),
            np.maximum(befores[mine] - lo, 0), payloads[mine],
            np.maximum(g_befores[g_mine] - lo, 0), g_payloads[g_mine]))
        dirs.append(d)

    def one(d):
        if batch:
            job = chip_job.read_job(d / "job.npz")
            chip_job.write_answer(d / "out.npz", chip_batch.run(
                build_dir / chip_batch.TOP, d, job.images, job.image_ids, job.expected,
                job.meta))
            return
        runner.test(TOPLEVEL, "testbench.chip_tests", build_dir,
                    env={"CIM_CHIP_JOB": d / "job.npz", "CIM_CHIP_OUT": d / "out.npz"},
                    waves=waves, test_dir=d, quiet=True, simulator=simulator)
        if coverage is not None:     # Verilator writes coverage.dat where the test ran
            shutil.copy(d / "coverage.dat", Path(coverage) / f"{run_dir.name}_{d.name}.dat")

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

    outs = [chip_job.read_answer(d / "out.npz") for d in dirs]
    if not waves:
        shutil.rmtree(run_dir, ignore_errors=True)
    logits = np.concatenate([o.logits for o in outs])
    labels = np.concatenate([o.labels for o in outs])
    bad = np.concatenate([o.mismatches + lo for o, lo in zip(outs, bounds, strict=False)])
    mismatches = [Mismatch(int(i), int(ids[i]), logits[i].tolist(), gold[i].tolist())
                  for i in bad]
    spacing = [np.diff(o.done_at) for o in outs if len(o.done_at) > 1]
    per_image = float(np.mean(np.concatenate(spacing))) if spacing else float(
        outs[0].meta["cycles_image"])
    last = outs[-1].meta
    names = [lp.name for lp in plan.layers]
    traffic = {k: sum(o.meta[k] for o in outs) for k in outs[0].meta
               if k.startswith(("load_", "result_", "prog_", "gain_", "gap_"))}
    return SimResult(n, logits, labels, gold, mismatches, int(last["cycles_image"]),
                     dict(zip(names, last["cycles_layer"], strict=True)), per_image, sim_s,
                     build_s, build_dir, run_dir if waves else None, traffic,
                     np.concatenate([o.features for o in outs]), gold_s)


def job_meta(plan, chip: program.Chip | None = None, pauses: int | None = None,
             engine: EngineRule | None = None) -> dict:
    """The formats the testbench needs (widths, buffers, the engine's label and request
    fields) and the traffic options."""
    hint = 0
    if chip is not None:    # the read-slot bound of an image: the scale of random gaps
        hint = sum(chip.mapping.slot_bound(lp.name) for lp in plan.layers) * \
            chip.config.pulse_cycles
    fb = feature_buffer(plan)
    return dict(n_out=plan.layers[-1].n_out, acc_bits=plan.acc_bits, n_layers=len(plan.layers),
                label_bits=result_layout(plan)["label"].shape.width,
                features=[fb.channels, fb.depth if has_features(plan) else 0, fb.bits],
                pixels_per_beat=PIXELS_PER_BEAT, pixel_bits=plan.buffers["img"].bits,
                buffers={n: [plan.buffers[n].channels, plan.buffers[n].depth,
                             plan.buffers[n].bits] for n in tapped_buffers(plan)},
                pauses=None if pauses is None else int(pauses),
                cycles_hint=int(hint), engine=None if engine is None else engine_meta(plan))


def engine_meta(plan) -> dict:
    """The label's width and each request field's [offset, width] (hdl.chip_engine)."""
    req = engine_requests(plan)
    return dict(label_bits=label_bits(plan),
                requests={f: [req[f].offset, Shape.cast(req[f].shape).width]
                          for f in ("out", "inp", "down")})


def prog_payload(plan, w: CellWrite) -> int:
    """A cell write as the programming port's payload bits."""
    return Const.cast(program_layout(plan).const(
        dict(pe=w.pe, row=w.row, col=w.col, code=w.code))).value


def gain_payload(plan, w: GainWrite) -> int:
    """A gain write as the gain port's payload bits."""
    index = next(lp.index for lp in plan.layers if lp.name == w.layer)
    return Const.cast(gain_layout(plan).const(dict(layer=index, gain=w.gain))).value


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
    gold = chip_model.run(golden or chip, images, image_ids=ids, trace=True)
    chip_job.write_job(d / "job.npz", chip_job.Job(host_pixels(chip, images), ids, gold.logits,
                                                   job_meta(plan, chip)))
    runner.test(TOPLEVEL, "testbench.chip_tests", build_dir,
                env={"CIM_CHIP_JOB": d / "job.npz", "CIM_CHIP_OUT": d / "out.npz",
                     "CIM_CHIP_TAPS": "1"}, test_dir=d, quiet=True)
    names = [layer.name for layer in net.layers]
    found = []
    out = chip_job.read_answer(d / "out.npz")
    shutil.rmtree(d, ignore_errors=True)
    for i in range(len(images)):
        where = None
        for lp in plan.schedule:
            if lp.dst is None:
                break
            key = lp.trace                                  # the layer the buffer holds
            buf = plan.buffers[lp.dst]
            # (C, H, W); a hidden dense layer's (C,) is its 1 x 1 map
            want = gold.trace[key][i].reshape(buf.channels, buf.height, buf.width)
            got = out.taps[f"tap_{lp.dst}"][i].T.reshape(want.shape)
            if buf.signed:                                  # two's complement channels
                got = np.where(got >> (buf.bits - 1), got - (1 << buf.bits), got)
            diff = np.argwhere(got != want)
            if len(diff):
                c, y, x = diff[0]
                where = (f"{key} (after {lp.name}) channel {c} at ({y}, {x}): rtl "
                         f"{got[c, y, x]}, golden {want[c, y, x]}")
                break
        if where is None:
            o = int(np.argmax(out.logits[i] != gold.logits[i]))
            where = (f"{names[-1]} logit {o}: rtl {out.logits[i][o]}, golden "
                     f"{gold.logits[i][o]}")
        found.append(where)
    return found


def _timed(fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t0


def _watch(dirs, bar, stop):
    """Advance the progress bar from the shards' progress files."""
    while not stop.wait(0.5):
        done = 0
        for d in dirs:
            try:
                if (d / "results.hex").exists():    # a batch run: a line per result
                    done += (d / "results.hex").read_bytes().count(b"\n")
                else:
                    done += int((d / "progress").read_text() or 0)
            except (FileNotFoundError, ValueError):
                pass
        if done > bar.n:
            bar.update(done - bar.n)
