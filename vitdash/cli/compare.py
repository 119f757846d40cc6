"""`python -m vitdash compare A B [--json]`: what changed from checkpoint A to checkpoint B."""
from __future__ import annotations

from vitdash.cli.common import add_json_flag, emit, load_or_exit
from vitdash.population.compare import compare

HELP = "compare two checkpoints tensor by tensor on canonical names (same weights? what moved? the head?)"


def add_arguments(parser) -> None:
    parser.add_argument("a", help="reference checkpoint: file or folder, timm:<name>, or hf-hub:<repo>")
    parser.add_argument("b", help="checkpoint compared against A")
    parser.add_argument("--no-verdict", action="store_true",
                        help="skip the two verdict audits (faster; no change in the verdict statistics)")
    add_json_flag(parser)


def _summary(cmp) -> str:
    lines = [cmp.summary()]
    moved = sorted((t for t in cmp.tensors if t.rel_change), key=lambda t: -t.rel_change)[:8]
    if moved and not cmp.same_weights:
        lines.append("tensors that moved most (relative change, cosine):")
        lines += [f"  {t.name}: {t.rel_change:.3g}, {t.cosine:.3f}" if t.cosine is not None else
                  f"  {t.name}: {t.rel_change:.3g}" for t in moved]
    for label, names in (("only in A", cmp.only_in_a), ("only in B", cmp.only_in_b), ("resized", cmp.resized)):
        if names:
            lines.append(f"{label}: {', '.join(names[:10])}" + (" ..." if len(names) > 10 else ""))
    lines += [f"note: {n}" for n in cmp.notes]
    return "\n".join(lines)


def run(args) -> int:
    cmp = compare(load_or_exit(args.a), load_or_exit(args.b), verdicts=not args.no_verdict)
    emit(cmp.to_dict(), args, _summary(cmp))
    return 0
