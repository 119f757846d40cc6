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

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image

from vitdash.attention.artifacts import LAST_BLOCKS, Artifacts, find_artifacts, treat
from vitdash.attention.capture import (
    TokenLayout,
    check_model,
    input_channels,
    patch_size,
    pool_query,
    prepare_twin,
    run_twin,
    token_layout,
)
from vitdash.attention.overlay import overlay_picture, upscale
from vitdash.attention.rollout import HEAD_FUSIONS, check_discard_ratio, fuse_heads, grad_weighted, rollout
from vitdash.data.transforms import Preprocessing
from vitdash.errors import VitdashError
from vitdash.identity.architecture import infer_architecture
from vitdash.identity.model import build_model
from vitdash.identity.preprocessing import resolve_preprocessing
from vitdash.load.checkpoint import Checkpoint
from vitdash.perform.domain import head_names

METHODS = ("rollout", "grad_rollout")


@dataclass(frozen=True)
class Anatomy:
    """What the attention views need to know of a built model before any image: read off timm's modules here,
    so no page reaches into them."""

    depth: int
    num_heads: int
    patch: tuple[int, int]
    in_chans: int
    num_classes: int
    layout: TokenLayout
    class_names: list[str] | None  # the head's outputs in words, when known

    def describe(self) -> str:
        (gh, gw), (ph, pw) = self.layout.grid, self.patch
        return (f"{self.depth} layers x {self.num_heads} heads, patch {ph}x{pw}, native grid {gh}x{gw} "
                f"({gh * ph}x{gw * pw} px); prefix tokens: {', '.join(self.layout.prefix_names) or 'none'}")


def anatomy(model: torch.nn.Module, ckpt: Checkpoint | None = None) -> Anatomy:
    """The model's layers, heads, patch, input channels, head size, token layout and class names (the
    checkpoint's own, or those of the data set it says it was trained on: `head_names`)."""
    layout = token_layout(model)
    n = int(getattr(model, "num_classes", 0) or 0)
    chans = input_channels(model)
    size = tuple(g * p for g, p in zip(layout.grid, patch_size(model)))
    return Anatomy(len(model.blocks), int(model.blocks[0].attn.num_heads), patch_size(model), chans, n, layout,
                   head_names(ckpt, n, size, chans) if (n and ckpt is not None) else None)


@dataclass
class Prediction:
    index: int
    probability: float
    label: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "probability": self.probability, "label": self.label}


def top_predictions(logits: torch.Tensor, names: Sequence[str] | None = None, k: int = 5) -> list[Prediction]:
    probs = logits.float().softmax(dim=-1)
    values, indices = probs.topk(min(k, probs.shape[-1]))
    return [Prediction(int(i), float(v), names[int(i)] if names else None) for v, i in zip(values, indices)]


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
    token_norms: np.ndarray | None = field(default=None, repr=False)  # (last blocks, h, w) patch-token norms

    def artifacts(self, values: np.ndarray | None = None) -> Artifacts:
        """Hot patches of `values` (default: the rollout map) and high-norm tokens of this forward."""
        return find_artifacts(self.map if values is None else values, self.token_norms)

    def picture(self, values: np.ndarray | None = None, *, artifacts: str = "saturate", colormap: str = "Jet",
                opacity: float = 0.5, clip: float = 1.0, caption: Sequence[str] = ()) -> tuple[Image.Image, Artifacts]:
        """The overlay people see (page, report, CLI): `values` (default: the rollout map) on the image as the
        model saw it, hot patches and high-norm tokens treated as `artifacts` says ('saturate' by default, so
        the colour range shows the rest) and outlined, with a colour bar and `caption` lines under it."""
        values = self.map if values is None else values
        found = self.artifacts(values)
        shown = treat(values, found.marked, artifacts)
        return overlay_picture(upscale(self.image), shown, colormap=colormap, opacity=opacity, clip=clip,
                               marked=found.marked, caption=caption), found

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

    def shown(self, layer: int | None = None, head: int | None = None) -> np.ndarray:
        """The rollout map, or with a layer that layer's raw attention (one head, or their mean)."""
        return self.map if layer is None else self.raw(layer, head)

    def describe(self, layer: int | None = None, head: int | None = None) -> str:
        """How `shown(layer, head)` was made, in words."""
        if layer is None:
            return f"{self.head_fusion}, discard {self.discard_ratio:g}, from layer {self.start_layer}"
        return f"layer {layer}, " + ("mean of heads" if head is None else f"head {head}")

    def notes(self, layer: int | None = None, head: int | None = None) -> list[str]:
        """The input's grid and size, how much of what `shown(layer, head)` shows goes to prefix tokens (of the
        rollout, or of that layer's raw attention), and the class whose gradients weighed it."""
        (gh, gw), (h, w) = self.grid, self.input_size
        if layer is None:
            share = f"{self.prefix_share:.1%} of the rollout ends in prefix tokens"
        else:
            share = (f"{max(0.0, 1.0 - float(self.raw(layer, head).sum())):.1%} of layer {layer}'s attention "
                     f"({'mean of heads' if head is None else f'head {head}'}) goes to prefix tokens")
        lines = [f"{gh}x{gw} patches at {h}x{w} px; {share}"]
        if self.target_class is not None:
            lines.append(f"gradients of class {self.target_class}"
                         + (f" ({self.target_label})" if self.target_label else ""))
        return lines

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method, "grid": list(self.grid), "num_prefix_tokens": self.num_prefix_tokens,
            "tokens": self.layout.to_dict(), "input_size": list(self.input_size), "source": self.source,
            "head_fusion": self.head_fusion, "discard_ratio": self.discard_ratio, "start_layer": self.start_layer,
            "depth": self.depth, "num_heads": self.num_heads,
            "map": self.map.tolist(), "prefix_share": self.prefix_share,
            "top5": [p.to_dict() for p in self.top5] if self.top5 is not None else None,
            "target_class": self.target_class, "target_label": self.target_label,
            "artifacts": self.artifacts().to_dict(),
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
    check_discard_ratio(discard_ratio)
    check_model(model)
    depth = len(model.blocks)
    if not 0 <= start_layer < depth:
        raise VitdashError(f"start layer must be in 0..{depth - 1}, got {start_layer}")
    has_head = int(getattr(model, "num_classes", 0) or 0) > 0
    grad = method == "grad_rollout"
    if grad and not has_head:
        raise VitdashError("gradient rollout needs a classification head; this checkpoint has none")

    twin, layout = prepare_twin(model, x)
    source = source or layout.default_source
    rows = layout.source_rows(source)
    if source == "pool":
        query = pool_query(twin, x, layout, "mean" if grad else head_fusion)
    else:  # the mean of the source tokens' rows
        query = torch.zeros(x.shape[0], layout.num_tokens, device=x.device)
        query[:, rows] = 1.0 / len(rows)

    fused: list[torch.Tensor] = []
    kept: list[torch.Tensor] = []
    source_rows: list[torch.Tensor] = []
    norms: list[torch.Tensor] = []  # patch-token norms of the last LAST_BLOCKS blocks, (B, N - prefix) each
    npt, (gh, gw) = layout.num_prefix_tokens, layout.grid

    def on_block(i: int, tokens: torch.Tensor) -> None:
        if i >= depth - LAST_BLOCKS:
            norms.append(tokens.detach().float().norm(dim=-1)[:, npt:])

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
        out = run_twin(twin, x.detach().requires_grad_(grad), on_attention, on_block)
        targets = None
        if grad:
            targets = _targets(out, target_class)
            score = out.gather(1, targets[:, None]).sum()
            grads = torch.autograd.grad(score, kept)
            fused = [grad_weighted(a.detach().float(), g.float()) for a, g in zip(kept, grads)]
    out = out.detach()
    flow = rollout(fused, discard_ratio, query[:, None, :])[:, 0]  # (B, N)
    raw = torch.stack(source_rows, dim=1)[..., npt:].reshape(x.shape[0], depth, -1, gh, gw)
    token_norms = torch.stack(norms, dim=1).reshape(x.shape[0], len(norms), gh, gw)

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
            token_norms=token_norms[b].numpy(),
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


