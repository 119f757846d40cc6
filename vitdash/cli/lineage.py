"""`python -m vitdash lineage PATH [--library DIR ...] [--json]`: what was it made from?"""
from __future__ import annotations

from vitdash.cli.common import add_json_flag, emit, load_or_exit, stage_printer
from vitdash.load.library import list_library
from vitdash.population.lineage import Lineage, library_in, lineage

HELP = "what was it made from? its relatives in the library (identical, derived from, sibling) from the weights alone"


def add_arguments(parser) -> None:
    parser.add_argument("path", help="checkpoint file or folder, timm:<name>, or hf-hub:<repo>")
    parser.add_argument("--library", nargs="+", metavar="DIR",
                        help="search only these folders (default: the configured library: model folders, saved "
                             "uploads, the Hugging Face and torch hub caches, the demo pair)")
    add_json_flag(parser)


def _summary(lin: Lineage) -> str:
    lines = [lin.summary()]
    for r in lin.relations:
        score = "" if r.score is None else f"z {r.score:.1f}"
        lines.append(f"  {r.relation:<13} {score:>9}  {r.name}: {r.summary}")
    lines += [f"claim: {c.message}" for c in lin.claims] or ["claims: none in the file's metadata"]
    lines += [f"skipped {s['name']}: {s['reason']}" for s in lin.skipped]
    return "\n".join(lines)


def run(args) -> int:
    ckpt = load_or_exit(args.path)
    entries = library_in(args.library) if args.library else list_library()
    lin = lineage(ckpt, entries, progress=stage_printer())
    emit(lin.to_dict(), args, _summary(lin))
    return 0
