"""The recognition and verdict table over every public implementation (tests/implementations) and every real file in
../shared: what vitdash reads from the file, whether timm can compute it exactly, whether attention rollout runs,
and the training verdict of each state (init, trained, trained with a fresh head).

    python benchmarks/recognition_table.py [--cache DIR]

States are trained once and cached (the tests' cache by default, .pytest_cache/d/vitdash-implementation-states),
so a second run only audits.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from tests.implementations import states as S  # noqa: E402
from vitdash.attention.explain import explain_images  # noqa: E402
from vitdash.errors import VitdashError  # noqa: E402
from vitdash.identity.architecture import infer_architecture  # noqa: E402
from vitdash.load.checkpoint import Checkpoint  # noqa: E402
from vitdash.load.library import scan_folder  # noqa: E402
from vitdash.load.sources import checkpoint_from_state_dict, load  # noqa: E402
from vitdash.trained.verdict import audit  # noqa: E402

_BLOCKS = {"pre_norm": "pre", "post_ln": "post-LN", "post_norm": "res-post"}
IMAGE = Image.fromarray((np.random.default_rng(0).random((40, 40, 3)) * 255).astype("uint8"))


def _describe(ckpt: Checkpoint) -> list[str]:
    if not ckpt.is_vit:
        return ["no", ckpt.looks_like[:48], "", "", "", "", "", "", ""]
    arch = infer_architecture(ckpt)
    heads = f"{arch.num_heads}{'*' if arch.heads_inferred else ''}"
    tokens = "+".join(t for t, on in (("cls", arch.has_class_token), ("dist", arch.has_dist_token)) if on) or "none"
    img = "?" if arch.pos_embed == "none" else str(arch.img_size[0])
    exact = "no" if arch.not_in_timm else "yes"
    try:
        explain_images(ckpt, [IMAGE])
        rollout = "runs"
    except VitdashError:
        rollout = "-"
    return ["yes", ckpt.layout, f"{arch.embed_dim}/{arch.depth}/{heads}", f"p{arch.patch_size}@{img}",
            f"{tokens},{arch.global_pool}", f"{_BLOCKS.get(arch.block, arch.block)},{arch.act},{arch.pos_embed}", exact,
            rollout, ""]


def _verdict(ckpt: Checkpoint) -> str:
    result = audit(ckpt)
    groups = f" [{','.join(result.at_init_groups)}]" if result.verdict == "partial" else ""
    return f"{result.verdict} {result.confidence:.2f}{groups}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cache", default=str(ROOT / ".pytest_cache" / "d" / "vitdash-implementation-states"))
    args = ap.parse_args()
    Path(args.cache).mkdir(parents=True, exist_ok=True)
    head = ["file", "ViT", "layout / looks like", "D/depth/heads", "patch@px", "tokens,pool", "block,act,pos",
            "timm exact", "rollout", "init", "trained", "fresh head"]
    rows = []
    for name in S.names():
        st = S.states(name, Path(args.cache))
        trained = checkpoint_from_state_dict(st.trained, name=name)
        row = [name, *_describe(trained)[:-1]]
        row += [_verdict(checkpoint_from_state_dict(st.init, name=name)), _verdict(trained),
                _verdict(checkpoint_from_state_dict(st.fresh_head, name=name)) if st.fresh_head else "-"]
        rows.append(row)
    shared = ROOT.parent / "shared" / "checkpoints"
    for entry in scan_folder(shared) if shared.is_dir() else []:
        ckpt = load(entry.source)
        rows.append([f"shared: {entry.name}", *_describe(ckpt)[:-1], "-", _verdict(ckpt), "-"])
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(head, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print("| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |")
    print("\n* heads inferred from the weights (no config says them). timm exact: timm's VisionTransformer computes "
          "the same function (else the parts it cannot are named and no model is built).")


if __name__ == "__main__":
    main()
