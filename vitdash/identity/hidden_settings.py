"""Constructor settings no tensor shows: the RoPE variant and its settings (RoPE buffers are never saved), norm
eps, token or average pooling, post-norm blocks, the attention class when q/k/v carry no bias.

Each comes from, in this order: what the layout read from a config (`metadata['model_args']`, `norm_eps`,
`global_pool`); timm's definition of the model the metadata names; the family whose key layout this is
(DINOv3: class token + 4 or 8 registers and no position table; Perception Encoder: a position table and a
pre-norm; RoPE-ViT: class token, LayerScale and biased q/k/v; EVA-02 otherwise). A prior that changes the
features (RoPE settings, eps) is said in the notes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vitdash.identity.timm_defs import timm_definition, timm_name
from vitdash.load.layouts.timm_layout import named_class


@dataclass(frozen=True)
class Layout:
    """What the keys and shapes show, which the priors key on."""

    timm_class: str
    has_class_token: bool
    num_reg_tokens: int
    abs_pos: bool
    pre_norm: bool
    attn_bias: str
    qkv_fused: bool
    mlp_layer: str
    mlp_norm: bool
    norm_type: str
    layer_scale: bool
    fc_norm: bool
    attn_pool: bool
    final_norm: bool
    grid: tuple[int, int]
    depth: int
    embed_dim: int
    head_dim: int
    mixed_rope: bool
    kv_widths: list[int]
    attn_only_layer_scale: bool = False
    factorized_pos: bool = False  # NaFlexVit's separate row and column tables


@dataclass
class Settings:
    norm_eps: float
    global_pool: str
    block: str  # 'pre_norm' | 'post_norm'
    rope: bool
    model_args: dict[str, Any]


_ROPE_DEFAULTS = dict(use_rot_pos_emb=True, rope_type="cat", rope_temperature=10000.0, rope_grid_offset=0.0,
                      rope_grid_indexing="ij", rope_rotate_half=False, ref_feat_shape=None)
_ROPE_KEYS = tuple(_ROPE_DEFAULTS)


def _eva_family(lay: Layout) -> tuple[str, dict[str, Any]]:
    """The Eva family this key layout belongs to and its settings (timm's eva.py definitions)."""
    if lay.mixed_rope:
        return "RoPE-Mixed", dict(_ROPE_DEFAULTS, rope_type="mixed", rope_grid_indexing="xy", rope_temperature=10.0)
    if lay.abs_pos and lay.attn_bias == "qv" and lay.mlp_layer == "Mlp" and not lay.layer_scale and not lay.mlp_norm:
        return "EVA-01", dict(_ROPE_DEFAULTS, use_rot_pos_emb=False)
    if not lay.abs_pos and lay.has_class_token and lay.num_reg_tokens in (4, 8):
        return "DINOv3", dict(_ROPE_DEFAULTS, rope_type="dinov3", rope_temperature=100.0, rope_rotate_half=True,
                              norm_eps=1e-5 if lay.norm_type == "layernorm" else 1e-6)
    if lay.abs_pos and lay.pre_norm:
        return "Perception Encoder", dict(
            _ROPE_DEFAULTS, rope_grid_indexing="xy", rope_grid_offset=1.0 if lay.has_class_token else 0.0,
            ref_feat_shape=list(lay.grid), norm_eps=1e-5, attn_pool_num_heads=8)
    if lay.has_class_token and not lay.num_reg_tokens and lay.layer_scale and lay.attn_bias == "qkv":
        return "RoPE-ViT", dict(_ROPE_DEFAULTS, rope_grid_indexing="xy", rope_temperature=100.0)
    return "EVA-02", dict(_ROPE_DEFAULTS, ref_feat_shape=[16, 16])  # EVA-02's 224/14 reference grid


def _prior_pool(lay: Layout) -> str:
    """Token or average pooling when no shape shows it: timm's definitions of the key layouts."""
    if lay.timm_class == "Eva":
        token = lay.has_class_token and not lay.fc_norm and (
            (lay.num_reg_tokens == 0 and lay.final_norm) or lay.num_reg_tokens == 8)
        return "token" if token else "avg"
    return "token"


def _eva_args(lay: Layout, prior: dict[str, Any], family: str, given: dict[str, Any], named: dict[str, Any],
              notes: list[str]) -> dict[str, Any]:
    source = {k: given[k] for k in _ROPE_KEYS if k in given} or {k: named[k] for k in _ROPE_KEYS if k in named}
    args = {k: source.get(k, prior[k]) for k in _ROPE_KEYS}
    if lay.mixed_rope:  # the learned frequencies are stored: that much is certain
        args.update(use_rot_pos_emb=True, rope_type="mixed")
    if not source and args["use_rot_pos_emb"] and not lay.mixed_rope:
        shown = ", ".join(f"{k.removeprefix('rope_')} {v}" for k, v in args.items() if k != "use_rot_pos_emb")
        notes.append(f"RoPE is not stored in a checkpoint (its tables are rebuilt from settings): this key layout is "
                     f"{family}'s, so its RoPE is assumed ({shown})")
    elif not source and family == "EVA-01":
        notes.append("no RoPE assumed: this key layout (position table, q/v biases, GELU MLP, no LayerScale) is "
                     "EVA-01's")
    grouped = len(set(lay.kv_widths)) > 1 or lay.kv_widths[0] != lay.embed_dim
    if lay.attn_bias == "qv":
        args["attn_type"] = "eva"
    elif lay.attn_bias == "qkv" or grouped:
        args["attn_type"] = "rope"  # EvaAttention has no key bias; grouped k/v is AttentionRope's
    else:
        args["attn_type"] = given.get("attn_type", named.get("attn_type", "eva"))
    args["qkv_fused"] = lay.qkv_fused
    if lay.mlp_layer == "SwiGLU" and not lay.mlp_norm:
        args["swiglu_align_to"] = 1  # selects the split SwiGLU; the stored width is already aligned
    if lay.attn_only_layer_scale:
        args["attn_only_layer_scale"] = True
    if grouped:
        args["num_kv_heads"] = [w // lay.head_dim for w in lay.kv_widths]
    args["use_post_norm"] = bool(given.get("use_post_norm", named.get("use_post_norm", False)))
    if lay.attn_pool:
        args["attn_pool_num_heads"] = given.get("attn_pool_num_heads", named.get("attn_pool_num_heads",
                                                                                 prior.get("attn_pool_num_heads")))
    return args


def _pool(lay: Layout, meta: dict[str, Any], given: dict[str, Any], named: dict[str, Any]) -> str:
    if lay.attn_pool:
        return "map"
    stated = given.get("global_pool", meta.get("global_pool"))
    if stated in ("token", "avg"):
        return stated
    if lay.fc_norm or not lay.has_class_token:
        return "avg"  # timm builds fc_norm only for average-style pooling; no class token leaves nothing else
    if named.get("global_pool") in ("token", "avg"):
        return named["global_pool"]
    return _prior_pool(lay)


def _eps(lay: Layout, meta: dict[str, Any], given: dict[str, Any], named: dict[str, Any], prior: dict[str, Any],
         notes: list[str]) -> float:
    eps = meta.get("norm_eps", given.get("norm_eps", named.get("norm_eps", prior.get("norm_eps"))))
    if eps is not None:
        return float(eps)
    clip_like = lay.timm_class == "VisionTransformer" and (
        lay.pre_norm or (lay.norm_type == "rmsnorm" and lay.mlp_layer == "SwiGLU"))
    if clip_like:  # CLIP towers and AIMv2 use 1e-5; timm's ViTs 1e-6
        notes.append("norm eps is not stored: 1e-05, as in the CLIP and AIMv2 towers of this layout, is assumed")
        return 1e-5
    return 1e-6


def resolve_settings(lay: Layout, meta: dict[str, Any], notes: list[str]) -> Settings:
    given = meta.get("model_args") if isinstance(meta.get("model_args"), dict) else {}
    name = timm_name(meta)
    named = timm_definition(name) if name and named_class(meta) in (lay.timm_class, None) else {}
    if named.get("timm_class") not in (lay.timm_class, "VisionTransformerDistilled", None):
        named = {}
    family, prior = _eva_family(lay) if lay.timm_class == "Eva" else ("", {})
    args: dict[str, Any] = {}
    if lay.timm_class == "Eva":
        args = _eva_args(lay, prior, family, given, named, notes)
    elif lay.timm_class == "NaFlexVit":
        args = {k: v for k, v in {**named, **given}.items() if k.startswith("pos_embed_")}
        if lay.factorized_pos:
            args["pos_embed"] = "factorized"
    elif lay.abs_pos and lay.pre_norm and not (name or given or meta.get("config") or meta.get("hidden_act")):
        notes.append("no RoPE assumed: read as a CLIP tower, but a Perception Encoder has these keys too (position "
                     "table, pre-norm, biased q/k/v) and rotary embeddings no tensor stores (a config or a timm "
                     "model name would say which)")
    post_norm = bool(args.get("use_post_norm", given.get("use_post_norm", False)))
    return Settings(norm_eps=_eps(lay, meta, given, named, prior, notes), global_pool=_pool(lay, meta, given, named),
                    block="post_norm" if post_norm else "pre_norm", rope=bool(args.get("use_rot_pos_emb")),
                    model_args=args)
