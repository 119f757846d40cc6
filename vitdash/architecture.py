"""The architecture of a canonical checkpoint, read from tensor shapes (and config files where they exist).

Shapes fix almost everything (width, depth, patch, MLP, tokens); the head count is the one thing that
shapes cannot tell when q/k/v are as wide as the residual stream, so it comes from metadata when there
is some and is otherwise a marked guess.
"""
from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from vitdash.checkpoint import Checkpoint
from vitdash.errors import VitdashError

_BLOCK_RE = re.compile(r"^blocks\.(\d+)\.")


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
    global_pool: str  # 'token' or 'avg'
    fc_norm: bool
    pre_norm: bool
    final_norm: bool
    patch_bias: bool
    num_classes: int
    representation_size: int  # a pre-logits Linear+Tanh before the head (old ViT/torchvision), 0 if none
    num_params: int
    notes: list[str] = field(default_factory=list)

    @property
    def attn_dim(self) -> int:
        return self.num_heads * self.head_dim

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["attn_dim"] = self.attn_dim
        return d


def _heads_from_metadata(meta: dict[str, Any]) -> int | None:
    """Config files say the head count outright; a timm model name lets timm say it."""
    if isinstance(meta.get("num_heads"), int):
        return meta["num_heads"]
    config = meta.get("config")
    if isinstance(config, dict):
        for key in ("num_attention_heads", "num_heads", "heads"):
            if isinstance(config.get(key), int):
                return config[key]
    name = meta.get("timm_model")
    if isinstance(name, str):
        return _timm_num_heads(name)
    return None


def _timm_num_heads(name: str) -> int | None:
    import timm
    import torch

    if not timm.is_model(name):
        return None
    with torch.device("meta"):
        model = timm.create_model(name, pretrained=False)
    attn = getattr(getattr(model, "blocks", [None])[0], "attn", None)
    return getattr(attn, "num_heads", None)


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
                f"({side * patch} px): it was likely interpolated after the config was written")
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


def infer_architecture(ckpt: Checkpoint) -> ArchSpec:
    """Read the ViT hyper-parameters off a canonical (timm-named) checkpoint."""
    if not ckpt.canonical:
        raise VitdashError(
            "the architecture can only be read from a recognized ViT layout; this checkpoint loaded as a generic "
            "tensor set (see the Overview page's mapping report)")
    t = ckpt.tensors
    names = set(t)
    if "patch_embed.proj.weight" not in names:
        raise VitdashError("no patch embedding (patch_embed.proj.weight) in the canonical tensors")
    embed_dim, in_chans, ph, pw = t.shape("patch_embed.proj.weight")
    if ph != pw:
        raise VitdashError(f"non-square patches ({ph}x{pw}) are not supported")
    depth = 1 + max((int(m.group(1)) for n in names if (m := _BLOCK_RE.match(n))), default=-1)
    if depth == 0:
        raise VitdashError("no transformer blocks (blocks.N.*) in the canonical tensors")

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
        with_prefix = pos_len - num_prefix
        no_embed_class = num_prefix > 0 and math.isqrt(pos_len) ** 2 == pos_len and (
            with_prefix <= 0 or math.isqrt(with_prefix) ** 2 != with_prefix or num_reg > 0)
        num_patches = pos_len if no_embed_class else pos_len - num_prefix
        grid, grid_notes = _grid(num_patches, meta_hw, ph)
        notes += grid_notes
    else:
        no_embed_class = False
        grid = ((meta_hw or (224, 224))[0] // ph, (meta_hw or (224, 224))[1] // ph)
        notes.append("no position embedding: image size taken from the config or assumed 224")

    qkv_out = t.shape("blocks.0.attn.qkv.weight")[0]
    attn_dim = qkv_out // 3
    fc1_out = t.shape("blocks.0.mlp.fc1.weight")[0]
    fc2_in = t.shape("blocks.0.mlp.fc2.weight")[1]
    mlp_type = "swiglu" if fc1_out == 2 * fc2_in else "mlp"

    heads = _heads_from_metadata(meta)
    head_candidates = [h for h in range(1, attn_dim + 1) if attn_dim % h == 0]
    heads_inferred = heads is None
    if heads is None:
        heads = attn_dim // 64 if attn_dim % 64 == 0 else head_candidates[len(head_candidates) // 2]
        notes.append(f"head count not stated anywhere: {heads} is a guess (head width 64); "
                     f"any of {head_candidates} fits the shapes")
    elif attn_dim % heads:
        raise VitdashError(f"metadata says {heads} heads, which does not divide the attention width {attn_dim}")

    has_fc_norm = "fc_norm.weight" in names
    global_pool = "avg" if has_fc_norm or not has_cls else "token"
    num_classes = t.shape("head.weight")[0] if "head.weight" in names else 0
    representation = t.shape("pre_logits.fc.weight")[0] if "pre_logits.fc.weight" in names else 0
    return ArchSpec(
        embed_dim=embed_dim,
        depth=depth,
        num_heads=heads,
        heads_inferred=heads_inferred,
        head_candidates=head_candidates,
        head_dim=attn_dim // heads,
        patch_size=ph,
        img_size=(grid[0] * ph, grid[1] * ph),
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
        qk_norm="blocks.0.attn.q_norm.weight" in names,
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
    )
