"""Canonical checkpoint -> a runnable timm model, so every page runs timm's own forward code.

The model is built from the inferred `ArchSpec` (never from a guessed model name) and loaded with
`strict=True`: a tensor the architecture does not explain is an error, not a silent drop.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from vitdash.errors import VitdashError
from vitdash.identity.architecture import ArchSpec, infer_architecture
from vitdash.load.checkpoint import Checkpoint

_PRE_LOGITS_KEYS = {"pre_logits.fc.weight": "head.pre_logits.weight", "pre_logits.fc.bias": "head.pre_logits.bias",
                    "head.weight": "head.fc.weight", "head.bias": "head.fc.bias"}


def _attention_layer(head_dim: int, embed_dim: int, num_heads: int):
    """timm's Attention with an explicit head width, for layouts whose q/k/v are wider than the stream."""
    from timm.layers import Attention

    if head_dim * num_heads == embed_dim:
        return Attention

    class WideAttention(Attention):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, attn_head_dim=head_dim, **kwargs)

    return WideAttention


def _mlp_ratio(hidden: int, dim: int) -> float:
    """A ratio that timm turns back into `hidden`: it builds int(dim * ratio) units, and hidden / dim can
    come back a hair below the integer (1408 * (15 / 1408) = 14.999...), which would drop a unit."""
    ratio = hidden / dim
    return ratio if int(dim * ratio) == hidden else (hidden + 0.5) / dim


def timm_kwargs(arch: ArchSpec, img_size: int | tuple[int, int] | None = None) -> dict[str, Any]:
    """The `VisionTransformer(...)` arguments that reproduce this architecture exactly."""
    from functools import partial

    from timm.layers import LayerNorm, RmsNorm, SwiGLUPacked

    norm = partial(LayerNorm if arch.norm_type == "layernorm" else RmsNorm, eps=arch.norm_eps)
    kwargs: dict[str, Any] = dict(
        img_size=img_size or arch.img_size,
        patch_size=arch.patch_size,
        in_chans=arch.in_chans,
        num_classes=arch.num_classes,
        global_pool=arch.global_pool,
        embed_dim=arch.embed_dim,
        depth=arch.depth,
        num_heads=arch.num_heads,
        mlp_ratio=_mlp_ratio(arch.mlp_hidden, arch.embed_dim),
        qkv_bias=arch.qkv_bias,
        proj_bias=arch.proj_bias,
        qk_norm=arch.qk_norm,
        init_values=1e-5 if arch.layer_scale else None,
        class_token=arch.has_class_token,
        no_embed_class=arch.no_embed_class,
        reg_tokens=arch.num_reg_tokens,
        pre_norm=arch.pre_norm,
        final_norm=arch.final_norm,
        fc_norm=arch.fc_norm,
        norm_layer=norm,
        attn_layer=_attention_layer(arch.head_dim, arch.embed_dim, arch.num_heads),
        act_layer=arch.act,
        dynamic_img_size=True,
    )
    if arch.mlp_type == "swiglu":
        kwargs.update(mlp_layer=SwiGLUPacked, act_layer=nn.SiLU,
                      mlp_ratio=_mlp_ratio(2 * arch.mlp_hidden, arch.embed_dim))
    return kwargs


def _instantiate(arch: ArchSpec, weight_init: str = "skip") -> nn.Module:
    from timm.models.deit import VisionTransformerDistilled
    from timm.models.vision_transformer import VisionTransformer

    cls = VisionTransformerDistilled if arch.has_dist_token else VisionTransformer
    kwargs = timm_kwargs(arch)
    if arch.has_dist_token:
        kwargs["class_token"] = True  # the distilled class adds its own token on top
    model = cls(weight_init=weight_init, **kwargs)
    if arch.global_pool == "map":
        _fit_attention_pool(model, arch, kwargs["norm_layer"], weight_init)
    return model


def _fit_attention_pool(model: nn.Module, arch: ArchSpec, norm_layer: Any, weight_init: str) -> None:
    """timm's VisionTransformer builds a 'map' pool with one latent query and the blocks' MLP ratio; a pool
    with other sizes (more queries, its own MLP width) is rebuilt in place, with the same norm, activation,
    heads and init as timm's own."""
    from timm.layers import AttentionPoolLatent
    from timm.models import named_apply
    from timm.models.vision_transformer import get_init_weights_vit

    pool = model.attn_pool
    if pool.latent_len == arch.pool_latent_len and pool.mlp.fc1.out_features == arch.pool_mlp_hidden:
        return
    model.attn_pool = AttentionPoolLatent(
        arch.embed_dim, num_heads=arch.num_heads, mlp_ratio=_mlp_ratio(arch.pool_mlp_hidden, arch.embed_dim),
        latent_len=arch.pool_latent_len, norm_layer=norm_layer, act_layer=type(pool.mlp.act))
    if weight_init != "skip":
        named_apply(get_init_weights_vit(weight_init), model.attn_pool, name="attn_pool", include_root=True)


class PreLogitsHead(nn.Sequential):
    """Linear + Tanh + Linear: the representation layer old ViTs (and torchvision's) put before the head."""

    def __init__(self, embed_dim: int, representation_size: int, num_classes: int):
        super().__init__()
        self.pre_logits = nn.Linear(embed_dim, representation_size)
        self.act = nn.Tanh()
        self.fc = nn.Linear(representation_size, num_classes)


def build_model(ckpt: Checkpoint, arch: ArchSpec | None = None, dtype: torch.dtype = torch.float32) -> nn.Module:
    """A timm ViT in eval mode holding exactly the checkpoint's tensors (strict load)."""
    arch = arch or infer_architecture(ckpt)
    model = _instantiate(arch)
    state = {k: ckpt.tensors[k].to(dtype) for k in ckpt.tensors}
    if arch.representation_size:
        model.head = PreLogitsHead(arch.embed_dim, arch.representation_size, arch.num_classes)
        state = {_PRE_LOGITS_KEYS.get(k, k): v for k, v in state.items()}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise VitdashError(f"the canonical tensors do not fit a timm ViT built from the inferred architecture: {e}")
    return model.to(dtype).eval()


def build_random_twin(ckpt: Checkpoint, arch: ArchSpec | None = None, seed: int = 0) -> nn.Module:
    """The same architecture at timm's default init: the baseline that pretraining must beat."""
    arch = arch or infer_architecture(ckpt)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = _instantiate(arch, weight_init="")
    return model.eval()
