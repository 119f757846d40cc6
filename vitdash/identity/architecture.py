"""The architecture of a canonical checkpoint, read from tensor shapes (and config files where they exist).

A canonical checkpoint holds the state-dict keys of one of timm's ViT classes (`metadata['timm_class']`):
`VisionTransformer` (and DeiT's distilled subclass), `Eva` (EVA-02, DINOv3, RoPE-ViT, Perception Encoder),
`Beit` or `NaFlexVit`. Shapes fix almost everything (width, depth, patch, MLP, tokens, biases, norms, the
position tables); what no shape shows (the head count when q/k/v are as wide as the stream, RoPE settings,
norm eps, the activation) comes from metadata, then timm's definition of a named model, then the layout's
family (`hidden_settings`), each guess said in the notes.

The head count comes, in this order, from: metadata (config.json, timm's pretrained_cfg, the file's own
record); the shapes where a tensor is one head wide (q/k norms, BEiT's relative-bias table, mixed-RoPE
frequencies); the trained weights themselves (`head_split_evidence`); a family member of the same shape;
and last the usual head width of 64. All but the first two are marked `heads_inferred`.
"""
from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from vitdash.errors import VitdashError
from vitdash.identity.heads import attention_width, infer_heads
from vitdash.identity.hidden_settings import Layout, resolve_settings
from vitdash.identity.timm_defs import timm_block, timm_definition, timm_name
from vitdash.load.buffers import is_sincos
from vitdash.load.checkpoint import Checkpoint
from vitdash.load.layouts.timm_layout import PATCH_KEYS, timm_class

_BLOCK_RE = re.compile(r"^blocks\.(\d+)\.")


_SIZE_SUFFIX = re.compile(r"_(\d{2,4})(?:_|$)")


