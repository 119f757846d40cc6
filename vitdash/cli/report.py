"""`python -m vitdash report PATH -o report.html`: every analysis that applies, as offline HTML plus JSON."""
from __future__ import annotations

import sys

from vitdash.cli.common import load_or_exit, stage_printer
from vitdash.history import AuditHistory
from vitdash.load.library import list_library
from vitdash.population.lineage import library_in
from vitdash.report import generate

HELP = "write a self-contained HTML report (figures embedded, opens offline) and the same results as JSON"


def add_arguments(parser) -> None:
    parser.add_argument("path", help="checkpoint file or folder, timm:<name>, or hf-hub:<repo>")
    parser.add_argument("-o", "--output", default="report.html", help="HTML file to write (default: report.html)")
    parser.add_argument("--json-output", metavar="PATH", help="JSON file to write (default: beside the HTML, .json)")
    parser.add_argument("--data", help="labeled images for the accuracy check and the attention images: a folder, "
                                       "or 'digits' (scikit-learn's, built in)")
    parser.add_argument("--limit", type=int, help="score at most this many images (a reproducible random subset)")
    parser.add_argument("--attention-images", type=int, default=3, metavar="N",
                        help="attention maps for the first N images (default 3; 0 leaves attention out)")
    parser.add_argument("--history", action="store_true",
                        help="add earlier audits of the same file from the audit history ($VITDASH_HISTORY_DB)")
    parser.add_argument("--lineage", action="store_true",
                        help="add what it was made from: its relatives in the configured library")
    parser.add_argument("--library", nargs="+", metavar="DIR",
                        help="add what it was made from, searching only these folders")


def run(args) -> int:
    ckpt = load_or_exit(args.path)
    history = AuditHistory() if args.history else None
    library = library_in(args.library) if args.library else (list_library() if args.lineage else None)
    report = generate(ckpt, data=args.data, limit=args.limit, attention_images=args.attention_images,
                      history=history, progress=stage_printer("..."), lineage_library=library)
    html_path, json_path = report.write(args.output, args.json_output)
    for s in report.sections:
        if s.error:
            print(f"vitdash: {s.title} left out: {s.error}", file=sys.stderr)
    print(f"wrote {html_path} and {json_path}")
    return 0
