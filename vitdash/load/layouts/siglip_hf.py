"""Hugging Face SigLIP vision towers: `SiglipVisionModel` (keys under `vision_model.` up to transformers 4, bare in
transformers 5), the vision half of a `SiglipModel` (its `text_model.*`, `logit_scale`, `logit_bias` are left
over) and `SiglipForImageClassification`.

The tower is a timm VisionTransformer without a class token; its pooling head (one learned probe attending
over the patch tokens through `nn.MultiheadAttention`) is timm's `AttentionPoolLatent`, whose `q` and `kv`
are the two parts of the packed `in_proj`.

SigLIP 2's NaFlex tower (`Siglip2VisionModel`, `Siglip2Model`) has the same keys but embeds patches flattened
channels-last with a Linear: laid out again as the convolution it is, it is the same VisionTransformer at its
position table's square grid (G x G patches), where transformers' resize of that table is the identity.
"""
from __future__ import annotations

import math
import re
from typing import Any

from vitdash.errors import VitdashError
from vitdash.load.layouts.canon import Canon, rename_by_rules
from vitdash.load.layouts.clip_hf import map_tower, set_aside_beside

NAME = "hf"

_PATCH = "embeddings.patch_embedding.weight"
_QKV = [("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")]


def _rules(p: str, classifier: bool) -> list[tuple[str, str]]:
    layer = p + r"encoder\.layers\.(\d+)\."
    rules = [
        (p + r"embeddings\.patch_embedding\.(weight|bias)", r"patch_embed.proj.\1"),
        (layer + r"layer_norm([12])\.(weight|bias)", r"blocks.\1.norm\2.\3"),
        (layer + r"self_attn\.out_proj\.(weight|bias)", r"blocks.\1.attn.proj.\2"),
        (layer + r"mlp\.(fc1|fc2)\.(weight|bias)", r"blocks.\1.mlp.\2.\3"),
        (p + r"post_layernorm\.(weight|bias)", r"norm.\1"),
    ]
    if classifier:
        return [*rules, (r"classifier\.(weight|bias)", r"head.\1")]
    return [*rules,
            (p + r"head\.probe", "attn_pool.latent"),
            (p + r"head\.attention\.out_proj\.(weight|bias)", r"attn_pool.proj.\1"),
            (p + r"head\.layernorm\.(weight|bias)", r"attn_pool.norm.\1"),
            (p + r"head\.mlp\.(fc1|fc2)\.(weight|bias)", r"attn_pool.mlp.\1.\2")]


def _linear_patches(canon: Canon, key: str, config: dict[str, Any]) -> None:
    """SigLIP 2's Linear over (ph, pw, C)-flattened patches as timm's (D, C, ph, pw) convolution."""
    dim, flat = canon.src.shape(key)
    chans = int(config.get("num_channels", 3))
    patch = int(config.get("patch_size") or math.isqrt(flat // chans))
    if patch * patch * chans != flat:
        raise VitdashError(f"{key} has {flat} inputs per patch: not {chans} channels of {patch}x{patch} pixels")
    canon.put("patch_embed.proj.weight", key, (dim, chans, patch, patch),
              lambda w: w.reshape(dim, patch, patch, chans).permute(0, 3, 1, 2).contiguous())
    canon.notes.append(f"SigLIP 2 NaFlex tower: its Linear patch embedding laid out as a {patch}x{patch} convolution; "
                       "exact at the position table's grid, while at other sizes timm resizes the table bicubically "
                       "where transformers resizes it bilinearly (with antialiasing)")


def convert(src, meta) -> Canon | None:
    patch = next((k for k in src if k in (_PATCH, "vision_model." + _PATCH)), None)
    if patch is None or len(src.shape(patch)) not in (2, 4):
        return None
    prefix = patch[: -len(_PATCH)]
    dim = src.shape(patch)[0]
    canon = Canon(src)
    config = map_tower(canon, prefix, meta, _QKV, "gelu_pytorch_tanh", ("layer_norm_eps", 1e-6))  # SiglipVisionConfig's
    if len(src.shape(patch)) == 2:
        _linear_patches(canon, patch, config)
    # SiglipForImageClassification averages the patch tokens into its classifier (timm's 'avg' pooling):
    # the attention-pooling head it still carries is not on that path.
    classifier = "classifier.weight" in src
    if not classifier:
        in_proj = f"{prefix}head.attention.in_proj_"
        for kind in ("weight", "bias"):
            if in_proj + kind in src:
                rows = src.shape(in_proj + kind)
                canon.put(f"attn_pool.q.{kind}", in_proj + kind, (dim, *rows[1:]), lambda w: w[:dim])
                canon.put(f"attn_pool.kv.{kind}", in_proj + kind, (rows[0] - dim, *rows[1:]), lambda w: w[dim:])
    rename_by_rules(canon, _rules(re.escape(prefix), classifier))
    if classifier:
        canon.set_aside([k for k in src if k.startswith(prefix + "head.")],
                        "the attention-pooling head SiglipForImageClassification does not use (it classifies the "
                        "mean patch token)")
    set_aside_beside(canon, prefix, "the text tower and the contrastive scale and bias")
    return canon
