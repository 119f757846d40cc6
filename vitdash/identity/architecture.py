"""The architecture of a canonical checkpoint, read from tensor shapes (and config files where they exist).

Shapes fix almost everything (width, depth, patch, MLP, tokens); the head count is the one thing that
shapes cannot tell when q/k/v are as wide as the residual stream. It comes, in this order, from:
metadata (config.json, timm's pretrained_cfg, the file's own record); the trained weights themselves
(`head_split_evidence`: a conservation law of training leaves a block structure at the true head
split); a family member of the same shape; and last the usual head width of 64. Everything but the
first is marked `heads_inferred`.
"""
from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from vitdash.errors import VitdashError
from vitdash.identity.heads import infer_heads
from vitdash.identity.timm_defs import timm_block, timm_name
from vitdash.load.checkpoint import Checkpoint

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
    mlp_type: str  # 'mlp' (GELU) or 'swiglu' (packed fc1, as DINOv2-g)
    qkv_bias: bool
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
    heads_source: str = "config"  # 'config' | 'weights' | 'family' | 'guess'
    heads_evidence: dict[str, Any] = field(default_factory=dict)
    proj_bias: bool = True
    mlp_bias: bool = True
    # The 'map' pooling head (timm's AttentionPoolLatent; its heads are the blocks'): 0 when there is none.
    pool_latent_len: int = 0  # learned queries (attn_pool.latent); timm pools the first one's output
    pool_mlp_hidden: int = 0  # hidden width of the pool's MLP (attn_pool.mlp.fc1)
    # The MLPs' activation in timm's names (get_act_layer): SigLIP's tanh GELU or CLIP's quick GELU compute other
    # features than the exact GELU, and shapes cannot tell them apart.
    act: str = "gelu"

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

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["attn_dim"] = self.attn_dim
        d["pooling"] = self.pooling
        return d


