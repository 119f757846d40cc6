"""`python -m vitdash <command>`: every subcommand is a module of this package (HELP, add_arguments, run).

Only the chosen command's module is imported (it brings torch and timm with it); the list of commands and
their one-line help are read from the modules' source, so `python -m vitdash --help` answers at once.
"""
from __future__ import annotations

import argparse
import ast
import importlib
import pkgutil
import sys
from pathlib import Path

from vitdash.errors import VitdashError

_NOT_COMMANDS = {"common"}


def _commands() -> dict[str, str]:
    """command name -> its HELP line, without importing the command modules."""
    found = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.name in _NOT_COMMANDS:
            continue
        tree = ast.parse((Path(__path__[0]) / f"{info.name}.py").read_text())
        found[info.name] = next(n.value.value for n in tree.body if isinstance(n, ast.Assign)
                                and any(getattr(t, "id", None) == "HELP" for t in n.targets))
    return found


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; `command`'s own arguments are added (its module imported) only when it is the one run."""
    parser = argparse.ArgumentParser(prog="python -m vitdash", description="Audit Vision Transformer checkpoints.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_text in _commands().items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            module = importlib.import_module(f"{__name__}.{name}")
            module.add_arguments(p)
            p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(command).parse_args(argv)
    try:
        return args._run(args)
    except VitdashError as e:
        print(f"vitdash: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("vitdash: interrupted", file=sys.stderr)
        return 130
