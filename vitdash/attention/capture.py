"""Capturing the attention probabilities of a timm ViT without changing the (possibly shared) model."""
from __future__ import annotations

import copy
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from vitdash.attention.rollout import fuse_heads
from vitdash.errors import VitdashError

SOURCES = ("pool", "cls", "dist", "registers", "patches")


@dataclass(frozen=True)
class TokenLayout:
    """Where each token sits in the sequence: timm puts class, distillation, then register tokens first.
    `pool_start`: with an attention-pooling head ('map', SigLIP), the first token it reads (timm leaves the
    prefix tokens out unless `pool_include_prefix`); None without one."""

    num_prefix_tokens: int
    cls_index: int | None
    dist_index: int | None
    reg_indices: tuple[int, ...]
    grid: tuple[int, int]
    pool_start: int | None = None

    @property
    def num_tokens(self) -> int:
        return self.num_prefix_tokens + self.grid[0] * self.grid[1]

    @property
    def default_source(self) -> str:
        """What feeds the head: the attention pool's query, else the class token; models pooled by
        averaging look from all patches."""
        return "pool" if self.pool_start is not None else "cls" if self.cls_index is not None else "patches"

    @property
    def available_sources(self) -> tuple[str, ...]:
        present = {"pool": self.pool_start is not None, "cls": self.cls_index is not None,
                   "dist": self.dist_index is not None, "registers": bool(self.reg_indices), "patches": True}
        return tuple(s for s in SOURCES if present[s])

    @property
    def prefix_names(self) -> list[str]:
        """The prefix tokens in words ('class', 'distillation', '4 register')."""
        return ((["class"] if self.cls_index is not None else []) + (["distillation"] if self.dist_index is not None
                else []) + ([f"{len(self.reg_indices)} register"] if self.reg_indices else []))

    def source_rows(self, source: str) -> list[int]:
        """Token indices whose attention rows are averaged to form the map for `source` (for "pool": the
        tokens the pool reads; how it weighs them depends on the image, see `explain`)."""
        if source not in SOURCES:
            raise VitdashError(f"unknown source token {source!r}; choose one of {', '.join(SOURCES)}")
        if source not in self.available_sources:
            raise VitdashError(f"this model has no {source} token; available: {', '.join(self.available_sources)}")
        if source == "pool":
            return list(range(self.pool_start, self.num_tokens))
        if source == "cls":
            return [self.cls_index]
        if source == "dist":
            return [self.dist_index]
        if source == "registers":
            return list(self.reg_indices)
        return list(range(self.num_prefix_tokens, self.num_tokens))

    def to_dict(self) -> dict[str, Any]:
        return {"num_prefix_tokens": self.num_prefix_tokens, "cls_index": self.cls_index,
                "dist_index": self.dist_index, "reg_indices": list(self.reg_indices), "grid": list(self.grid)}


CLASSES = ("VisionTransformer", "VisionTransformerDistilled", "Eva", "Beit", "NaFlexVit")


def check_model(model: torch.nn.Module) -> None:
    """A timm ViT class whose blocks' attention modules expose their probabilities: every timm attention module
    (VisionTransformer's, Eva's with RoPE, BEiT's with its relative bias) computes softmax(q k^T) on its unfused
    path and passes it through `attn_drop`, after the RoPE rotation and any bias were applied."""
    if type(model).__name__ not in CLASSES or not hasattr(model, "blocks"):
        raise VitdashError(f"attention maps need one of timm's ViT classes ({', '.join(CLASSES)}), "
                           f"got {type(model).__name__}")
    odd = [i for i, blk in enumerate(model.blocks)
           if not all(hasattr(getattr(blk, "attn", None), a) for a in ("fused_attn", "attn_drop"))]
    if odd:
        raise VitdashError(f"blocks {odd} do not use a timm attention module with an unfused path "
                           f"({type(getattr(model.blocks[odd[0]], 'attn', model.blocks[odd[0]])).__name__}); "
                           "their maps cannot be read")


def patch_size(model: torch.nn.Module) -> tuple[int, int]:
    embed = getattr(model, "patch_embed", None) or model.embeds
    return tuple(int(p) for p in embed.patch_size)


