"""Hugging Face SigLIP vision towers: `SiglipVisionModel` (keys under `vision_model.` up to transformers 4, bare in
transformers 5), the vision half of a `SiglipModel` (its `text_model.*`, `logit_scale`, `logit_bias` are left
over) and `SiglipForImageClassification`.

The tower is a timm VisionTransformer without a class token; its pooling head (one learned probe attending
over the patch tokens through `nn.MultiheadAttention`) is timm's `AttentionPoolLatent`, whose `q` and `kv`
are the two parts of the packed `in_proj`.
"""
from __future__ import annotations

import re
from typing import Any

from vitdash.load.layouts.canon import Canon, rename_by_rules
from vitdash.load.layouts.hf import fuse_qkv

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


def _vision_config(meta: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """The tower's config: config.json itself (SiglipVisionModel) or its `vision_config` (SiglipModel)."""
    config = meta.get("config") or {}
    nested = config.get("vision_config")
    return (nested, True) if isinstance(nested, dict) else (config, False)


def convert(src, meta) -> Canon | None:
    patch = next((k for k in src if k in (_PATCH, "vision_model." + _PATCH)), None)
    if patch is None or len(src.shape(patch)) != 4:  # SigLIP 2 NaFlex embeds flattened patches with a Linear
        return None
    prefix = patch[: -len(_PATCH)]
    dim = src.shape(patch)[0]
    canon = Canon(src)
    pos = f"{prefix}embeddings.position_embedding.weight"
    if pos in src:  # an nn.Embedding (N, D): timm's (1, N, D), no class token
        canon.put("pos_embed", pos, (1, *src.shape(pos)), lambda p: p[None])
    layers = sorted({m.group(0) for k in src if (m := re.match(re.escape(prefix) + r"encoder\.layers\.(\d+)\.", k))})
    for layer in layers:
        fuse_qkv(canon, layer, layer.split(".")[-2], _QKV)
    # SiglipForImageClassification averages the patch tokens into its classifier (timm's 'avg' pooling):
    # the attention-pooling head it still carries is not on that path.
    classifier = "classifier.weight" in src
    if classifier:
        if any(k.startswith(prefix + "head.") for k in src):
            canon.notes.append("SiglipForImageClassification classifies the mean of the patch tokens: its unused "
                               "attention-pooling head (head.*) is kept aside")
    else:
        in_proj = f"{prefix}head.attention.in_proj_"
        for kind in ("weight", "bias"):
            if in_proj + kind in src:
                rows = src.shape(in_proj + kind)
                canon.put(f"attn_pool.q.{kind}", in_proj + kind, (dim, *rows[1:]), lambda w: w[:dim])
                canon.put(f"attn_pool.kv.{kind}", in_proj + kind, (rows[0] - dim, *rows[1:]), lambda w: w[dim:])
    config, nested = _vision_config(meta)
    if nested and isinstance(config.get("num_attention_heads"), int):
        canon.metadata["num_heads"] = config["num_attention_heads"]  # not at config.json's top level
    # Defaults: SiglipVisionConfig's, for a bare weights file.
    canon.metadata["hidden_act"] = str(config.get("hidden_act", "gelu_pytorch_tanh"))
    canon.metadata["norm_eps"] = float(config.get("layer_norm_eps", 1e-6))
    rename_by_rules(canon, _rules(re.escape(prefix), classifier))
    return canon
