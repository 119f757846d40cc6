"""timm's own names (also DeiT, DeiT III `gamma_N`, the original DINOv2 repo's keys, and the attention-pooling
head `attn_pool.*` of SigLIP-style 'map' models, exactly the parts timm's VisionTransformer builds)."""
from __future__ import annotations

from vitdash.load.layouts.canon import Canon, rename_by_rules

NAME = "timm"

_RULES = [
    (r"(cls_token|dist_token|reg_token|pos_embed)", r"\1"),
    (r"patch_embed\.proj\.(weight|bias)", r"patch_embed.proj.\1"),
    (r"(norm_pre|norm|fc_norm|head|head_dist)\.(weight|bias)", r"\1.\2"),
    (r"pre_logits\.fc\.(weight|bias)", r"pre_logits.fc.\1"),
    (r"blocks\.(\d+)\.(norm1|norm2)\.(weight|bias)", r"blocks.\1.\2.\3"),
    (r"blocks\.(\d+)\.attn\.(qkv|proj|q_norm|k_norm)\.(weight|bias)", r"blocks.\1.attn.\2.\3"),
    (r"blocks\.(\d+)\.(ls1|ls2)\.gamma", r"blocks.\1.\2.gamma"),
    (r"blocks\.(\d+)\.gamma_([12])", r"blocks.\1.ls\2.gamma"),  # DeiT III
    (r"blocks\.(\d+)\.mlp\.(fc1|fc2)\.(weight|bias)", r"blocks.\1.mlp.\2.\3"),
    (r"blocks\.(\d+)\.mlp\.w12\.(weight|bias)", r"blocks.\1.mlp.fc1.\2"),  # DINOv2 SwiGLU
    (r"blocks\.(\d+)\.mlp\.w3\.(weight|bias)", r"blocks.\1.mlp.fc2.\2"),
    (r"attn_pool\.latent", r"attn_pool.latent"),
    (r"attn_pool\.(q|kv|proj|norm)\.(weight|bias)", r"attn_pool.\1.\2"),
    (r"attn_pool\.mlp\.(fc1|fc2)\.(weight|bias)", r"attn_pool.mlp.\1.\2"),
]


def convert(src, meta) -> Canon | None:
    if "patch_embed.proj.weight" not in src or "blocks.0.attn.qkv.weight" not in src:
        return None
    canon = Canon(src)
    if "register_tokens" in src and "cls_token" in src and "pos_embed" in src:
        # Original DINOv2 with registers: registers carry no position; timm folds cls's position into it.
        pos = src.shape("pos_embed")
        canon.put("cls_token", ["cls_token", "pos_embed"], src.shape("cls_token"), lambda c, p: c + p[:, :1])
        canon.put("pos_embed", "pos_embed", (pos[0], pos[1] - 1, pos[2]), lambda p: p[:, 1:])
        canon.rename("reg_token", "register_tokens")
    rename_by_rules(canon, _RULES)
    canon.set_aside([k for k in src if k == "mask_token"], "the mask token of masked-image pretraining")
    return canon
