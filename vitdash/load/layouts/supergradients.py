"""SuperGradients `ViT` (adapted from vit-pytorch, but with a conv patch embedding and timm-like blocks)."""
from __future__ import annotations

from vitdash.load.layouts.canon import Canon, rename_by_rules

NAME = "supergradients"

_B = r"transformer\.blocks\.(\d+)\."
_RULES = [
    (r"cls_token", "cls_token"),
    (r"pos_embedding", "pos_embed"),
    (r"patch_embedding\.proj\.(weight|bias)", r"patch_embed.proj.\1"),
    (_B + r"(norm1|norm2)\.(weight|bias)", r"blocks.\1.\2.\3"),
    (_B + r"attn\.to_qkv\.(weight|bias)", r"blocks.\1.attn.qkv.\2"),
    (_B + r"attn\.proj\.(weight|bias)", r"blocks.\1.attn.proj.\2"),
    (_B + r"mlp\.(fc1|fc2)\.(weight|bias)", r"blocks.\1.mlp.\2.\3"),
    (r"pre_head_norm\.(weight|bias)", r"norm.\1"),
    (r"head\.(weight|bias)", r"head.\1"),
]


def convert(src, meta) -> Canon | None:
    if "patch_embedding.proj.weight" not in src or "transformer.blocks.0.attn.to_qkv.weight" not in src:
        return None
    canon = Canon(src)
    canon.notes.append("SuperGradients ViT layout")
    rename_by_rules(canon, _RULES)
    return canon
