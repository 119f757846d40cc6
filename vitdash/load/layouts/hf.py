"""Hugging Face ViT / DeiT / Dinov2 (+ registers), with the Hub's names and transformers 5's."""
from __future__ import annotations

import re

from vitdash.load.layouts.canon import Canon, rename_by_rules

NAME = "hf"

_P = r"(?:vit\.|deit\.|dinov2\.|dinov2_with_registers\.)?"
_L = _P + r"(?:encoder\.)?layers?\.(\d+)\."  # transformers 5 drops `encoder.` in memory
_RULES = [
    (_P + r"embeddings\.cls_token", "cls_token"),
    (_P + r"embeddings\.distillation_token", "dist_token"),
    (_P + r"embeddings\.register_tokens", "reg_token"),
    (_P + r"embeddings\.position_embeddings", "pos_embed"),
    (_P + r"embeddings\.patch_embeddings\.projection\.(weight|bias)", r"patch_embed.proj.\1"),
    (_L + r"(?:layernorm_before|norm1)\.(weight|bias)", r"blocks.\1.norm1.\2"),
    (_L + r"(?:layernorm_after|norm2)\.(weight|bias)", r"blocks.\1.norm2.\2"),
    (_L + r"attention\.(?:output\.dense|o_proj)\.(weight|bias)", r"blocks.\1.attn.proj.\2"),
    (_L + r"(?:intermediate\.dense|mlp\.fc1)\.(weight|bias)", r"blocks.\1.mlp.fc1.\2"),
    (_L + r"(?:output\.dense|mlp\.fc2)\.(weight|bias)", r"blocks.\1.mlp.fc2.\2"),
    (_L + r"mlp\.weights_in\.(weight|bias)", r"blocks.\1.mlp.fc1.\2"),
    (_L + r"(?:mlp\.weights_out|mlp\.down_proj)\.(weight|bias)", r"blocks.\1.mlp.fc2.\2"),
    (_L + r"layer_scale([12])\.lambda1", r"blocks.\1.ls\2.gamma"),
    (_P + r"layernorm\.(weight|bias)", r"norm.\1"),
    (r"(?:classifier|cls_classifier)\.(weight|bias)", r"head.\1"),
    (r"distillation_classifier\.(weight|bias)", r"head_dist.\1"),
]
_QKV = [("attention.attention.query", "attention.attention.key", "attention.attention.value"),
        ("attention.q_proj", "attention.k_proj", "attention.v_proj")]


def fuse_qkv(canon: Canon, layer: str, block: int | str, names: list[tuple[str, str, str]]) -> None:
    """timm's fused `attn.qkv` (rows q, then k, then v) from separate projections under `layer`, for
    whichever (q, k, v) naming of `names` the block uses (Hugging Face models name them several ways)."""
    for q, k, v in names:
        for kind in ("weight", "bias"):
            keys = [f"{layer}{n}.{kind}" for n in (q, k, v)]
            if all(key in canon.src for key in keys):
                canon.concat(f"blocks.{block}.attn.qkv.{kind}", keys)


def convert(src, meta) -> Canon | None:
    patch = next((k for k in src if re.fullmatch(_P + r"embeddings\.patch_embeddings\.projection\.weight", k)), None)
    if patch is None:
        return None
    canon = Canon(src)
    prefix = patch[: -len("embeddings.patch_embeddings.projection.weight")]
    layers = sorted({m.group(0) for k in src if (m := re.match(_L, k))})
    for layer in layers:
        i = re.match(_L, layer).group(1)
        fuse_qkv(canon, layer, i, _QKV)
        gate, up = f"{layer}mlp.gate_proj", f"{layer}mlp.up_proj"
        for kind in ("weight", "bias"):
            if f"{gate}.{kind}" in src:  # transformers 5 SwiGLU -> timm's packed fc1 (gate first)
                canon.concat(f"blocks.{i}.mlp.fc1.{kind}", [f"{gate}.{kind}", f"{up}.{kind}"])
    reg = f"{prefix}embeddings.register_tokens"
    if reg in src:
        cls, pos = f"{prefix}embeddings.cls_token", f"{prefix}embeddings.position_embeddings"
        shape = src.shape(pos)
        canon.put("cls_token", [cls, pos], src.shape(cls), lambda c, p: c + p[:, :1])
        canon.put("pos_embed", pos, (shape[0], shape[1] - 1, shape[2]), lambda p: p[:, 1:])
    head = "classifier.weight"
    concat_head = head in src and src.shape(head)[1] != src.shape(patch)[0]
    # Dinov2ForImageClassification feeds [cls, mean(patches)]: not a timm ViT head.
    rules = [r for r in _RULES if not r[1].startswith("head.")] if concat_head else _RULES
    config = meta.get("config") or {}
    default_eps = 1e-6 if "dinov2" in str(config.get("model_type", "")) else 1e-12  # transformers' defaults
    canon.metadata["norm_eps"] = float(config.get("layer_norm_eps", default_eps))
    rename_by_rules(canon, rules)
    if concat_head:
        canon.set_aside([k for k in src if k.startswith("classifier.")],
                        "the classifier of Dinov2ForImageClassification (it reads class + mean-patch features)")
    canon.set_aside([k for k in src if k.endswith("mask_token")], "the mask token of masked-image pretraining")
    canon.set_aside([k for k in src if "pooler.dense" in k], "ViTModel's tanh pooler (not used for classification)")
    return canon