@dataclass
class ArchSpec:
    embed_dim: int
    depth: int
    num_heads: int
    heads_inferred: bool
    head_candidates: list[int]
    head_dim: int
    patch_size: int
    img_size: tuple[int, int]
    grid_size: tuple[int, int]
    in_chans: int
    num_prefix_tokens: int
    num_reg_tokens: int
    has_class_token: bool
    has_dist_token: bool
    no_embed_class: bool
    mlp_hidden: int
    mlp_ratio: float
    mlp_type: str  # 'mlp' (GELU-family) or 'swiglu' (gated: DINOv2-g, AIMv2, EVA-02, DINOv3 S+/H+/7B)
    qkv_bias: bool  # any bias on q/k/v (see attn_bias for which)
    qk_norm: bool
    norm_type: str  # 'layernorm' or 'rmsnorm'
    norm_eps: float
    layer_scale: bool
    global_pool: str  # 'token', 'avg' or 'map' (timm's attention pooling: attn_pool.*)
    fc_norm: bool
    pre_norm: bool
    final_norm: bool
    patch_bias: bool
    num_classes: int
    representation_size: int  # a pre-logits Linear+Tanh before the head (old ViT/torchvision), 0 if none
    num_params: int
    notes: list[str] = field(default_factory=list)
    heads_source: str = "config"  # 'config' | 'shapes' | 'weights' | 'family' | 'guess'
    heads_evidence: dict[str, Any] = field(default_factory=dict)
    proj_bias: bool = True
    mlp_bias: bool = True
    # The 'map' pooling head (timm's AttentionPoolLatent): 0 when there is none.
    pool_latent_len: int = 0  # learned queries (attn_pool.latent); timm pools the first one's output
    pool_mlp_hidden: int = 0  # hidden width of the pool's MLP (attn_pool.mlp.fc1)
    # The MLPs' activation in timm's names (get_act_layer): SigLIP's tanh GELU or CLIP's quick GELU compute other
    # features than the exact GELU, and shapes cannot tell them apart.
    act: str = "gelu"
    # Which timm class holds the tensors and how it places and mixes tokens. `timm_class`, `block` and `pos_embed`
    # are the names issue 13's structural recognizer uses too.
    timm_class: str = "VisionTransformer"  # | 'VisionTransformerDistilled' | 'Eva' | 'Beit' | 'NaFlexVit'
    # 'pre_norm' | 'post_norm' (each sublayer's output normed inside the residual, x + norm(f(x)): EVA-02-E,
    # ResPostBlock) | 'post_ln' (the original Transformer's, BERT's and nn.TransformerEncoderLayer's default,
    # x = norm(x + f(x)), another function)
    block: str = "pre_norm"
    pos_embed: str = "learned"  # 'learned' | 'fixed' | 'rope' | 'relative' | 'none'; several joined by '+'
    attn_bias: str = "qkv"  # 'qkv' | 'qv' (Eva/Beit: the key bias is a fixed zero) | 'none'
    mlp_layer: str = "Mlp"  # timm's MLP class: 'Mlp', 'GluMlp' (SwiGLU packed in fc1), 'SwiGLU' (fc1_g + fc1_x)
    mlp_norm: bool = False  # a norm inside the MLP (EVA-02's scale_mlp)
    attn_norm: bool = False  # a norm on the attention output before its projection (EVA-CLIP's scale_attn_inner)
    patch_norm: bool = False  # a norm after the patch projection (AIMv2)
    rel_pos_bias: str = ""  # BEiT's relative position bias tables: 'per_block' | 'shared' | ''
    # The class's constructor arguments that the fields above do not fix (RoPE variant and settings, attention
    # type...), JSON-ready: with them `model.timm_kwargs` rebuilds the checkpoint exactly.
    model_args: dict[str, Any] = field(default_factory=dict)
    # Parts timm cannot compute (a LayerNorm on raw patch pixels, one norm per block): no exact model is built.
    not_in_timm: list[str] = field(default_factory=list)

    @property
    def attn_dim(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def pooling(self) -> str:
        """Pooling in words: what feeds the head."""
        if self.global_pool == "map":
            queries = "a learned query" if self.pool_latent_len == 1 else f"{self.pool_latent_len} learned queries"
            return f"attention pooling (MAP): {queries} attending over the patch tokens"
        if self.global_pool == "avg":
            return "average of patch tokens" + (" + fc_norm" if self.fc_norm else "")
        return "class token"

    @property
    def tokens(self) -> dict[str, int]:
        """Prefix tokens by kind (DINOv3 calls its registers storage tokens)."""
        return {"class": int(self.has_class_token), "distillation": int(self.has_dist_token),
                "register": self.num_reg_tokens}

    @property
    def mlp_kind(self) -> str:
        """The MLP in words."""
        kind = {"Mlp": f"MLP ({self.act})", "GluMlp": "SwiGLU (gate and value in one fc1)",
                "SwiGLU": "SwiGLU (separate gate fc1_g and value fc1_x)"}.get(self.mlp_layer, self.mlp_layer)
        return kind + (" + inner norm" if self.mlp_norm else "")

    @property
    def structure(self) -> str:
        """The class and what sets this network apart, in words (the Architecture page's line)."""
        rope = {"dinov3": "RoPE (DINOv3's)", "mixed": "RoPE with learned frequencies", "cat": "axial RoPE"}.get(
            self.model_args.get("rope_type"), "RoPE")
        words = {"learned": "learned position table", "fixed": "fixed position table", "rope": rope,
                 "relative": "relative position bias" + (" (shared)" if self.rel_pos_bias == "shared" else ""),
                 "none": "no position encoding"}
        bias = {"qkv": "q/k/v biases", "qv": "q and v biases", "none": "no q/k/v bias"}[self.attn_bias]
        tokens = [f"{n} {kind}" for kind, n in self.tokens.items() if n]
        parts = [f"timm {self.timm_class}", " + ".join(words.get(p, p) for p in self.pos_embed.split("+")),
                 self.mlp_kind, ("LayerNorm" if self.norm_type == "layernorm" else "RMSNorm")
                 + {"post_norm": " inside each residual branch", "post_ln": " after each residual add"}.get(
                     self.block, ""), bias]
        parts += ["LayerScale"] if self.layer_scale else []
        parts += [(" + ".join(tokens) + " token" + ("s" if self.num_prefix_tokens > 1 else "")) if tokens
                  else "no prefix tokens"]
        return " · ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["structure"] = self.structure
        d["attn_dim"] = self.attn_dim
        d["pooling"] = self.pooling
        d["tokens"] = self.tokens
        d["mlp_kind"] = self.mlp_kind
        return d


# transformers' `hidden_act` -> timm's name; gelu_new and gelu_fast are the tanh approximation written out.
_HF_ACTS = {"gelu": "gelu", "gelu_tanh": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu_new": "gelu_tanh", "gelu_fast": "gelu_tanh",
            "quick_gelu": "quick_gelu", "relu": "relu", "silu": "silu", "swish": "silu"}


def _timm_act(name: str) -> str | None:
    """The activation timm's definition of `name` builds, in timm's own name for it."""
    from timm.layers import get_act_layer

    act = getattr(getattr(timm_block(name), "mlp", None), "act", None)
    if act is None:
        return None
    if isinstance(act, torch.nn.GELU):  # timm's default, one class for both functions
        return "gelu_tanh" if act.approximate == "tanh" else "gelu"
    return next((n for n in sorted(set(_HF_ACTS.values())) if get_act_layer(n) is type(act)), None)


def _other_gelus(lay: Layout) -> list[str]:
    """Towers with this key layout whose MLP computes another GELU than the exact one: no shape tells them apart."""
    return ((["OpenAI CLIP's QuickGELU"] if lay.pre_norm else [])
            + (["SigLIP's tanh GELU"] if lay.timm_class == "NaFlexVit" or lay.attn_pool else []))


def _activation(meta: dict[str, Any], lay: Layout, notes: list[str]) -> str:
    """From config.json's `hidden_act` (or the one a layout read from a nested vision config), else timm's
    definition of the named model, else the exact GELU of most ViTs (said where this layout's family has
    another)."""
    config = meta.get("config") if isinstance(meta.get("config"), dict) else {}
    hidden_act = meta.get("hidden_act") or config.get("hidden_act")
    if isinstance(hidden_act, str):
        if hidden_act in _HF_ACTS:
            return _HF_ACTS[hidden_act]
        notes.append(f"the config's activation {hidden_act!r} has no timm equivalent here: GELU assumed")
        return "gelu"
    name = timm_name(meta)
    act = _timm_act(name) if name else None
    if act is None and (others := _other_gelus(lay)):
        notes.append(f"the MLP's activation is not stored: the exact GELU assumed, but {' and '.join(others)} "
                     f"{'have' if len(others) > 1 else 'has'} the same shapes (a config or a timm model name would "
                     "say which)")
    return act or "gelu"


def _grid(num_patches: int, meta_hw: tuple[int, int] | None, patch: int) -> tuple[tuple[int, int], list[str]]:
    """Patch grid from the number of position embeddings; config sizes settle non-square grids."""
    if meta_hw is not None:
        gh, gw = meta_hw[0] // patch, meta_hw[1] // patch
        if gh * gw == num_patches:
            return (gh, gw), ([] if gh == gw else [f"non-square patch grid {gh}x{gw} (from config)"])
    side = math.isqrt(num_patches)
    if side * side == num_patches:
        notes = []
        if meta_hw is not None:
            notes.append(
                f"config says {meta_hw[0]}x{meta_hw[1]} px but the position embedding holds a {side}x{side} grid "
                f"({side * patch} px): it was resized (interpolated) after the config was written, or the model "
                "was built with another image size")
        return (side, side), notes
    # Not square and no config: the most square factorisation is the usual choice (e.g. 14x18).
    best = max(d for d in range(1, side + 1) if num_patches % d == 0)
    return (best, num_patches // best), [
        f"position embedding has {num_patches} patches, not a square: assumed a {best}x{num_patches // best} grid"]


def _meta_img_size(meta: dict[str, Any]) -> tuple[int, int] | None:
    cfg = meta.get("pretrained_cfg")
    if isinstance(cfg, dict) and isinstance(cfg.get("input_size"), (list, tuple)) and len(cfg["input_size"]) == 3:
        return int(cfg["input_size"][1]), int(cfg["input_size"][2])
    config = meta.get("config")
    if isinstance(config, dict):
        size = config.get("image_size")
        if isinstance(size, int):
            return size, size
        if isinstance(size, (list, tuple)) and len(size) == 2:
            return int(size[0]), int(size[1])
    return None


def _name_size_note(meta: dict[str, Any], img_size: tuple[int, int]) -> list[str]:
    """timm names end in their training resolution (vit_base_patch16_384): a different grid was resized."""
    name = timm_name(meta)
    sizes = [int(s) for s in _SIZE_SUFFIX.findall(name or "")]
    if not sizes or sizes[-1] in img_size or _meta_img_size(meta) is not None:
        return []  # a config size already produced its own note
    return [f"the model name {name} says {sizes[-1]} px but the position embedding is for "
            f"{img_size[0]}x{img_size[1]} px: it was resized (interpolated) from the named resolution"]


def _is_square(n: int) -> bool:
    return n > 0 and math.isqrt(n) ** 2 == n


def _rel_table_grid(rows: int) -> tuple[int, int] | None:
    """BEiT's relative-bias table has (2g - 1)^2 + 3 rows for a g x g grid (3: cls-to-patch, patch-to-cls, cls)."""
    side = math.isqrt(rows - 3) if rows > 3 else 0
    return ((side + 1) // 2,) * 2 if side * side == rows - 3 and side % 2 == 1 else None


def _patch_embedding(t, names: set[str], meta: dict[str, Any], notes: list[str]) -> tuple[int, int, int, bool]:
    """(width, input channels, patch size, bias) from the patch projection: a Conv2d, or NaFlexVit's Linear over
    flattened p x p x C patches (which fixes only p * p * C: C from the config, else 3)."""
    key = "patch_embed.proj.weight" if "patch_embed.proj.weight" in names else "embeds.proj.weight"
    shape = t.shape(key)
    bias = key.replace("weight", "bias") in names
    if len(shape) == 4:
        embed_dim, in_chans, ph, pw = shape
        if ph != pw:
            raise VitdashError(f"non-square patches ({ph}x{pw}) are not supported")
        return embed_dim, in_chans, ph, bias
    embed_dim, flat = shape
    config = meta.get("config") if isinstance(meta.get("config"), dict) else {}
    in_chans = int(config.get("num_channels", meta.get("in_chans", 3)))
    side = math.isqrt(flat // in_chans) if flat % in_chans == 0 else 0
    if side * side * in_chans != flat:
        raise VitdashError(f"a linear patch embedding over {flat} inputs is not p x p x {in_chans} patches")
    if "num_channels" not in config and "in_chans" not in meta:
        notes.append(f"the linear patch embedding takes {flat} values per patch: read as {side}x{side} patches of "
                     f"{in_chans} channels")
    return embed_dim, in_chans, side, bias


def _mlp(t, names: set[str]) -> tuple[str, int, bool]:
    """(timm MLP class, hidden width per branch, biased) of block 0."""
    m = "blocks.0.mlp"
    if f"{m}.fc1_g.weight" in names:
        return "SwiGLU", t.shape(f"{m}.fc1_g.weight")[0], f"{m}.fc1_g.bias" in names
    fc1_out, fc2_in = t.shape(f"{m}.fc1.weight")[0], t.shape(f"{m}.fc2.weight")[1]
    return ("GluMlp" if fc1_out == 2 * fc2_in else "Mlp"), fc2_in, f"{m}.fc1.bias" in names


def _attn_bias(names: set[str]) -> str:
    a = "blocks.0.attn"
    if f"{a}.q_bias" in names or (f"{a}.q_proj.bias" in names and f"{a}.k_proj.bias" not in names):
        return "qv"
    return "qkv" if f"{a}.qkv.bias" in names or f"{a}.k_proj.bias" in names else "none"


def _shape_heads(t, names: set[str], attn_dim: int) -> tuple[int, str] | None:
    """Heads wherever a tensor is one head (or a known fraction of one) wide."""
    for key, what in (("blocks.0.attn.q_norm.weight", "the q/k norms are one head wide"),):
        if key in names and attn_dim % t.shape(key)[0] == 0:
            return attn_dim // t.shape(key)[0], what
    for key in ("blocks.0.attn.relative_position_bias_table", "rel_pos_bias.relative_position_bias_table"):
        if key in names:
            return t.shape(key)[1], "the relative position bias table has one column per head"
    if "rope.freqs" in names:
        return t.shape("rope.freqs")[2], "the mixed-RoPE frequency table has one row per head"
    return None


def infer_architecture(ckpt: Checkpoint) -> ArchSpec:
    """Read the ViT hyper-parameters off a canonical (timm-named) checkpoint."""
    if not ckpt.canonical:
        raise VitdashError(
            "the architecture can only be read from a recognized ViT layout; this checkpoint loaded as a generic "
            "tensor set (its warnings say what it looks like instead)")
    t = ckpt.tensors
    names = set(t)
    meta = ckpt.metadata
    cls = timm_class(names, meta)
    for alternatives in (PATCH_KEYS,
                         ("blocks.0.attn.qkv.weight", "blocks.0.attn.q_proj.weight"), ("blocks.0.attn.proj.weight",),
                         ("blocks.0.mlp.fc1.weight", "blocks.0.mlp.fc1_g.weight"), ("blocks.0.mlp.fc2.weight",)):
        if not any(a in names for a in alternatives):
            raise VitdashError(f"no {' or '.join(alternatives)} in the canonical tensors: not a complete ViT")
    notes: list[str] = []
    embed_dim, in_chans, patch, patch_bias = _patch_embedding(t, names, meta, notes)
    depth = 1 + max((int(m.group(1)) for n in names if (m := _BLOCK_RE.match(n))), default=-1)
    emb = "embeds." if cls == "NaFlexVit" else ""

    has_cls = f"{emb}cls_token" in names
    has_dist = "dist_token" in names
    num_reg = t.shape(f"{emb}reg_token")[1] if f"{emb}reg_token" in names else 0
    num_prefix = int(has_cls) + int(has_dist) + num_reg

    meta_hw = _meta_img_size(meta)
    rel_key = next((k for k in ("blocks.0.attn.relative_position_bias_table",
                                "rel_pos_bias.relative_position_bias_table") if k in names), None)
    no_embed_class = False
    if "pos_embed" in names:
        pos_len = t.shape("pos_embed")[1]
        # Registers/cls may or may not carry a position embedding (timm's no_embed_class, DINOv2 with registers).
        no_embed_class = num_prefix > 0 and _is_square(pos_len) and (
            num_reg > 0 or not _is_square(pos_len - num_prefix))
        grid, grid_notes = _grid(pos_len if no_embed_class else pos_len - num_prefix, meta_hw, patch)
        notes += grid_notes
    elif "embeds.pos_embed" in names or "embeds.pos_embed_y" in names:  # NaFlexVit: a 2-D table of patches only
        no_embed_class = True
        grid = ((t.shape("embeds.pos_embed")[1:3]) if "embeds.pos_embed" in names
                else (t.shape("embeds.pos_embed_y")[1], t.shape("embeds.pos_embed_x")[1]))
        grid = tuple(int(g) for g in grid)
    elif rel_key is not None and _rel_table_grid(t.shape(rel_key)[0]):
        grid = _rel_table_grid(t.shape(rel_key)[0])
    else:
        default = timm_definition(timm_name(meta)).get("img_size") or (224, 224)
        hw = meta_hw or tuple(default)
        grid = (hw[0] // patch, hw[1] // patch)
        notes.append(f"no shape depends on the image size (no position table): {hw[0]}x{hw[1]} px from "
                     + ("the config" if meta_hw else "timm's definition" if timm_name(meta) else "the usual 224"))
    img_size = (grid[0] * patch, grid[1] * patch)
    notes += _name_size_note(meta, img_size) if "pos_embed" in names else []

    attn_dim = attention_width(t, 0)
    mlp_layer, mlp_hidden, mlp_bias = _mlp(t, names)
    qk_norm = "blocks.0.attn.q_norm.weight" in names
    head_candidates = [h for h in range(1, attn_dim + 1) if attn_dim % h == 0]
    from_shapes = _shape_heads(t, names, attn_dim)
    if from_shapes is not None and not isinstance(meta.get("num_heads"), int):
        heads, heads_source, heads_evidence = from_shapes[0], "shapes", {"from": from_shapes[1]}
    else:
        heads, heads_source, heads_evidence = infer_heads(ckpt, embed_dim, depth, attn_dim, mlp_hidden, qk_norm,
                                                           head_candidates, notes,
                                                           "mlp" if mlp_layer == "Mlp" else "swiglu")

    has_fc_norm = "fc_norm.weight" in names
    has_pool = "attn_pool.latent" in names
    norm_type = "layernorm" if "blocks.0.norm1.bias" in names else "rmsnorm"
    layout = Layout(
        timm_class=cls, has_class_token=has_cls, num_reg_tokens=num_reg, abs_pos="pos_embed" in names,
        pre_norm="norm_pre.weight" in names, attn_bias=_attn_bias(names), qkv_fused="blocks.0.attn.qkv.weight" in names,
        mlp_layer=mlp_layer, mlp_norm="blocks.0.mlp.norm.weight" in names, norm_type=norm_type,
        layer_scale=bool({"blocks.0.ls1.gamma", "blocks.0.gamma_1"} & names), fc_norm=has_fc_norm, attn_pool=has_pool,
        final_norm="norm.weight" in names, grid=grid, depth=depth, embed_dim=embed_dim, head_dim=attn_dim // heads,
        mixed_rope="rope.freqs" in names, kv_widths=[attention_width(t, i, "k") for i in range(depth)],
        attn_only_layer_scale="blocks.0.gamma_1" in names and "blocks.0.gamma_2" not in names,
        factorized_pos="embeds.pos_embed_y" in names)
    settings = resolve_settings(layout, meta, notes)

    table = "fixed" if "fixed" in str(meta.get("pos_embed", "")) or (
        "pos_embed" in names and is_sincos(t["pos_embed"])) else "learned"  # a computed (sin-cos) table is fixed
    pos = ([table] if "pos_embed" in names or "embeds.pos_embed" in names or "embeds.pos_embed_y" in names
           else []) + (["rope"] if settings.rope else []) + (["relative"] if rel_key else [])
    if meta.get("pos_embed") == "fixed":  # the layout knows the table is a saved sin-cos one (MAE), never trained
        pos = ["fixed" if p == "learned" else p for p in pos]
    num_classes = t.shape("head.weight")[0] if "head.weight" in names else 0
    representation = t.shape("pre_logits.fc.weight")[0] if "pre_logits.fc.weight" in names else 0
    mlp_type = "mlp" if mlp_layer == "Mlp" else "swiglu"
    if mlp_type == "swiglu":
        act = "silu"
    elif cls in ("Eva", "Beit"):
        act = "gelu"  # their Mlp's activation is fixed
    else:
        act = _activation(meta, layout, notes)
    return ArchSpec(
        embed_dim=embed_dim,
        depth=depth,
        num_heads=heads,
        heads_inferred=heads_source not in ("config", "shapes"),
        head_candidates=head_candidates,
        head_dim=attn_dim // heads,
        patch_size=patch,
        img_size=img_size,
        grid_size=grid,
        in_chans=in_chans,
        num_prefix_tokens=num_prefix,
        num_reg_tokens=num_reg,
        has_class_token=has_cls,
        has_dist_token=has_dist,
        no_embed_class=no_embed_class,
        mlp_hidden=mlp_hidden,
        mlp_ratio=mlp_hidden / embed_dim,
        mlp_type=mlp_type,
        qkv_bias=layout.attn_bias != "none",
        qk_norm=qk_norm,
        norm_type=norm_type,
        norm_eps=settings.norm_eps,
        layer_scale=layout.layer_scale,
        global_pool="map" if has_pool else settings.global_pool,
        fc_norm=has_fc_norm,
        pre_norm=layout.pre_norm,
        final_norm="norm.weight" in names or has_fc_norm,
        patch_bias=patch_bias,
        num_classes=num_classes,
        representation_size=representation,
        num_params=ckpt.tensors.num_params,  # the ViT the canonical tensors make (the file may hold more)
        notes=notes,
        heads_source=heads_source,
        heads_evidence=heads_evidence,
        proj_bias="blocks.0.attn.proj.bias" in names,
        mlp_bias=mlp_bias,
        pool_latent_len=t.shape("attn_pool.latent")[1] if has_pool else 0,
        pool_mlp_hidden=t.shape("attn_pool.mlp.fc1.weight")[0] if "attn_pool.mlp.fc1.weight" in names else 0,
        act=act,
        timm_class=cls,
        block="post_ln" if meta.get("block") == "post_ln" else settings.block,
        pos_embed="+".join(pos) or "none",
        attn_bias=layout.attn_bias,
        mlp_layer=mlp_layer,
        mlp_norm=layout.mlp_norm,
        attn_norm="blocks.0.attn.norm.weight" in names,
        patch_norm=f"{'embeds' if emb else 'patch_embed'}.norm.weight" in names,
        rel_pos_bias="" if rel_key is None else ("shared" if rel_key.startswith("rel_pos_bias") else "per_block"),
        model_args=settings.model_args,
        not_in_timm=list(meta.get("not_in_timm", [])),
    )
