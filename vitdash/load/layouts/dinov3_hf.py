"""Hugging Face DINOv3 ViTs (`DINOv3ViTModel`, `DINOv3ViTBackbone`): the Hub's files name the blocks `layer.N.`,
transformers 5 holds them as `model.layer.N.`.

The target is timm's `Eva` as its `vit_*_dinov3` models build it: rotary position embeddings (no position table
in the file), a class token and register tokens, LayerScale, q and v biases only (`q_bias`/`v_bias`), and a plain
GELU MLP or a SwiGLU kept as its halves (`fc1_g` gated, `fc1_x`). The rotary settings, the eps and the activation
are only in config.json (recorded as `metadata['model_args']`, in Eva's argument names); the pooled feature is
the normalized class token, as transformers' pooler gives it.
"""
from __future__ import annotations

import re
from typing import Any

from vitdash.load.layouts.canon import Canon, rename_by_rules

NAME = "hf"

_PATCH = "embeddings.patch_embeddings.weight"


def _rules(p: str, gated: bool) -> list[tuple[str, str]]:
    layer = p + r"(?:model\.)?layer\.(\d+)\."
    up = "fc1_x" if gated else "fc1"
    return [
        (p + r"embeddings\.cls_token", "cls_token"),
        (p + r"embeddings\.register_tokens", "reg_token"),
        (p + r"embeddings\.patch_embeddings\.(weight|bias)", r"patch_embed.proj.\1"),
        (layer + r"norm([12])\.(weight|bias)", r"blocks.\1.norm\2.\3"),
        (layer + r"attention\.q_proj\.bias", r"blocks.\1.attn.q_bias"),
        (layer + r"attention\.v_proj\.bias", r"blocks.\1.attn.v_bias"),
        (layer + r"attention\.o_proj\.(weight|bias)", r"blocks.\1.attn.proj.\2"),
        (layer + r"layer_scale([12])\.lambda1", r"blocks.\1.gamma_\2"),
        (layer + r"mlp\.gate_proj\.(weight|bias)", r"blocks.\1.mlp.fc1_g.\2"),
        (layer + r"mlp\.up_proj\.(weight|bias)", rf"blocks.\1.mlp.{up}.\2"),
        (layer + r"mlp\.down_proj\.(weight|bias)", r"blocks.\1.mlp.fc2.\2"),
        (p + r"norm\.(weight|bias)", r"norm.\1"),
    ]


def _fuse(canon: Canon, layer: str, block: str) -> None:
    """q/k/v weights into `attn.qkv`; a key bias (config key_bias) needs timm's full `qkv.bias` (with rotary
    embeddings a key bias does not cancel out of the softmax), else the q and v biases stay Eva's own."""
    src = canon.src
    canon.concat(f"blocks.{block}.attn.qkv.weight", [f"{layer}attention.{n}_proj.weight" for n in "qkv"])
    biases = [f"{layer}attention.{n}_proj.bias" for n in "qkv"]
    if biases[1] in src and all(b in src for b in biases):
        canon.concat(f"blocks.{block}.attn.qkv.bias", biases)
        canon.metadata["model_args"]["attn_type"] = "rope"  # timm's AttentionRope: Eva's with a full qkv bias


def _model_args(config: dict[str, Any]) -> dict[str, Any]:
    """Eva's arguments for transformers' DINOv3 rotary embedding (same frequencies, rotate-half), in timm's names."""
    return {"use_rot_pos_emb": True, "use_abs_pos_emb": False, "rope_type": "dinov3", "rope_rotate_half": True,
            "rope_temperature": float(config.get("rope_theta", 100.0))}


def convert(src, meta) -> Canon | None:
    patch = next((k for k in src if k.endswith(_PATCH) and len(src.shape(k)) == 4), None)
    if patch is None:
        return None
    prefix = patch[: -len(_PATCH)]
    layer_re = re.compile(re.escape(prefix) + r"(?:model\.)?layer\.(\d+)\.")
    layers = sorted({m.group(0) for k in src if (m := layer_re.match(k))})
    if not layers or f"{layers[0]}attention.q_proj.weight" not in src:
        return None
    canon = Canon(src)
    config = meta.get("config") if isinstance(meta.get("config"), dict) else {}
    canon.metadata["model_args"] = _model_args(config)
    for layer in layers:
        _fuse(canon, layer, layer_re.match(layer).group(1))
    gated = any(k.endswith("mlp.gate_proj.weight") for k in src)
    canon.metadata.update(
        timm_class="Eva", pos_embed="rope", global_pool="token",
        hidden_act=str(config.get("hidden_act", "silu" if gated else "gelu")),  # DINOv3ViTConfig's defaults
        norm_eps=float(config.get("layer_norm_eps", 1e-5)))
    registers = prefix + "embeddings.register_tokens"
    rules = _rules(re.escape(prefix), gated)
    if registers in src and src.shape(registers)[1] == 0:  # timm's Eva has no reg_token then
        rules = [r for r in rules if r[1] != "reg_token"]
        canon.set_aside([registers], "an empty register-token tensor (the model has none)")
    rename_by_rules(canon, rules)
    canon.set_aside([k for k in src if k.endswith("embeddings.mask_token")], "the mask token of masked-image "
                                                                              "pretraining")
    return canon
