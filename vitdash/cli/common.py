"""Helpers every subcommand shares: loading with a clean refusal, and printing results."""
from __future__ import annotations

import json
import sys
from typing import Any

from vitdash.common.results import Progress, ProgressFn
from vitdash.load.sources import load


def add_json_flag(parser) -> None:
    parser.add_argument("--json", action="store_true", help="print the full result as JSON")


def emit(result: dict[str, Any], args, summary: str | None = None) -> None:
    """JSON with --json (the same dict the page and report use), else a short human summary."""
    if getattr(args, "json", False):
        json.dump(result, sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
    else:
        print(summary if summary is not None else json.dumps(result, indent=2, default=str))


def load_or_exit(path: str):
    """Load a checkpoint; VitdashError propagates to main(), which prints it and exits 2."""

    return load(path)


def stage_printer(suffix: str = "") -> ProgressFn:
    """Progress as one stderr line per stage (an epoch, a report step), not per step inside it."""
    last = [None]

    def show(p: Progress) -> None:
        if p.stage != last[0]:
            last[0] = p.stage
            print(f"vitdash: {p.message}{suffix}", file=sys.stderr)
    return show
