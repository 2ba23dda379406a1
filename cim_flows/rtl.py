"""The chip's RTL as a flow: which chip, its Verilog export with conductance files and a
manifest, and the figures of a simulation run against the golden model."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np

from cim_spec import files
from cim_spec.config import SystemConfig
from cim_spec.noise import pe_seed
from cim_spec.program import Chip
from hdl import build
from hdl.chip import CimChip
from hdl.chip_plan import plan_chip
from hdl.harness import LOADER_SOURCE, SimHarness
from hdl.params import CrossbarForm

TOPS = ("chip", "harness")
FORMS = tuple(f.value for f in CrossbarForm)     # the crossbar forms' names


def chip_for(chip_path: Path | None, cfg: SystemConfig | None) -> tuple[Chip, str]:
    """The chip of a chip-state file, or the ideal chip of the bundled weights for `cfg`;
    and a description of where it came from."""
    if chip_path is not None:
        from cim_spec import chipstate
        return chipstate.load(chip_path).chip, str(chip_path)
    from cim_flows import stages
    mapping, prog = stages.ideal_program(cfg or SystemConfig(), stages.load_model())
    return prog.chip(mapping), "ideal chip (bundled weights, no device errors)"


def _sources(top: str, form: str) -> list[Path]:
    """The hand-written Verilog that goes with a top of this crossbar form (by name)."""
    return build.macro_sources(CrossbarForm(form)) + ([LOADER_SOURCE] if top == "harness"
                                                      else [])


def verilog_files(chip: Chip, top: str, form: str) -> list[str]:
    """The names `export_verilog` writes, the manifest last."""
    return [f"{top}_gen.v", *(p.name for p in _sources(top, form)),
            *(f"pe{pe}_conductance.hex" for pe in range(chip.config.n_pe)), "manifest.json"]


def check_export(chip: Chip, out: Path, top: str, form: str, force: bool = False,
                 inputs=()) -> None:
    """Before any work: `out` is a directory (or new) and none of the files to write exists
    (unless `force`), is an input or is of another kind."""
    files.check_output(out, {files.DIRECTORY}, force)
    for name in verilog_files(chip, top, form):
        files.check_output(out / name, {files.JSON if name.endswith(".json") else files.OTHER},
                           force, inputs)


def export_verilog(chip: Chip, out: Path, top: str = "chip", form: str = "verilog",
                   source: str = "") -> dict:
    """Write the chip's Verilog (deterministic), each PE's conductance codes as hex and a
    manifest with the configuration, mapping and digital parameters; returns a summary. Each
    file is written atomically, the manifest (with every file's digest) last."""
    if top not in TOPS or form not in FORMS:
        raise ValueError(f"top must be one of {TOPS} and form one of {FORMS}, got {top!r}, "
                         f"{form!r}")
    out = Path(out)
    t0 = time.perf_counter()
    plan = plan_chip(chip)
    xform = CrossbarForm(form)
    design = SimHarness(plan, xform) if top == "harness" else CimChip(plan, xform)
    texts = {f"{top}_gen.v": build.verilog_text(design, top)}
    for s in _sources(top, form):
        texts[s.name] = s.read_text()
    cfg = chip.config
    for pe in range(cfg.n_pe):
        texts[f"pe{pe}_conductance.hex"] = "".join(f"{int(v):02x}\n"
                                                   for v in chip.conductance[pe].ravel())
    hashes = {}
    for name, text in texts.items():
        files.write_text(out / name, text)
        hashes[name] = hashlib.sha256(text.encode()).hexdigest()
    d = chip.digital
    manifest = {
        "top": top, "form": form, "chip_state": source,
        "files": hashes,
        "conductance_init": "pe<N>_conductance.hex: one code per line, row-major "
                            "(row = source line, column = bit line); the same codes are "
                            "elaborated into each crossbar instance's INIT parameter",
        "config": cfg.to_dict(), "mapping": chip.mapping.to_dict(),
        "digital": {"adc_gain": d.adc_gain, "requant_mult": d.requant_mult,
                    "requant_shift": d.requant_shift, "read_noise": d.read_noise,
                    "noise_seed": d.noise_seed,
                    "pe_seeds": [pe_seed(d.noise_seed, p) for p in range(cfg.n_pe)]},
    }
    files.write_text(out / "manifest.json", json.dumps(manifest, indent=1, sort_keys=True))
    return {"out": str(out), "top": top, "files": sorted(hashes) + ["manifest.json"],
            "seconds": round(time.perf_counter() - t0, 2)}


def summarize(chip, res, labels) -> dict:
    """The figures of an RTL run, as `cim sim --json` prints them."""
    cfg = chip.config
    bounds = {n: chip.mapping.slot_bound(n) * cfg.pulse_cycles for n in res.cycles_layer}
    return {
        "network": chip.mapping.network.name, "images": res.images, "bitexact": res.bitexact,
        "accuracy": float((res.labels_rtl == labels).mean()),
        "golden_accuracy": float((np.argmax(res.golden_logits, axis=1) == labels).mean()),
        "cycles_per_image": res.cycles_per_image,
        "cycles_image_latency": res.cycles_image, "cycles_per_layer": res.cycles_layer,
        "cycles_bound_per_layer": bounds,
        "sim_images_per_s": res.sim_images_per_s, "sim_seconds": round(res.sim_seconds, 2),
        "build_seconds": round(res.build_seconds, 2),
        "golden_seconds": round(res.golden_seconds, 2),
        "replication": cfg.replication, "clock_mhz": cfg.clock_mhz,
        "hw_images_per_s": cfg.clock_mhz * 1e6 / res.cycles_per_image,
    }


def rtl_summary(chip, images, labels, ids, shards: int = 2, progress: bool = True) -> dict:
    from testbench import chip_sim
    res = chip_sim.simulate(chip, images, ids, shards=shards, progress=progress, batch=True)
    return summarize(chip, res, labels)