# transformers' `hidden_act` -> timm's name; gelu_new and gelu_fast are the tanh approximation written out.
_HF_ACTS = {"gelu": "gelu", "gelu_pytorch_tanh": "gelu_tanh", "gelu_new": "gelu_tanh", "gelu_fast": "gelu_tanh",
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


def _activation(meta: dict[str, Any], notes: list[str]) -> str:
    """From config.json's `hidden_act` (or the one a layout read from a nested vision config), else timm's
    definition of the named model, else the exact GELU of most ViTs."""
    config = meta.get("config") if isinstance(meta.get("config"), dict) else {}
    hidden_act = meta.get("hidden_act") or config.get("hidden_act")
    if isinstance(hidden_act, str):
        if hidden_act in _HF_ACTS:
            return _HF_ACTS[hidden_act]
        notes.append(f"the config's activation {hidden_act!r} has no timm equivalent here: GELU assumed")
        return "gelu"
    name = timm_name(meta)
    return (_timm_act(name) if name else None) or "gelu"


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


def infer_architecture(ckpt: Checkpoint) -> ArchSpec:
    """Read the ViT hyper-parameters off a canonical (timm-named) checkpoint."""
    if not ckpt.canonical:
        raise VitdashError(
            "the architecture can only be read from a recognized ViT layout; this checkpoint loaded as a generic "
            "tensor set (see the Overview page's mapping report)")
    t = ckpt.tensors
    names = set(t)
    for required in ("patch_embed.proj.weight", "blocks.0.attn.qkv.weight", "blocks.0.attn.proj.weight",
                     "blocks.0.mlp.fc1.weight", "blocks.0.mlp.fc2.weight"):
        if required not in names:
            raise VitdashError(f"no {required} in the canonical tensors: not a complete ViT")
    embed_dim, in_chans, ph, pw = t.shape("patch_embed.proj.weight")
    if ph != pw:
        raise VitdashError(f"non-square patches ({ph}x{pw}) are not supported")
    depth = 1 + max((int(m.group(1)) for n in names if (m := _BLOCK_RE.match(n))), default=-1)

    has_cls = "cls_token" in names
    has_dist = "dist_token" in names
    num_reg = t.shape("reg_token")[1] if "reg_token" in names else 0
    num_prefix = int(has_cls) + int(has_dist) + num_reg
    notes: list[str] = []

    meta = ckpt.metadata
    meta_hw = _meta_img_size(meta)
    if "pos_embed" in names:
        pos_len = t.shape("pos_embed")[1]
        # Registers/cls may or may not carry a position embedding (timm's no_embed_class, DINOv2 with registers).
        no_embed_class = num_prefix > 0 and _is_square(pos_len) and (
            num_reg > 0 or not _is_square(pos_len - num_prefix))
        num_patches = pos_len if no_embed_class else pos_len - num_prefix
        grid, grid_notes = _grid(num_patches, meta_hw, ph)
        notes += grid_notes
    else:
        no_embed_class = False
        grid = ((meta_hw or (224, 224))[0] // ph, (meta_hw or (224, 224))[1] // ph)
        notes.append("no position embedding: image size taken from the config or assumed 224")
    img_size = (grid[0] * ph, grid[1] * ph)
    notes += _name_size_note(meta, img_size)

    attn_dim = t.shape("blocks.0.attn.qkv.weight")[0] // 3
    fc1_out = t.shape("blocks.0.mlp.fc1.weight")[0]
    fc2_in = t.shape("blocks.0.mlp.fc2.weight")[1]
    mlp_type = "swiglu" if fc1_out == 2 * fc2_in else "mlp"
    qk_norm = "blocks.0.attn.q_norm.weight" in names

    head_candidates = [h for h in range(1, attn_dim + 1) if attn_dim % h == 0]
    heads, heads_source, heads_evidence = infer_heads(ckpt, embed_dim, depth, attn_dim, fc2_in, qk_norm,
                                                       head_candidates, notes)

    has_fc_norm = "fc_norm.weight" in names
    has_pool = "attn_pool.latent" in names
    global_pool = "map" if has_pool else ("avg" if has_fc_norm or not has_cls else "token")
    num_classes = t.shape("head.weight")[0] if "head.weight" in names else 0
    representation = t.shape("pre_logits.fc.weight")[0] if "pre_logits.fc.weight" in names else 0
    act = "silu" if mlp_type == "swiglu" else _activation(meta, notes)
    return ArchSpec(
        embed_dim=embed_dim,
        depth=depth,
        num_heads=heads,
        heads_inferred=heads_source != "config",
        head_candidates=head_candidates,
        head_dim=attn_dim // heads,
        patch_size=ph,
        img_size=img_size,
        grid_size=grid,
        in_chans=in_chans,
        num_prefix_tokens=num_prefix,
        num_reg_tokens=num_reg,
        has_class_token=has_cls,
        has_dist_token=has_dist,
        no_embed_class=no_embed_class,
        mlp_hidden=fc2_in,
        mlp_ratio=fc2_in / embed_dim,
        mlp_type=mlp_type,
        qkv_bias="blocks.0.attn.qkv.bias" in names,
        qk_norm=qk_norm,
        norm_type="layernorm" if "blocks.0.norm1.bias" in names else "rmsnorm",
        norm_eps=float(meta.get("norm_eps", 1e-6)),
        layer_scale="blocks.0.ls1.gamma" in names,
        global_pool=global_pool,
        fc_norm=has_fc_norm,
        pre_norm="norm_pre.weight" in names,
        final_norm="norm.weight" in names or has_fc_norm,
        patch_bias="patch_embed.proj.bias" in names,
        num_classes=num_classes,
        representation_size=representation,
        num_params=ckpt.num_params,
        notes=notes,
        heads_source=heads_source,
        heads_evidence=heads_evidence,
        proj_bias="blocks.0.attn.proj.bias" in names,
        mlp_bias="blocks.0.mlp.fc1.bias" in names,
        pool_latent_len=t.shape("attn_pool.latent")[1] if has_pool else 0,
        pool_mlp_hidden=t.shape("attn_pool.mlp.fc1.weight")[0] if "attn_pool.mlp.fc1.weight" in names else 0,
        act=act,
    )