def input_channels(model: torch.nn.Module) -> int:
    embed = getattr(model, "patch_embed", None) or model.embeds
    return int(embed.in_chans if hasattr(embed, "in_chans") else embed.proj.in_channels)


def native_grid(model: torch.nn.Module) -> tuple[int, int]:
    """The patch grid the model was made for (NaFlexVit: its position table's, which it resizes per image)."""
    if hasattr(model, "patch_embed"):
        return tuple(int(g) for g in model.patch_embed.grid_size)
    return tuple(int(g) for g in model.embeds.pos_embed_grid_size)


def _tokens(model: torch.nn.Module) -> tuple[bool, bool, int]:
    """(class token, distillation token, registers): NaFlexVit keeps its tokens in `embeds`."""
    holder = getattr(model, "embeds", None) if type(model).__name__ == "NaFlexVit" else model
    reg = getattr(holder, "reg_token", None)
    return (getattr(holder, "cls_token", None) is not None, getattr(model, "dist_token", None) is not None,
            int(reg.shape[1]) if reg is not None else 0)


def token_layout(model: torch.nn.Module, grid: tuple[int, int] | None = None) -> TokenLayout:
    """Prefix tokens from the model itself; `grid` defaults to the native patch grid of the position embedding."""
    check_model(model)
    has_cls, has_dist, num_reg = _tokens(model)
    npt = int(model.num_prefix_tokens)
    if int(has_cls) + int(has_dist) + num_reg != npt:
        raise VitdashError(f"model declares {npt} prefix tokens but has cls={has_cls}, dist={has_dist}, "
                           f"registers={num_reg}; cannot tell which token is which")
    grid = grid or native_grid(model)
    start = int(has_cls) + int(has_dist)
    pooled = getattr(model, "attn_pool", None) is not None
    # Eva's pool reads every token (Perception Encoder: the class token too); timm's ViTs leave the prefix out
    with_prefix = type(model).__name__ == "Eva" or getattr(model, "pool_include_prefix", False)
    return TokenLayout(
        num_prefix_tokens=npt,
        cls_index=0 if has_cls else None,
        dist_index=(1 if has_cls else 0) if has_dist else None,
        reg_indices=tuple(range(start, start + num_reg)),
        grid=tuple(int(g) for g in grid),
        pool_start=(0 if with_prefix else npt) if pooled else None,
    )


