"""`python -m vitdash fewshot PATH --data DIR`: linear few-shot probe of frozen features against a random twin."""
from __future__ import annotations

from vitdash.cli.common import emit, load_or_exit
from vitdash.cli.eval import add_engine_arguments, engine_options, overrides
from vitdash.perform.fewshot import DEFAULT_SHOTS, fewshot

HELP = "few-shot linear probe of the frozen features, beside the same probe on a random-init twin"


def add_arguments(parser) -> None:

    add_engine_arguments(parser)
    parser.add_argument("--shots", type=int, nargs="+", default=list(DEFAULT_SHOTS), help="images per class")
    parser.add_argument("--splits", type=int, default=5, help="random train/test splits per shot count")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--coarse", action="store_true",
                        help="group ImageNet classes into coarse WordNet categories (for one image per class)")
    parser.add_argument("--no-twin", action="store_true", help="skip the random-init twin")


def run(args) -> int:
    ckpt = load_or_exit(args.path)
    r = fewshot(ckpt, args.data, shots=args.shots, n_splits=args.splits, seed=args.seed, coarse=args.coarse,
                random_twin=not args.no_twin, options=engine_options(args), overrides=overrides(args))
    lines = [f"{r.checkpoint} on {r.data['name']}: {r.n_classes} classes, {r.n_images} images, "
             f"{r.n_skipped} skipped, chance {r.chance:.1%}"]
    for s in r.results:
        twin = (f"   random twin {s.random_init_accuracy_mean:.1%}" if s.random_init_accuracy_mean is not None
                else "")
        lines.append(f"{s.shots:>3}-shot: {s.accuracy_mean:.1%} +- {s.accuracy_std:.1%}{twin}")
    if r.skipped_shots:
        lines.append(f"shot counts the data does not allow: {r.skipped_shots}")
    lines += [f"warning: {w}" for w in r.warnings]
    emit(r.to_dict(), args, "\n".join(lines))
    return 0
