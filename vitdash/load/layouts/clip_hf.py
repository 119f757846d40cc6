"""Hugging Face CLIP image towers: `CLIPVisionModel` (keys under `vision_model.` up to transformers 4, bare in
transformers 5), `CLIPVisionModelWithProjection` and the vision half of `CLIPModel` (also the CLIP-shaped towers of
MetaCLIP 2, AltCLIP and Chinese-CLIP, which share these names).

The tower is timm's CLIP-style VisionTransformer: a bias-free patch convolution, a LayerNorm before the blocks
(`pre_layrnorm`, spelled so) and a class token. transformers applies `post_layernorm` to the pooled class token
only, timm's `norm` to every token before pooling it: the pooled feature is the same. The activation (OpenAI's
QuickGELU or the exact GELU of most later ports) and the eps are only in the config.
"""
from __future__ import annotations

import re
from typing import Any

from vitdash.load.layouts.canon import Canon, rename_by_rules
from vitdash.load.layouts.hf import fuse_qkv

NAME = "hf"

_CLS = "embeddings.class_embedding"
_QKV = [("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")]


def _rules(p: str) -> list[tuple[str, str]]:
    layer = p + r"encoder\.layers\.(\d+)\."
    return [
        (p + r"embeddings\.patch_embedding\.weight", "patch_embed.proj.weight"),
        (p + r"pre_layrnorm\.(weight|bias)", r"norm_pre.\1"),
        (layer + r"layer_norm([12])\.(weight|bias)", r"blocks.\1.norm\2.\3"),
        (layer + r"self_attn\.out_proj\.(weight|bias)", r"blocks.\1.attn.proj.\2"),
        (layer + r"mlp\.(fc1|fc2)\.(weight|bias)", r"blocks.\1.mlp.\2.\3"),
        (p + r"post_layernorm\.(weight|bias)", r"norm.\1"),
    ]


def vision_config(meta: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """The tower's config: config.json itself (a vision model) or its `vision_config` (a dual-tower model)."""
    config = meta.get("config") or {}
    nested = config.get("vision_config") if isinstance(config, dict) else None
    return (nested, True) if isinstance(nested, dict) else (config if isinstance(config, dict) else {}, False)


def map_tower(canon: Canon, prefix: str, meta: dict[str, Any], qkv: list[tuple[str, str, str]], act: str,
              eps: tuple[str, float]) -> dict[str, Any]:
    """What the towers transformers derived from CLIP's code share (CLIP, SigLIP, AIMv2): the position table as an
    nn.Embedding (N, D), q/k/v per `encoder.layers.N.`, and the config values shapes cannot tell: the head count
    from a nested vision_config (heads are read from a top-level one anyway), the activation and the eps (`act`
    and `eps` are the config class's defaults, for a bare weights file). Returns the tower's config."""
    src = canon.src
    pos = f"{prefix}embeddings.position_embedding.weight"
    if pos in src:
        canon.put("pos_embed", pos, (1, *src.shape(pos)), lambda p: p[None])
    for layer in sorted({m.group(0) for k in src if (m := re.match(re.escape(prefix) + r"encoder\.layers\.\d+\.", k))}):
        fuse_qkv(canon, layer, layer.split(".")[-2], qkv)
    config, nested = vision_config(meta)
    if nested and isinstance(config.get("num_attention_heads"), int):
        canon.metadata["num_heads"] = config["num_attention_heads"]
    canon.metadata["hidden_act"] = str(config.get("hidden_act", act))
    canon.metadata["norm_eps"] = float(config.get(eps[0], eps[1]))
    canon.metadata["timm_class"] = "VisionTransformer"
    return config


def set_aside_beside(canon: Canon, prefix: str, why: str) -> None:
    """Everything outside the tower's prefix (a dual-tower model's text side)."""
    if prefix:
        canon.set_aside([k for k in canon.src if not k.startswith(prefix)], why)


def convert(src, meta) -> Canon | None:
    cls = next((k for k in src if k in (_CLS, "vision_model." + _CLS)), None)
    if cls is None:
        return None
    prefix = cls[: -len(_CLS)]
    canon = Canon(src)
    dim = src.shape(cls)[0]
    canon.put("cls_token", cls, (1, 1, dim), lambda c: c.reshape(1, 1, -1))  # the position table's first row is its
    map_tower(canon, prefix, meta, _QKV, "quick_gelu", ("layer_norm_eps", 1e-5))  # CLIPVisionConfig: OpenAI's GELU
    rename_by_rules(canon, _rules(re.escape(prefix)))
    set_aside_beside(canon, prefix, "the text tower and the contrastive scale")
    canon.set_aside([k for k in src if k.endswith("position_ids")], "position indices (a buffer older files saved)")
    canon.set_aside([k for k in src if k == "visual_projection.weight"],
                    "the projection into CLIP's joint image-text space (the image feature is the pooled class token "
                    "before it)")
    if "classifier.weight" in src:
        canon.notes.append("CLIPForImageClassification's classifier reads the mean of the patch tokens before "
                           "post_layernorm, which no timm pooling computes: it is left over")
    return canon
