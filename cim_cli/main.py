"""The `cim` command: the parser and the error boundary; the commands live in the
`*_cmds` modules beside this one."""

from __future__ import annotations

import argparse
import sys

from . import chip_cmds, flow_cmds, model_cmds, rtl_cmds


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cim", description="Memristor CIM kit: golden model, "
                                "mapping, RTL flows for the Yao 2020 mCNN.")
    sub = p.add_subparsers(dest="command", required=True)

    for commands in (model_cmds, chip_cmds, flow_cmds, rtl_cmds):
        commands.register(sub)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ValueError as e:  # ConfigError, MnistError, ModelFileError, ... name the problem
        print(f"cim {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
