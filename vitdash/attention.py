"""Where a ViT looks: attention maps, attention rollout and gradient-weighted rollout.

How the maps are obtained. timm's `Attention` computes softmax(q k^T / sqrt(d)) only on its unfused path;
the fused path (`F.scaled_dot_product_attention`) never materializes it, and `timm.layers.set_fused_attn`
is a process-wide switch. timm's own `AttentionExtract` needs that unfused path too (its fx method traces the
`attn.softmax` node, its hook method leaves `FeatureHooks` registered on the model for good). The model
here may be shared by several Streamlit sessions at once, so nothing on it is changed: every computation
runs on a *twin*, a structural deep copy whose parameters and buffers are the original tensors (no weight
copy, ~20 ms for ViT-B), with `fused_attn = False` and a forward hook on each block's `attn_drop` (identity
in eval mode, so its output is exactly the attention probabilities timm computed). On the twin the patch
embedding is made dynamic as timm's `dynamic_img_size=True` does, so inputs at other (also non-square)
resolutions get position embeddings resampled by `timm.layers.resample_abs_pos_embed` each forward.

Models whose head reads an attention pool ('map', SigLIP) are seen from the pool's query: its attention
over the final tokens (recomputed from the pool's own layers: timm never materializes it) weighs their
rollout rows, so the map shows what flows into the pooled features.

Rollout follows Abnar & Zuidema (2020), "Quantifying Attention Flow in Transformers": per layer the heads
are fused (mean/max/min), the lowest `discard_ratio` of entries are dropped per image, the identity is
added for the residual path, rows are renormalized, and the layers are multiplied from `start_layer` up.
The gradient-weighted variant weights each head's attention by the gradient of a class score with respect
to it and keeps the positive part, averaged over heads (Chefer, Gur & Wolf 2021, "Generic
Attention-model Explainability"), then rolls out the same way.
"""
from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np
import torch
from PIL import Image

from vitdash.checkpoint import Checkpoint
from vitdash.errors import VitdashError
from vitdash.evaluate import Preprocessing

HEAD_FUSIONS = ("mean", "max", "min")
SOURCES = ("pool", "cls", "dist", "registers", "patches")
METHODS = ("rollout", "grad_rollout")


# --------------------------------------------------------------------------- token layout


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


def _check_model(model: torch.nn.Module) -> None:
    from timm.layers import Attention
    from timm.models.vision_transformer import VisionTransformer

    if not isinstance(model, VisionTransformer):
        raise VitdashError(f"attention maps need a timm VisionTransformer, got {type(model).__name__}")
    odd = [i for i, blk in enumerate(model.blocks) if not isinstance(getattr(blk, "attn", None), Attention)]
    if odd:
        raise VitdashError(f"blocks {odd} do not use timm's standard Attention; their maps cannot be read")


def token_layout(model: torch.nn.Module, grid: tuple[int, int] | None = None) -> TokenLayout:
    """Prefix tokens from the model itself; `grid` defaults to the native patch grid of the position embedding."""
    _check_model(model)
    has_cls = model.cls_token is not None
    has_dist = getattr(model, "dist_token", None) is not None
    num_reg = int(getattr(model, "num_reg_tokens", 0) or 0)
    npt = int(model.num_prefix_tokens)
    if int(has_cls) + int(has_dist) + num_reg != npt:
        raise VitdashError(f"model declares {npt} prefix tokens but has cls={has_cls}, dist={has_dist}, "
                           f"registers={num_reg}; cannot tell which token is which")
    start = int(has_cls) + int(has_dist)
    pooled = getattr(model, "attn_pool", None) is not None
    return TokenLayout(
        num_prefix_tokens=npt,
        cls_index=0 if has_cls else None,
        dist_index=(1 if has_cls else 0) if has_dist else None,
        reg_indices=tuple(range(start, start + num_reg)),
        grid=tuple(int(g) for g in (grid or model.patch_embed.grid_size)),
        pool_start=(0 if getattr(model, "pool_include_prefix", False) else npt) if pooled else None,
    )


# --------------------------------------------------------------------------- capturing attention


