"""What timm's own definition of a named model says (on the meta device: no memory, no weights), and
which timm model the metadata names.

A checkpoint's shapes fix its structure; settings no tensor shows (the RoPE variant and its temperature,
norm eps, the activation, the pooling) are read off timm's definition when the metadata names the model."""
from __future__ import annotations

import functools
from typing import Any

import torch


def timm_name(meta: dict[str, Any]) -> str | None:
    """The timm architecture the metadata names (load_timm, timm's Hub config.json, timm train.py args)."""
    cfg = meta.get("pretrained_cfg")
    config = meta.get("config")
    for name in (meta.get("timm_model"), cfg.get("architecture") if isinstance(cfg, dict) else None,
                 config.get("architecture") if isinstance(config, dict) else None):
        if isinstance(name, str) and name:
            return name.split(".")[0]
    return None


@functools.lru_cache(maxsize=16)
def timm_model(name: str) -> torch.nn.Module | None:
    """timm's definition of `name`, built on the meta device (no memory, no weights)."""
    import timm

    if not timm.is_model(name):
        return None
    with torch.device("meta"):
        return timm.create_model(name, pretrained=False)


def timm_block(name: str) -> torch.nn.Module | None:
    """The first block of timm's definition of `name`."""
    return getattr(timm_model(name), "blocks", [None])[0]


# timm's rotary embedding classes -> Eva's `rope_type`
_ROPE_TYPES = {"RotaryEmbeddingCat": "cat", "RotaryEmbeddingDinoV3": "dinov3", "RotaryEmbeddingMixed": "mixed",
               "RotaryEmbedding": "base", "MRotaryEmbedding": "mrope"}


def _pair(value: Any) -> list[int] | None:
    return [int(v) for v in value] if isinstance(value, (tuple, list)) else None


def rope_settings(model: torch.nn.Module) -> dict[str, Any]:
    """Eva's RoPE constructor arguments, read off a built Eva (its buffers are never saved, so a file
    holds none of this)."""
    rope = getattr(model, "rope", None)
    if rope is None:
        return {"use_rot_pos_emb": False}
    out: dict[str, Any] = {"use_rot_pos_emb": True, "rope_type": _ROPE_TYPES.get(type(rope).__name__, "cat"),
                           "rope_temperature": float(rope.temperature),
                           "rope_grid_indexing": getattr(rope, "grid_indexing", "ij"),
                           "rope_rotate_half": bool(getattr(model.blocks[0].attn, "rotate_half", False))}
    if hasattr(rope, "grid_offset"):
        out["rope_grid_offset"] = float(rope.grid_offset)
    if out["rope_type"] == "cat":
        out["ref_feat_shape"] = _pair(getattr(rope, "ref_feat_shape", None))
    return out


@functools.lru_cache(maxsize=64)
def _definition(name: str) -> tuple[tuple[str, Any], ...]:
    model = timm_model(name)
    if model is None:
        return ()
    block = getattr(model, "blocks", [None])[0]
    attn = getattr(block, "attn", None)
    norm = getattr(block, "norm1", None)
    out: dict[str, Any] = {"timm_class": type(model).__name__, "global_pool": getattr(model, "global_pool", None)}
    if isinstance(getattr(norm, "eps", None), float):
        out["norm_eps"] = norm.eps
    if isinstance(getattr(attn, "num_heads", None), int):
        out["num_heads"] = attn.num_heads
    patch_embed = getattr(model, "patch_embed", None)
    if getattr(patch_embed, "img_size", None):
        out["img_size"] = _pair(patch_embed.img_size)
    embeds = getattr(model, "embeds", None)
    if out["timm_class"] == "NaFlexVit":  # how its 2-D position table is resized to each image's grid
        out.update({k: getattr(embeds, k) for k in ("pos_embed_interp_mode", "pos_embed_ar_preserving",
                                                    "pos_embed_antialias", "pos_embed_align_corners")})
    if out["timm_class"] == "Eva":
        out.update(rope_settings(model))
        out["attn_type"] = "rope" if type(attn).__name__ == "AttentionRope" else "eva"
        out["use_post_norm"] = type(block).__name__ == "EvaBlockPostNorm"
        pool = getattr(model, "attn_pool", None)
        if pool is not None:
            out["attn_pool_num_heads"] = pool.num_heads
    return tuple(out.items())


def timm_definition(name: str | None) -> dict[str, Any]:
    """Shape-invisible settings of timm's definition of `name` ({} for names timm does not know)."""
    return dict(_definition(name)) if name else {}


def clear_cache() -> None:
    """Forget the definitions read so far (they are cached per name; a test that patches timm clears them)."""
    timm_model.cache_clear()
    _definition.cache_clear()