def attention_twin(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of `model` that shares its weights but has unfused attention and a dynamic input size.

    The shared model is never touched (other sessions may be running it, possibly with fused attention).
    """
    from timm.layers import Format

    check_model(model)
    shared = {id(t): t for t in itertools.chain(model.parameters(), model.buffers())}
    twin = copy.deepcopy(model, shared)
    twin.eval()
    for blk in twin.blocks:
        blk.attn.fused_attn = False
    if hasattr(twin, "dynamic_img_size") and not twin.dynamic_img_size:
        # What dynamic_img_size=True sets up (VisionTransformer, Eva): NHWC patches, position embedding
        # resampled and RoPE computed for each input's grid.
        twin.dynamic_img_size = True
        twin.patch_embed.strict_img_size = False
        twin.patch_embed.flatten = False
        twin.patch_embed.output_fmt = Format.NHWC
    return twin


def prepare_twin(model: torch.nn.Module, x: torch.Tensor) -> tuple[torch.nn.Module, TokenLayout]:
    """Check the batch against the model and lay out its tokens; returns the twin that will run it."""
    twin = attention_twin(model)
    in_chans = input_channels(twin)
    if x.ndim != 4 or x.shape[1] != in_chans:
        raise VitdashError(f"expected a batch of shape (B, {in_chans}, H, W), got {tuple(x.shape)}")
    h, w = x.shape[-2:]
    ph, pw = patch_size(twin)
    pe = getattr(twin, "patch_embed", None)
    if not getattr(pe, "dynamic_img_pad", False) and (h % ph or w % pw or h < ph or w < pw):
        raise VitdashError(f"input {h}x{w} is not a multiple of the patch size {ph}x{pw}")
    grid = pe.dynamic_feat_size((h, w)) if pe is not None else (h // ph, w // pw)
    if not hasattr(twin, "dynamic_img_size") and pe is not None and tuple(grid) != tuple(pe.grid_size):
        raise VitdashError(f"{type(model).__name__}'s relative position tables are for its {pe.img_size[0]}x"
                           f"{pe.img_size[1]} px grid; attention at {h}x{w} px would need them resampled")
    return twin, token_layout(twin, grid)


def run_twin(twin: torch.nn.Module, x: torch.Tensor, on_attention: Callable[[int, torch.Tensor], None],
             on_block: Callable[[int, torch.Tensor], None] | None = None) -> torch.Tensor:
    """Forward the twin, handing each layer's attention (B, heads, N, N) to `on_attention` as it is made, and
    each block's output tokens (B, N, C) to `on_block`."""
    handles = [blk.attn.attn_drop.register_forward_hook(lambda _m, _i, out, i=i: on_attention(i, out))
               for i, blk in enumerate(twin.blocks)]
    if on_block is not None:
        handles += [blk.register_forward_hook(lambda _m, _i, out, i=i: on_block(i, out))
                    for i, blk in enumerate(twin.blocks)]
    try:
        return twin(x.to(next(twin.parameters()).dtype))
    finally:
        for handle in handles:
            handle.remove()


def pool_attention(pool: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Attention of timm's `AttentionPoolLatent` queries over the tokens it reads, x (B, N, C) ->
    (B, heads, queries, N): the few lines of its unfused path, which has no module to hook."""
    b, n, _ = x.shape
    if pool.pos_embed is not None:
        x = x + pool.pos_embed.unsqueeze(0).to(x.dtype)
    q = pool.q(pool.latent.expand(b, -1, -1)).reshape(b, pool.latent_len, pool.num_heads, pool.head_dim)
    k = pool.kv(x).reshape(b, n, 2, pool.num_heads, pool.head_dim)[:, :, 0]
    q, k = pool.q_norm(q.transpose(1, 2)), pool.k_norm(k.transpose(1, 2))
    return ((q * pool.scale) @ k.transpose(-2, -1)).softmax(dim=-1)


def pool_query(twin: torch.nn.Module, x: torch.Tensor, layout: TokenLayout, head_fusion: str) -> torch.Tensor:
    """(B, N) weights over the final tokens: the pool's attention from the query whose output feeds the
    head (the first; all of them averaged when the pool averages), heads fused like the blocks'. It
    depends on the image, so it takes a forward of its own before the one that reads the blocks."""
    seen: dict[str, torch.Tensor] = {}
    handle = twin.attn_pool.register_forward_pre_hook(lambda _m, args: seen.setdefault("x", args[0]))
    try:
        with torch.no_grad():
            twin(x.to(next(twin.parameters()).dtype))
    finally:
        handle.remove()
    with torch.no_grad():
        attn = pool_attention(twin.attn_pool, seen["x"]).float()  # (B, heads, queries, N')
    attn = attn.mean(dim=2, keepdim=True) if twin.attn_pool.pool == "avg" else attn[:, :, :1]
    weights = fuse_heads(attn, head_fusion)[:, 0]
    query = torch.zeros(x.shape[0], layout.num_tokens, device=weights.device)
    query[:, layout.pool_start:] = weights / weights.sum(dim=-1, keepdim=True)
    return query


@dataclass
class AttentionMaps:
    """Every layer's full attention for a batch: `attentions[l]` is (B, heads, N, N), rows sum to 1."""

    attentions: list[torch.Tensor]
    output: torch.Tensor
    layout: TokenLayout


@torch.no_grad()
def attention_maps(model: torch.nn.Module, x: torch.Tensor) -> AttentionMaps:
    """All attention matrices of one forward (memory: depth x heads x N^2 per image; prefer `explain`)."""
    twin, layout = prepare_twin(model, x)
    maps: list[torch.Tensor] = []
    out = run_twin(twin, x, lambda _i, a: maps.append(a.float()))
    return AttentionMaps(maps, out, layout)