def attention_twin(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of `model` that shares its weights but has unfused attention and a dynamic input size.

    The shared model is never touched (other sessions may be running it, possibly with fused attention).
    """
    from timm.layers import Format

    _check_model(model)
    shared = {id(t): t for t in itertools.chain(model.parameters(), model.buffers())}
    twin = copy.deepcopy(model, shared)
    twin.eval()
    for blk in twin.blocks:
        blk.attn.fused_attn = False
    if not twin.dynamic_img_size:
        # What VisionTransformer(dynamic_img_size=True) sets up: NHWC patches, pos_embed resampled per input.
        twin.dynamic_img_size = True
        twin.patch_embed.strict_img_size = False
        twin.patch_embed.flatten = False
        twin.patch_embed.output_fmt = Format.NHWC
    return twin


def _prepare(model: torch.nn.Module, x: torch.Tensor) -> tuple[torch.nn.Module, TokenLayout]:
    """Check the batch against the model and lay out its tokens; returns the twin that will run it."""
    twin = attention_twin(model)
    pe = twin.patch_embed
    if x.ndim != 4 or x.shape[1] != pe.proj.in_channels:
        raise VitdashError(f"expected a batch of shape (B, {pe.proj.in_channels}, H, W), got {tuple(x.shape)}")
    h, w = x.shape[-2:]
    ph, pw = pe.patch_size
    if not pe.dynamic_img_pad and (h % ph or w % pw or h < ph or w < pw):
        raise VitdashError(f"input {h}x{w} is not a multiple of the patch size {ph}x{pw}")
    return twin, token_layout(twin, pe.dynamic_feat_size((h, w)))


def _run(twin: torch.nn.Module, x: torch.Tensor, on_attention: Callable[[int, torch.Tensor], None]) -> torch.Tensor:
    """Forward the twin, handing each layer's attention (B, heads, N, N) to `on_attention` as it is made."""
    handles = [blk.attn.attn_drop.register_forward_hook(lambda _m, _i, out, i=i: on_attention(i, out))
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


def _pool_query(twin: torch.nn.Module, x: torch.Tensor, layout: TokenLayout, head_fusion: str) -> torch.Tensor:
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
    twin, layout = _prepare(model, x)
    maps: list[torch.Tensor] = []
    out = _run(twin, x, lambda _i, a: maps.append(a.float()))
    return AttentionMaps(maps, out, layout)


# --------------------------------------------------------------------------- rollout math


def fuse_heads(attention: torch.Tensor, head_fusion: str = "mean") -> torch.Tensor:
    """(B, heads, N, N) -> (B, N, N)."""
    if head_fusion == "mean":
        return attention.mean(dim=1)
    if head_fusion == "max":
        return attention.amax(dim=1)
    if head_fusion == "min":
        return attention.amin(dim=1)
    raise VitdashError(f"unknown head fusion {head_fusion!r}; choose one of {', '.join(HEAD_FUSIONS)}")


def discard_lowest(attention: torch.Tensor, discard_ratio: float) -> torch.Tensor:
    """Zero the lowest `discard_ratio` of each image's (N, N) entries (each image on its own).

    topk runs on the smaller side (the kept entries when most are dropped): 4x faster at 1370 tokens.
    """
    b = attention.shape[0]
    flat = attention.reshape(b, -1)
    k = int(flat.shape[1] * discard_ratio)
    if k == 0:
        return attention
    keep = flat.shape[1] - k
    if keep < k:
        top = flat.topk(keep, dim=1, largest=True).indices
        out = torch.zeros_like(flat).scatter(1, top, flat.gather(1, top))
    else:
        out = flat.scatter(1, flat.topk(k, dim=1, largest=False).indices, 0.0)
    return out.reshape(attention.shape)


def _check_discard(discard_ratio: float) -> None:
    if not 0.0 <= discard_ratio < 1.0:
        raise VitdashError(f"discard ratio must be in [0, 1), got {discard_ratio}")


def rollout(fused: Sequence[torch.Tensor], discard_ratio: float = 0.0,
            query: torch.Tensor | None = None) -> torch.Tensor:
    """Attention rollout of head-fused layers (each (B, N, N), first layer first) -> (B, N, N).

    Row i of the result says how much of token i's final representation flows from each input token.
    With `query` (B, k, N), weights over the final tokens (one-hot for a token's own row), only those k
    combinations of rows are computed (B, k, N), multiplying vectors from the last layer down:
    O(depth N^2) instead of O(depth N^3), which matters at 1370 tokens (DINOv2 at 518 px).
    """
    _check_discard(discard_ratio)
    if not fused:
        raise VitdashError("rollout needs at least one layer")
    b, n, _ = fused[0].shape
    eye = torch.eye(n, dtype=torch.float64, device=fused[0].device)

    def residual(layer: torch.Tensor) -> torch.Tensor:
        a = discard_lowest(layer.double(), discard_ratio) + eye
        return a / a.sum(dim=-1, keepdim=True)

    if query is None:
        result = eye.expand(b, n, n).clone()
        for layer in fused:
            result = residual(layer) @ result
    else:
        result = query.double()
        for layer in reversed(fused):
            result = result @ residual(layer)
    return result.float()


def grad_weighted(attention: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """Chefer et al. head fusion: mean over heads of the positive part of grad * attention."""
    return (grad * attention).clamp(min=0).mean(dim=1)


# --------------------------------------------------------------------------- class names and predictions


@dataclass
class Prediction:
    index: int
    probability: float
    label: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "probability": self.probability, "label": self.label}


def class_names(num_classes: int, metadata: dict[str, Any] | None = None) -> list[str] | None:
    """Names for the head's outputs: the checkpoint's own labels first, else ImageNet's when the size matches."""
    metadata = metadata or {}
    config = metadata.get("config") if isinstance(metadata.get("config"), dict) else {}
    id2label = metadata.get("id2label") or config.get("id2label")
    if isinstance(id2label, dict):
        names = _by_index(id2label, num_classes)
        if names:
            return names
    class_to_idx = metadata.get("class_to_idx")
    if isinstance(class_to_idx, dict):
        names = _by_index({v: k for k, v in class_to_idx.items()}, num_classes)
        if names:
            return names
    return _imagenet_names(num_classes)


def _by_index(index_to_name: dict[Any, Any], num_classes: int) -> list[str] | None:
    """The names in index order, if the indices are exactly 0..num_classes-1 (as ints or digit strings)."""
    try:
        named = {int(i): str(name) for i, name in index_to_name.items()}
    except (TypeError, ValueError):
        return None
    return [named[i] for i in range(num_classes)] if sorted(named) == list(range(num_classes)) else None


@cache
def _imagenet_names(num_classes: int) -> list[str] | None:
    """Descriptions of an ImageNet head (1k, 21k, ...) when the output count matches one of timm's subsets."""
    from timm.data import ImageNetInfo, infer_imagenet_subset

    subset = infer_imagenet_subset({"num_classes": num_classes})
    if subset is None:
        return None
    info = ImageNetInfo(subset)
    return [info.index_to_description(i) for i in range(num_classes)]


def top_predictions(logits: torch.Tensor, names: Sequence[str] | None = None, k: int = 5) -> list[Prediction]:
    probs = logits.float().softmax(dim=-1)
    values, indices = probs.topk(min(k, probs.shape[-1]))
    return [Prediction(int(i), float(v), names[int(i)] if names else None) for v, i in zip(values, indices)]


# --------------------------------------------------------------------------- the explanation


@dataclass
class AttentionResult:
    """Where one image's prediction looks, as seen from `source`: a prefix token, the mean of the patches,
    or an attention-pooling head's query (its attention over the final tokens weighs their rows).

    `map` (grid h x w) is the source's rollout row over the patches; `prefix_share` is the rest of that
    row (flow that ends in prefix tokens), so map.sum() + prefix_share == 1. `source_attention` holds the
    source's raw attention in every layer and head (depth, heads, h, w), for the per-head views.
    """

    method: str
    grid: tuple[int, int]
    num_prefix_tokens: int
    layout: TokenLayout
    input_size: tuple[int, int]
    source: str
    head_fusion: str
    discard_ratio: float
    start_layer: int
    map: np.ndarray
    prefix_share: float
    source_attention: np.ndarray = field(repr=False)
    top5: list[Prediction] | None = None
    target_class: int | None = None
    target_label: str | None = None
    image: Image.Image | None = field(default=None, repr=False, compare=False)  # as the model saw it

    @property
    def depth(self) -> int:
        return self.source_attention.shape[0]

    @property
    def num_heads(self) -> int:
        return self.source_attention.shape[1]

    def raw(self, layer: int, head: int | None = None) -> np.ndarray:
        """Raw attention of the source token in one layer: one head, or the heads' mean when head is None."""
        if not 0 <= layer < self.depth:
            raise VitdashError(f"layer must be in 0..{self.depth - 1}, got {layer}")
        if head is None:
            return self.source_attention[layer].mean(axis=0)
        if not 0 <= head < self.num_heads:
            raise VitdashError(f"head must be in 0..{self.num_heads - 1}, got {head}")
        return self.source_attention[layer, head]

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method, "grid": list(self.grid), "num_prefix_tokens": self.num_prefix_tokens,
            "tokens": self.layout.to_dict(), "input_size": list(self.input_size), "source": self.source,
            "head_fusion": self.head_fusion, "discard_ratio": self.discard_ratio, "start_layer": self.start_layer,
            "depth": self.depth, "num_heads": self.num_heads,
            "map": self.map.tolist(), "prefix_share": self.prefix_share,
            "top5": [p.to_dict() for p in self.top5] if self.top5 is not None else None,
            "target_class": self.target_class, "target_label": self.target_label,
        }


def explain(
    model: torch.nn.Module,
    x: torch.Tensor,
    *,
    method: str = "rollout",
    head_fusion: str = "mean",
    discard_ratio: float = 0.0,
    start_layer: int = 0,
    source: str | None = None,
    target_class: int | Sequence[int] | None = None,
    names: Sequence[str] | None = None,
) -> list[AttentionResult]:
    """One forward of a preprocessed batch (B, C, H, W) -> one `AttentionResult` per image.

    `method="rollout"` fuses heads with `head_fusion`; `"grad_rollout"` weights heads by the gradient of the
    logit of `target_class` (per image; default: each image's top-1) and needs a classification head.
    Layers are fused as they are produced, so memory stays at depth x N^2 per image, not depth x heads x N^2.
    """
    if method not in METHODS:
        raise VitdashError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if method == "rollout" and head_fusion not in HEAD_FUSIONS:
        raise VitdashError(f"unknown head fusion {head_fusion!r}; choose one of {', '.join(HEAD_FUSIONS)}")
    _check_discard(discard_ratio)
    _check_model(model)
    depth = len(model.blocks)
    if not 0 <= start_layer < depth:
        raise VitdashError(f"start layer must be in 0..{depth - 1}, got {start_layer}")
    has_head = int(getattr(model, "num_classes", 0) or 0) > 0
    grad = method == "grad_rollout"
    if grad and not has_head:
        raise VitdashError("gradient rollout needs a classification head; this checkpoint has none")

    twin, layout = _prepare(model, x)
    source = source or layout.default_source
    rows = layout.source_rows(source)
    if source == "pool":
        query = _pool_query(twin, x, layout, "mean" if grad else head_fusion)
    else:  # the mean of the source tokens' rows
        query = torch.zeros(x.shape[0], layout.num_tokens, device=x.device)
        query[:, rows] = 1.0 / len(rows)

    fused: list[torch.Tensor] = []
    kept: list[torch.Tensor] = []
    source_rows: list[torch.Tensor] = []

    def on_attention(i: int, attn: torch.Tensor) -> None:
        source_rows.append(torch.einsum("bn,bhnm->bhm", query, attn.detach().float()))
        if i < start_layer:
            return
        if grad:
            kept.append(attn)
        else:
            fused.append(fuse_heads(attn.detach().float(), head_fusion))

    with torch.enable_grad() if grad else torch.no_grad():
        # the input carries the graph, so gradients exist even when the model's weights are frozen
        out = _run(twin, x.detach().requires_grad_(grad), on_attention)
        targets = None
        if grad:
            targets = _targets(out, target_class)
            score = out.gather(1, targets[:, None]).sum()
            grads = torch.autograd.grad(score, kept)
            fused = [grad_weighted(a.detach().float(), g.float()) for a, g in zip(kept, grads)]
    out = out.detach()
    flow = rollout(fused, discard_ratio, query[:, None, :])[:, 0]  # (B, N)
    npt, (gh, gw) = layout.num_prefix_tokens, layout.grid
    raw = torch.stack(source_rows, dim=1)[..., npt:].reshape(x.shape[0], depth, -1, gh, gw)

    results = []
    for b in range(x.shape[0]):
        target = int(targets[b]) if targets is not None else None
        results.append(AttentionResult(
            method=method, grid=(gh, gw), num_prefix_tokens=npt, layout=layout,
            input_size=(int(x.shape[-2]), int(x.shape[-1])), source=source,
            head_fusion="grad_mean" if grad else head_fusion, discard_ratio=float(discard_ratio),
            start_layer=start_layer,
            map=flow[b, npt:].reshape(gh, gw).numpy(), prefix_share=float(flow[b, :npt].sum()),
            source_attention=raw[b].numpy(),
            top5=top_predictions(out[b], names) if has_head else None,
            target_class=target,
            target_label=names[target] if (names and target is not None) else None,
        ))
    return results


def _targets(logits: torch.Tensor, target_class: int | Sequence[int] | None) -> torch.Tensor:
    b, c = logits.shape
    if target_class is None:
        return logits.detach().argmax(dim=1)
    wanted = [target_class] * b if isinstance(target_class, int) else list(target_class)
    if len(wanted) != b or any(not 0 <= int(t) < c for t in wanted):
        raise VitdashError(f"target class must be one index in 0..{c - 1} per image, got {target_class}")
    return torch.tensor([int(t) for t in wanted])


# --------------------------------------------------------------------------- images of a checkpoint


def preprocess(images: Sequence[Image.Image], prep: Preprocessing) -> tuple[torch.Tensor, list[Image.Image]]:
    """The eval transform -> (batch, the resized/cropped images the model saw, for overlays)."""
    from torchvision.transforms import PILToTensor, ToTensor
    from timm.data.transforms import MaybeToTensor

    if not images:
        raise VitdashError("no images to explain")
    transform = prep.transform()
    steps = transform.transforms
    cut = next(i for i, t in enumerate(steps) if isinstance(t, (MaybeToTensor, ToTensor, PILToTensor)))
    converted = [im.convert(prep.pil_mode) for im in images]
    shown = []
    for im in converted:
        for t in steps[:cut]:
            im = t(im)
        shown.append(im)
    return torch.stack([transform(im) for im in converted]), shown


def explain_images(ckpt: Checkpoint, images: Sequence[Image.Image], *, model: torch.nn.Module | None = None,
                   img_size: int | tuple[int, int] | None = None, **settings: Any) -> list[AttentionResult]:
    """Checkpoint + images -> results, each carrying the image as the model saw it (`result.image`).

    Preprocessing is the checkpoint's own (`vitdash.evaluate.resolve_preprocessing`); `img_size` asks for
    another resolution (height, width may differ), rounded down to whole patches. `settings` go to `explain`.
    """
    from vitdash.architecture import infer_architecture
    from vitdash.evaluate import resolve_preprocessing
    from vitdash.model import build_model

    arch = infer_architecture(ckpt)
    model = model if model is not None else build_model(ckpt, arch)
    if isinstance(img_size, int):
        img_size = (img_size, img_size)
    overrides = {"img_size": tuple(img_size)} if img_size is not None else {}
    prep = resolve_preprocessing(ckpt, arch, overrides)
    _, h, w = prep.input_size
    ph, pw = model.patch_embed.patch_size
    if h < ph or w < pw:
        raise VitdashError(f"image size {h}x{w} is smaller than one {ph}x{pw} patch")
    if h % ph or w % pw:  # round down to whole patches (the patch conv would silently drop the rest)
        prep = resolve_preprocessing(ckpt, arch, {**overrides, "img_size": (h // ph * ph, w // pw * pw)})
    batch, shown = preprocess(images, prep)
    names = class_names(arch.num_classes, ckpt.metadata) if arch.num_classes else None
    results = explain(model, batch, names=names, **settings)
    for result, image in zip(results, shown):
        result.image = image
    return results
