"""`python -m vitdash audit PATH [--json]`: is it trained? The model verdict, what is at init, and why."""
from __future__ import annotations

import sys

from vitdash.cli.common import add_json_flag, emit, load_or_exit
from vitdash.common.results import Progress
from vitdash.trained.verdict import audit

HELP = "is it trained? verdict (trained/partial/init), what is still at init, and the evidence per tensor"


def add_arguments(parser) -> None:
    parser.add_argument("path", help="checkpoint file or folder (or timm:<name>, hf-hub:<org>/<repo>)")
    parser.add_argument("--all", action="store_true", help="list every tensor in the text summary, not only "
                                                            "those that did not read as trained")
    add_json_flag(parser)


def _progress(p: Progress) -> None:
    sys.stderr.write(f"\r  auditing {p.done}/{p.total} {p.message[:50]:<50}")
    if p.done == p.total:
        sys.stderr.write("\r" + " " * 72 + "\r")
    sys.stderr.flush()


def summary(result: dict, show_all: bool = False) -> str:
    lines = [f"{result['name'] or 'checkpoint'}: {result['verdict'].upper()} "
             f"(confidence {result['confidence']:.2f})", result["summary"], ""]
    lines += [f"  - {e}" for e in result["evidence"]]
    if result["at_init"]:
        shown = result["at_init"][:12]
        more = len(result["at_init"]) - len(shown)
        lines += ["", f"At init ({len(result['at_init'])}): " + ", ".join(shown) + (f", ... (+{more})" if more else "")]
    rows = [t for t in result["tensors"] if show_all or t["verdict"] != "trained"]
    if rows:
        lines += ["", "Tensors" + ("" if show_all else " not read as trained") + ":"]
        width = max(len(t["name"]) for t in rows)
        lines += [f"  {t['name']:<{width}}  {t['verdict']:<8} {t['reason']}" for t in rows]
    counts = ", ".join(f"{v} {k}" for k, v in sorted(result["counts"].items()))
    lines += ["", f"{len(result['tensors'])} tensors ({counts}) in {result['seconds']:.1f} s"]
    return "\n".join(lines)


def run(args) -> int:
    ckpt = load_or_exit(args.path)
    result = audit(ckpt, progress=_progress if sys.stderr.isatty() else None).to_dict()
    emit(result, args, summary(result, args.all))
    return 0
