"""`cim board run`: images through the chip board over its serial link (docs/board.md), on a
real ULX3S (--port) or on the simulated board through a pseudo-terminal (--sim)."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

from cim_spec.config import ConfigError

from .common import add_force, emit, note, refuse_with, test_images


def cmd_board_run(args) -> int:
    from cim_flows import board_link, rtl
    from cim_spec import files, link
    if (args.port is None) == (not args.sim):
        raise ConfigError("cim board run needs exactly one of --port PATH and --sim")
    if args.chip is not None:
        refuse_with(args, "with --chip: the chip state carries its configuration",
                    {"--config": args.config is not None,
                     "--replication": args.replication is not None})
    if args.timeout <= 0 or args.window < 1:
        raise ConfigError("--timeout must be positive and --window at least 1")
    name = "board_run_sim.json" if args.sim else "board_run.json"
    if args.out is not None:      # refused before the work, not after
        files.check_output(args.out / name, {files.JSON}, args.force)
    chip, source = rtl.chip_for(args.chip, None if args.chip else _config(args))
    images, labels, ids = test_images(args)
    if args.sim:
        from testbench import board_sim
        note("building the simulated board (Verilator; cached after the first run) ...")
        where = board_sim.simulated_board(chip)
        timeout = max(args.timeout, 60.0)     # simulated time runs far slower
    else:
        where = nullcontext(str(args.port))
        timeout = args.timeout
    with where as path:
        port = board_link.Port(path, None if args.sim else args.baud)
        try:
            session = board_link.Session(port)
            before = session.status(timeout)
            gains = 0
            if args.write_gains:
                names = [layer.name for layer in chip.mapping.network.weight_layers()]
                gains = session.set_gains([(i, chip.digital.adc_gain[n])
                                           for i, n in enumerate(names)], timeout)
            run = board_link.run_images(session, chip, images, labels, ids, timeout=timeout,
                                        window=args.window, features=args.features)
            after = session.status(timeout)
        finally:
            port.close()
    d = run.to_dict()
    n_pixels = int(images[0].size)
    feature_bytes = (link.features_length(*board_link.feature_shape(chip))
                     if args.features else 0)
    d.update(port="sim" if args.sim else str(args.port), chip=source,
             features=args.features, gains_written=gains,
             status_before=before.__dict__, status_after=after.__dict__,
             rejected_by_board=after.rejected - before.rejected,
             link_bound_images_per_s=round(board_link.link_images_per_s(
                 args.baud, n_pixels, chip.mapping.layers[-1].n_out,
                 len(chip.mapping.layers), feature_bytes), 1))
    what = "logits and features" if args.features else "logits"
    text = (f"board ({d['port']}): {run.images} images, {run.bitexact} bit-exact ({what}) "
            f"against the golden model, labels agree {run.label_agreement}/{run.images}, accuracy "
            f"{run.correct}/{run.images}\n"
            f"  {run.images_per_s:.2f} images/s over the link ({run.seconds:.1f} s); "
            f"{args.baud:,} baud allows {d['link_bound_images_per_s']:,} images/s\n"
            f"  link: {run.lost} lost/late, {run.resent} resent, {run.crc_errors} replies with "
            f"a bad CRC, board rejected {d['rejected_by_board']} frames {run.naks or ''}")
    if run.failed:
        text += f"\n  FAILED (no result after retries): ids {run.failed[:10]}"
    if gains:
        text += f"\n  wrote the chip state's {gains} ADC gains first (GAIN frames)"
    for mm in run.mismatches[:3]:
        text += (f"\n  MISMATCH image {mm['image_id']}: "
                 + (f"board {mm['board']} golden {mm['golden']}" if "board" in mm
                    else "the features differ"))
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        files.write_json(args.out / name, d)
        text += f"\nwrote {args.out / name}"
    emit(args, d, text)
    if run.mismatches:
        return 1
    if run.failed:
        raise link.LinkError(f"{len(run.failed)} images got no result")
    return 0




def _config(args):
    from .common import config_from
    return config_from(args)


def register(sub) -> None:
    sp = sub.add_parser("board", help="the chip on a ULX3S board over its serial link")
    bsub = sp.add_subparsers(dest="board_command", required=True)
    rp = bsub.add_parser("run", help="stream test images to the board, compare every logit "
                         "with the golden model")
    rp.add_argument("--port", type=Path, help="serial device of the board (e.g. /dev/ttyUSB0)")
    rp.add_argument("--sim", action="store_true",
                    help="the board top on Verilator behind a pseudo-terminal instead")
    rp.add_argument("--baud", type=int, default=2_000_000, help="serial rate (default 2 Mbaud, "
                    "the bitstream's)")
    rp.add_argument("--chip", type=Path, help="chip-state file the board holds (default: the "
                    "ideal chip of the bundled weights)")
    rp.add_argument("--config", type=Path, help="system configuration TOML (without --chip)")
    rp.add_argument("--replication", type=int, help="conv replica groups (without --chip)")
    rp.add_argument("--data", type=Path, help="MNIST (default: the bundled subset)")
    rp.add_argument("--images", type=int, default=20, help="how many test images")
    rp.add_argument("--start", type=int, default=0, help="index of the first test image")
    rp.add_argument("--timeout", type=float, default=2.0,
                    help="seconds to wait for an image's result before sending it again")
    rp.add_argument("--window", type=int, default=2, help="images in flight")
    rp.add_argument("--features", action="store_true",
                    help="ask for each image's features too (IMAGE_FEATURES frames: the FC "
                    "layer's inputs) and compare them with the golden model")
    rp.add_argument("--write-gains", action="store_true",
                    help="first write the chip state's ADC gains into the board's gain "
                    "registers (GAIN frames), e.g. a drift-compensated state (cim compensate) "
                    "on a bitstream built with other gains")
    rp.add_argument("--out", type=Path, help="run directory for board_run[_sim].json "
                    "(cim report shows it)")
    add_force(rp)
    rp.add_argument("--json", action="store_true", help="print one JSON object")
    rp.set_defaults(func=cmd_board_run)
