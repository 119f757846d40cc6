"""Hugging Face AIMv2 image towers: `Aimv2VisionModel` and the vision half of `Aimv2Model` (`vision_model.*`,
the text tower beside it set aside), and Apple's own names, which the `apple/aimv2-*` repositories' remote-code
`AIMv2Model` saves (`preprocessor.patchifier`, `trunk.blocks.N.mlp.fc1/fc2/fc3`, `trunk.post_trunk_norm`: the
names timm's aimv2 checkpoint filter reads too).

The tower is timm's `aimv2_*` VisionTransformer: RMSNorm everywhere including one inside the patch embedding
(`patch_embed.norm`), a SwiGLU MLP kept as its two halves (`fc1_g` the SiLU-gated one, `fc1_x`), no class token,
and the patch tokens averaged. The attention-pooling head some towers carry queries with its raw class token
(no query projection, no norm, no MLP), which no timm pool computes, so it is set aside.
"""
from __future__ import annotations

import re
from typing import Any

import torch

from vitdash.load.layouts.canon import Canon, rename_by_rules
from vitdash.load.layouts.clip_hf import map_tower, set_aside_beside

NAME = "hf"

_PATCH = "embeddings.patch_embed.weight"
_QKV = [("attention.q_proj", "attention.k_proj", "attention.v_proj")]


def _rules(p: str) -> list[tuple[str, str]]:
    layer = p + r"encoder\.layers\.(\d+)\."
    return [
        (p + r"embeddings\.patch_embed\.(weight|bias)", r"patch_embed.proj.\1"),
        (p + r"embeddings\.rms_norm\.weight", "patch_embed.norm.weight"),
        (layer + r"rms_norm([12])\.weight", r"blocks.\1.norm\2.weight"),
        (layer + r"attention\.out_proj\.(weight|bias)", r"blocks.\1.attn.proj.\2"),
        (layer + r"ffn\.gate_proj\.(weight|bias)", r"blocks.\1.mlp.fc1_g.\2"),
        (layer + r"ffn\.up_proj\.(weight|bias)", r"blocks.\1.mlp.fc1_x.\2"),
        (layer + r"ffn\.down_proj\.(weight|bias)", r"blocks.\1.mlp.fc2.\2"),
        (p + r"rms_norm\.weight", "norm.weight"),
    ]


_APPLE_PATCH = "preprocessor.patchifier.proj.weight"
_APPLE_BLOCK = r"trunk\.blocks\.(\d+)\."
_APPLE_RULES = [
    (r"preprocessor\.patchifier\.proj\.(weight|bias)", r"patch_embed.proj.\1"),
    (r"preprocessor\.patchifier\.norm\.weight", "patch_embed.norm.weight"),
    (r"preprocessor\.pos_embed", "pos_embed"),
    (_APPLE_BLOCK + r"norm_([12])\.weight", r"blocks.\1.norm\2.weight"),
    (_APPLE_BLOCK + r"attn\.(qkv|proj)\.(weight|bias)", r"blocks.\1.attn.\2.\3"),
    (_APPLE_BLOCK + r"mlp\.fc1\.(weight|bias)", r"blocks.\1.mlp.fc1_g.\2"),  # SiLU(fc1(x)) * fc3(x), then fc2
    (_APPLE_BLOCK + r"mlp\.fc3\.(weight|bias)", r"blocks.\1.mlp.fc1_x.\2"),
    (_APPLE_BLOCK + r"mlp\.fc2\.(weight|bias)", r"blocks.\1.mlp.fc2.\2"),
    (r"trunk\.post_trunk_norm\.weight", "norm.weight"),
]


def _convert_apple(src, meta) -> Canon:
    canon = Canon(src)
    config = meta.get("config") if isinstance(meta.get("config"), dict) else {}
    canon.metadata.update(hidden_act="silu", norm_eps=float(config.get("rms_norm_eps", 1e-5)),
                          timm_class="VisionTransformer")  # AIMv2Config's default eps
    rename_by_rules(canon, _APPLE_RULES)
    if "pos_embed" not in canon.infos:
        canon.notes.append("no preprocessor.pos_embed: a 'native' AIMv2 computes its position table at run time, "
                           "which is not made here, so the model built from these tensors has no position encoding")
    return canon


def _native_table(canon: Canon, patch_shape: tuple[int, ...], config: dict[str, Any]) -> None:
    """A 'native' tower computes its sin-cos table at run time for each image size ([sin w, cos w, sin h, cos h]
    per patch, frequencies 1e4^(-i/(D/4)), in float64 as transformers does): made here for the config's size, where
    timm's model with it as pos_embed is exact."""
    dim, patch = patch_shape[0], patch_shape[-1]
    grid = int(config.get("image_size", 224)) // patch  # Aimv2VisionConfig's default size
    quarter = dim // 4

    def table() -> torch.Tensor:
        omega = 1.0 / 10000.0 ** (torch.arange(quarter, dtype=torch.float64) / quarter)
        h, w = torch.meshgrid(*[torch.arange(grid, dtype=torch.float64)] * 2, indexing="ij")
        eh, ew = h.flatten().outer(omega), w.flatten().outer(omega)
        return torch.cat([ew.sin(), ew.cos(), eh.sin(), eh.cos()], 1).float()[None]

    canon.synthesize("pos_embed", (1, grid * grid, dim), table)
    canon.metadata["pos_embed"] = "fixed"
    canon.notes.append(f"a 'native' AIMv2 tower computes its sin-cos position table for each image size: the table "
                       f"for {grid * patch} px (the config's) is made here, so other sizes are resized from it")


def convert(src, meta) -> Canon | None:
    if _APPLE_PATCH in src:
        return _convert_apple(src, meta)
    patch = next((k for k in src if k in (_PATCH, "vision_model." + _PATCH)), None)
    if patch is None:
        return None
    prefix = patch[: -len(_PATCH)]
    canon = Canon(src)
    config = map_tower(canon, prefix, meta, _QKV, "silu", ("rms_norm_eps", 1e-5))  # Aimv2VisionConfig's defaults
    if "pos_embed" not in canon.infos:
        _native_table(canon, src.shape(patch), config)
    rename_by_rules(canon, _rules(re.escape(prefix)))
    canon.set_aside([k for k in src if k.startswith(prefix + "head.")],
                    "AIMv2's attention-pooling head (its query is the raw class token, which no timm pool computes; "
                    "the canonical model averages the patch tokens, as timm's aimv2 models do)")
    set_aside_beside(canon, prefix, "the text tower, the projections into the joint image-text space and the "
                                    "contrastive scale")
    return canon
