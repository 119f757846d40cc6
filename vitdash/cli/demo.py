"""`python -m vitdash demo`: train (or find) the built-in demo pair and say where it is."""
from __future__ import annotations

from vitdash.cli.common import add_json_flag, emit, stage_printer
from vitdash.load.demo import ensure_demo

HELP = "build the demo pair (a small ViT trained on scikit-learn's digits, and its untrained twin) in the cache"


def add_arguments(parser) -> None:
    parser.add_argument("--cache-dir", help="vitdash cache folder (default: $VITDASH_CACHE_DIR or ~/.cache/vitdash)")
    add_json_flag(parser)


def run(args) -> int:
    pair = ensure_demo(cache_dir=args.cache_dir, progress=stage_printer())
    how = f"trained in {pair.build_s:.0f} s" if pair.built_now else "already in the cache"
    summary = (f"demo pair {how}:\n  trained: {pair.trained}\n  init:    {pair.init}\n"
               f"held-out accuracy on digits: trained {pair.test_accuracy:.1%}, init {pair.init_test_accuracy:.1%} "
               f"({pair.n_test} images never seen in training)")
    emit(pair.to_dict(), args, summary)
    return 0
