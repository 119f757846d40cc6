"""`python -m vitdash <command>`: every subcommand is a module of this package (NAME, HELP, add_arguments, run)."""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

_NOT_COMMANDS = {"common"}


def _commands():
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.name not in _NOT_COMMANDS:
            yield importlib.import_module(f"{__name__}.{info.name}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m vitdash", description="Audit Vision Transformer checkpoints.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in _commands():
        p = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    from vitdash.errors import VitdashError

    args = build_parser().parse_args(argv)
    try:
        return args._run(args)
    except VitdashError as e:
        print(f"vitdash: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("vitdash: interrupted", file=sys.stderr)
        return 130
