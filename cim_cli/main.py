"""The `cim` command: the parser and the error boundary; the commands live in the
`*_cmds` modules beside this one."""

from __future__ import annotations

import json
import os
import sys

from . import board_cmds, chip_cmds, flow_cmds, model_cmds, onnx_cmds, rtl_cmds, sweep_cmds
from .common import Parser, UsageError, check_numbers


def build_parser() -> Parser:
    p = Parser(prog="cim", description="Memristor CIM kit: golden model, "
               "mapping, RTL flows for the Yao 2020 mCNN.")
    sub = p.add_subparsers(dest="command", required=True)

    for commands in (model_cmds, chip_cmds, flow_cmds, rtl_cmds, sweep_cmds, board_cmds,
                     onnx_cmds):
        commands.register(sub)
    return p


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    as_json = "--json" in argv
    try:
        args = build_parser().parse_args(argv)
    except UsageError as e:
        return _fail(str(e), as_json)
    try:
        check_numbers(args)
        return args.func(args)
    # ConfigError, MnistError, ModelFileError, ChipStateError, OutputError, ... each names the
    # file or option and the problem; an OSError here is an input the loaders did not expect.
    except ValueError as e:
        return _fail(f"cim {args.command}: error: {e}", as_json)
    except OSError as e:
        where = f"{e.filename}: " if e.filename else ""
        return _fail(f"cim {args.command}: error: {where}{e.strerror or e}", as_json)
    except KeyboardInterrupt:
        return 130
    except Exception as e:
        # A failure no check foresaw is a bug, not a bad input: still one line (and one JSON
        # document), exit status 1; CIM_DEBUG=1 shows the traceback for a report.
        if os.environ.get("CIM_DEBUG"):
            raise
        return _fail(f"cim {args.command}: internal error: {type(e).__name__}: {e} (rerun "
                     f"with CIM_DEBUG=1 for the traceback)", as_json, status=1)


def _fail(message: str, as_json: bool, status: int = 2) -> int:
    """One line on stderr; with --json also one JSON document on stdout."""
    print(message, file=sys.stderr)
    if as_json:
        print(json.dumps({"error": message}))
    return status


if __name__ == "__main__":
    sys.exit(main())