def preprocess(images: Sequence[Image.Image], prep: Preprocessing) -> tuple[torch.Tensor, list[Image.Image]]:
    """The eval transform -> (batch, the resized/cropped images the model saw, for overlays)."""
    from timm.data.transforms import MaybeToTensor
    from torchvision.transforms import PILToTensor, ToTensor

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


QUICK_LOOK_PX = 224


def quick_look(ckpt: Checkpoint, image: Image.Image, model: torch.nn.Module | None = None) -> AttentionResult:
    """One image's rollout at min(native, QUICK_LOOK_PX) px, whole patches: a thumbnail that answers "where does
    it look?" in about a second even for a 518-px backbone (timm interpolates the position embedding)."""
    arch = infer_architecture(ckpt)
    p = arch.patch_size
    size = tuple(max(p, min(s, QUICK_LOOK_PX) // p * p) for s in arch.img_size)
    return explain_images(ckpt, [image], model=model, img_size=None if size == tuple(arch.img_size) else size)[0]


def explain_images(ckpt: Checkpoint, images: Sequence[Image.Image], *, model: torch.nn.Module | None = None,
                   img_size: int | tuple[int, int] | None = None, **settings: Any) -> list[AttentionResult]:
    """Checkpoint + images -> results, each carrying the image as the model saw it (`result.image`).

    Preprocessing is the checkpoint's own (`vitdash.identity.preprocessing.resolve_preprocessing`); `img_size` asks for
    another resolution (height, width may differ), rounded down to whole patches. `settings` go to `explain`.
    """

    arch = infer_architecture(ckpt)
    model = model if model is not None else build_model(ckpt, arch)
    if isinstance(img_size, int):
        img_size = (img_size, img_size)
    overrides = {"img_size": tuple(img_size)} if img_size is not None else {}
    prep = resolve_preprocessing(ckpt, arch, overrides)
    _, h, w = prep.input_size
    ph, pw = patch_size(model)
    if h < ph or w < pw:
        raise VitdashError(f"image size {h}x{w} is smaller than one {ph}x{pw} patch")
    if h % ph or w % pw:  # round down to whole patches (the patch conv would silently drop the rest)
        prep = resolve_preprocessing(ckpt, arch, {**overrides, "img_size": (h // ph * ph, w // pw * pw)})
    batch, shown = preprocess(images, prep)
    names = head_names(ckpt, arch.num_classes, arch.img_size, arch.in_chans)
    results = explain(model, batch, names=names, **settings)
    for result, image in zip(results, shown):
        result.image = image
    return results
