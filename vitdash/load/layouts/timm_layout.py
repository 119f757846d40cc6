"""timm's own names for its ViT classes: `VisionTransformer` (also DeiT, DeiT III `gamma_N`, the original DINOv2
repo's keys, and the attention-pooling head `attn_pool.*` of SigLIP-style 'map' models), `Eva` (EVA-02, DINOv3,
RoPE-ViT, Perception Encoder: q/v biases, unfused q/k/v, SwiGLU `fc1_g`/`fc1_x`, `gamma_N`, mixed-RoPE
frequencies), `Beit` (relative position bias tables) and `NaFlexVit` (`embeds.*`).

The class is recorded as `metadata['timm_class']`: key names settle it where only one class has them; a timm
model name in the metadata settles the key-identical cases (a Perception Encoder has a CLIP ViT's keys); a RoPE
layout (LayerScale `gamma_N` without any position table) is an Eva.
"""
from __future__ import annotations

from typing import Any

from vitdash.load.layouts.canon import Canon, rename_by_rules

NAME = "timm"

_COMMON = [
    (r"(cls_token|dist_token|reg_token|pos_embed)", r"\1"),
    (r"patch_embed\.(proj|norm)\.(weight|bias)", r"patch_embed.\1.\2"),
    (r"(norm_pre|norm|fc_norm|head|head_dist)\.(weight|bias)", r"\1.\2"),
    (r"pre_logits\.fc\.(weight|bias)", r"pre_logits.fc.\1"),
    (r"blocks\.(\d+)\.(norm1|norm2)\.(weight|bias)", r"blocks.\1.\2.\3"),
    (r"blocks\.(\d+)\.attn\.(qkv|proj|q_norm|k_norm|norm|q_proj|k_proj|v_proj)\.(weight|bias)",
     r"blocks.\1.attn.\2.\3"),
    (r"blocks\.(\d+)\.attn\.(q_bias|v_bias|relative_position_bias_table)", r"blocks.\1.attn.\2"),
    (r"blocks\.(\d+)\.(ls1|ls2)\.gamma", r"blocks.\1.\2.gamma"),
    (r"blocks\.(\d+)\.mlp\.(fc1|fc2|fc1_g|fc1_x|norm)\.(weight|bias)", r"blocks.\1.mlp.\2.\3"),
    (r"blocks\.(\d+)\.mlp\.w12\.(weight|bias)", r"blocks.\1.mlp.fc1.\2"),  # DINOv2 SwiGLU
    (r"blocks\.(\d+)\.mlp\.w3\.(weight|bias)", r"blocks.\1.mlp.fc2.\2"),
    (r"attn_pool\.latent", r"attn_pool.latent"),
    (r"attn_pool\.(q|kv|proj|norm)\.(weight|bias)", r"attn_pool.\1.\2"),
    (r"attn_pool\.mlp\.(fc1|fc2)\.(weight|bias)", r"attn_pool.mlp.\1.\2"),
    (r"rel_pos_bias\.relative_position_bias_table", r"rel_pos_bias.relative_position_bias_table"),
    (r"rope\.freqs", r"rope.freqs"),
    (r"embeds\.(proj|norm|norm_input)\.(weight|bias)", r"embeds.\1.\2"),
    (r"embeds\.(cls_token|reg_token|pos_embed|pos_embed_x|pos_embed_y)", r"embeds.\1"),
]
# DeiT III's own files name LayerScale `gamma_N`, timm's VisionTransformer `lsN.gamma`; Eva and Beit keep `gamma_N`.
_VIT_GAMMA = [(r"blocks\.(\d+)\.gamma_([12])", r"blocks.\1.ls\2.gamma")]
_EVA_GAMMA = [(r"blocks\.(\d+)\.gamma_([12])", r"blocks.\1.gamma_\2")]

PATCH_KEYS = ("patch_embed.proj.weight", "embeds.proj.weight")  # every class's patch projection (NaFlexVit: embeds)
CLASSES = ("VisionTransformer", "VisionTransformerDistilled", "Eva", "Beit", "NaFlexVit")
_MODULE_CLASSES = {"eva": "Eva", "beit": "Beit", "naflexvit": "NaFlexVit", "vision_transformer": "VisionTransformer",
                   "deit": "VisionTransformer"}


def named_class(meta: dict[str, Any]) -> str | None:
    """The class of the timm model the metadata names (from timm's registry: nothing is built)."""
    import timm
    from timm.models import model_entrypoint

    cfg = meta.get("pretrained_cfg") if isinstance(meta.get("pretrained_cfg"), dict) else {}
    name = meta.get("timm_model") or cfg.get("architecture")
    if not isinstance(name, str) or not timm.is_model(name.split(".")[0]):
        return None
    return _MODULE_CLASSES.get(model_entrypoint(name.split(".")[0]).__module__.rsplit(".", 1)[-1])


def timm_class(names: set[str], meta: dict[str, Any]) -> str:
    """Which timm class these state-dict keys belong to (see the module docstring)."""
    if isinstance(meta.get("timm_class"), str) and meta["timm_class"] in CLASSES:
        return meta["timm_class"]
    if "embeds.proj.weight" in names:
        return "NaFlexVit"
    if any(k.endswith("relative_position_bias_table") for k in names):
        return "Beit"
    if "dist_token" in names:
        return "VisionTransformerDistilled"
    named = named_class(meta)
    if "blocks.0.attn.q_bias" in names:
        return "Beit" if named == "Beit" else "Eva"
    if "blocks.0.attn.q_proj.weight" in names or "rope.freqs" in names:
        return "Eva"
    if named in ("Eva", "VisionTransformer"):
        return named
    if "blocks.0.gamma_1" in names and "pos_embed" not in names:
        return "Eva"  # LayerScale in timm's Eva names and no position table: RoPE (RoPE-ViT, DINOv3)
    return "VisionTransformer"


def convert(src, meta) -> Canon | None:
    names = set(src)
    if not (set(PATCH_KEYS) & names
            and {"blocks.0.attn.qkv.weight", "blocks.0.attn.q_proj.weight"} & names):
        return None
    canon = Canon(src)
    cls = timm_class(names, meta)
    canon.metadata["timm_class"] = cls
    if "register_tokens" in src and "cls_token" in src and "pos_embed" in src:
        # Original DINOv2 with registers: registers carry no position; timm folds cls's position into it.
        pos = src.shape("pos_embed")
        canon.put("cls_token", ["cls_token", "pos_embed"], src.shape("cls_token"), lambda c, p: c + p[:, :1])
        canon.put("pos_embed", "pos_embed", (pos[0], pos[1] - 1, pos[2]), lambda p: p[:, 1:])
        canon.rename("reg_token", "register_tokens")
    rename_by_rules(canon, _COMMON + (_EVA_GAMMA if cls in ("Eva", "Beit") else _VIT_GAMMA))
    canon.set_aside([k for k in src if k == "mask_token"], "the mask token of masked-image pretraining")
    canon.set_aside([k for k in src if k.endswith("relative_position_index")],
                    "index tables timm rebuilds from the patch grid (stored by older timm and the original BEiT)")
    return canon
