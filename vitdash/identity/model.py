"""Canonical checkpoint -> a runnable timm model, so every page runs timm's own forward code.

The model is built from the inferred `ArchSpec` (never from a guessed model name) and loaded with
`strict=True`: a tensor the architecture does not explain is an error, not a silent drop.
"""
from __future__ import annotations

import functools
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


def _norm(arch: ArchSpec):
    from functools import partial

    from timm.layers import LayerNorm, RmsNorm

    return partial(LayerNorm if arch.norm_type == "layernorm" else RmsNorm, eps=arch.norm_eps)


@functools.lru_cache(maxsize=1)
def post_ln_block():
    """timm's Block with the post-LN forward of the original Transformer, BERT and nn.TransformerEncoderLayer's
    default (norm_first=False): x = norm1(x + attn(x)); x = norm2(x + mlp(x)). timm has no block computing this
    (its ResPostBlock is x + norm1(attn(x)), another function); the subclass keeps Block's modules and names, so
    strict loading and the attention capture work unchanged."""
    from timm.models.vision_transformer import Block

    class PostLNBlock(Block):
        def forward(self, x, attn_mask=None, is_causal=False):
            x = self.norm1(x + self.drop_path1(self.ls1(self.attn(x, attn_mask=attn_mask, is_causal=is_causal))))
            return self.norm2(x + self.drop_path2(self.ls2(self.mlp(x))))

    return PostLNBlock


def _vit_kwargs(arch: ArchSpec) -> dict[str, Any]:
    from timm.layers import SwiGLU, SwiGLUPacked
    from timm.models.vision_transformer import ResPostBlock

    kwargs: dict[str, Any] = dict(
        global_pool=arch.global_pool,
        mlp_ratio=_mlp_ratio(arch.mlp_hidden, arch.embed_dim),
        qkv_bias=arch.qkv_bias,
        proj_bias=arch.proj_bias,
        qk_norm=arch.qk_norm,
        scale_attn_norm=arch.attn_norm,
        scale_mlp_norm=arch.mlp_norm,
        init_values=1e-5 if arch.layer_scale else None,
        class_token=arch.has_class_token,
        pos_embed="learn" if "learned" in arch.pos_embed or "fixed" in arch.pos_embed else "none",
        no_embed_class=arch.no_embed_class,
        reg_tokens=arch.num_reg_tokens,
        pre_norm=arch.pre_norm,
        final_norm=arch.final_norm,
        fc_norm=arch.fc_norm,
        norm_layer=_norm(arch),
        embed_norm_layer=_norm(arch) if arch.patch_norm else None,
        attn_layer=_attention_layer(arch.head_dim, arch.embed_dim, arch.num_heads),
        act_layer=arch.act,
        dynamic_img_size=True,
    )
    if arch.block == "post_norm":
        kwargs["block_fn"] = ResPostBlock
    elif arch.block == "post_ln":
        kwargs["block_fn"] = post_ln_block()
    if arch.mlp_layer == "GluMlp":
        kwargs.update(mlp_layer=SwiGLUPacked, act_layer=nn.SiLU,
                      mlp_ratio=_mlp_ratio(2 * arch.mlp_hidden, arch.embed_dim))
    elif arch.mlp_layer == "SwiGLU":
        kwargs.update(mlp_layer=SwiGLU, act_layer=nn.SiLU)
    return kwargs


def _eva_kwargs(arch: ArchSpec) -> dict[str, Any]:
    args = dict(arch.model_args)
    for key in ("ref_feat_shape", "num_kv_heads"):
        if isinstance(args.get(key), list):
            args[key] = tuple(args[key])
    pool_ratio = _mlp_ratio(arch.pool_mlp_hidden, arch.embed_dim) if arch.global_pool == "map" else None
    return dict(
        global_pool=arch.global_pool, qkv_bias=arch.qkv_bias, qk_norm=arch.qk_norm,
        mlp_ratio=_mlp_ratio(arch.mlp_hidden, arch.embed_dim), swiglu_mlp=arch.mlp_type == "swiglu",
        scale_mlp=arch.mlp_norm, scale_attn_inner=arch.attn_norm, norm_layer=_norm(arch),
        init_values=1e-5 if arch.layer_scale else None, class_token=arch.has_class_token,
        num_reg_tokens=arch.num_reg_tokens, no_embed_class=arch.no_embed_class,
        use_abs_pos_emb="learned" in arch.pos_embed or "fixed" in arch.pos_embed,
        use_pre_transformer_norm=arch.pre_norm, use_post_transformer_norm=arch.final_norm and not arch.fc_norm,
        use_fc_norm=arch.fc_norm, attn_pool_mlp_ratio=pool_ratio, dynamic_img_size=True, **args)


def _beit_kwargs(arch: ArchSpec) -> dict[str, Any]:
    return dict(
        global_pool=arch.global_pool, qkv_bias=arch.qkv_bias, mlp_ratio=_mlp_ratio(arch.mlp_hidden, arch.embed_dim),
        swiglu_mlp=arch.mlp_type == "swiglu", scale_mlp=arch.mlp_norm, norm_layer=_norm(arch),
        init_values=0.1 if arch.layer_scale else 0.0,  # Beit tests truthiness: 0.0 means none
        use_abs_pos_emb="learned" in arch.pos_embed or "fixed" in arch.pos_embed,
        use_rel_pos_bias=arch.rel_pos_bias == "per_block", use_shared_rel_pos_bias=arch.rel_pos_bias == "shared",
        use_fc_norm=arch.fc_norm)


def _naflexvit_cfg(arch: ArchSpec) -> Any:
    from timm.models.naflexvit import NaFlexVitCfg

    args = dict(arch.model_args)
    if isinstance(args.get("pos_embed_grid_size"), list):
        args["pos_embed_grid_size"] = tuple(args["pos_embed_grid_size"])
    return NaFlexVitCfg(**{
        "patch_size": arch.patch_size, "embed_dim": arch.embed_dim, "depth": arch.depth, "num_heads": arch.num_heads,
        "mlp_ratio": _mlp_ratio(arch.mlp_hidden, arch.embed_dim), "qkv_bias": arch.qkv_bias, "qk_norm": arch.qk_norm,
        "proj_bias": arch.proj_bias, "init_values": 1e-5 if arch.layer_scale else None,
        "class_token": arch.has_class_token, "reg_tokens": arch.num_reg_tokens,
        "pos_embed": "learned" if "learned" in arch.pos_embed else "none", "pos_embed_grid_size": arch.grid_size,
        "pre_norm": arch.pre_norm, "final_norm": arch.final_norm, "fc_norm": arch.fc_norm,
        "global_pool": arch.global_pool, "embed_proj_type": "linear", "norm_layer": _norm(arch),
        "embed_norm_layer": _norm(arch) if arch.patch_norm else None, "act_layer": arch.act,
        "scale_mlp_norm": arch.mlp_norm, "scale_attn_inner_norm": arch.attn_norm,
        "attn_pool_mlp_ratio": _mlp_ratio(arch.pool_mlp_hidden, arch.embed_dim) if arch.pool_mlp_hidden else None,
        **args})


def timm_kwargs(arch: ArchSpec, img_size: int | tuple[int, int] | None = None) -> dict[str, Any]:
    """The arguments of `arch.timm_class` that reproduce this architecture exactly."""
    common = dict(img_size=img_size or arch.img_size, patch_size=arch.patch_size, in_chans=arch.in_chans,
                  num_classes=arch.num_classes, embed_dim=arch.embed_dim, depth=arch.depth, num_heads=arch.num_heads)
    if arch.timm_class == "Eva":
        return common | _eva_kwargs(arch)
    if arch.timm_class == "Beit":
        return common | _beit_kwargs(arch)
    if arch.timm_class == "NaFlexVit":
        return dict(cfg=_naflexvit_cfg(arch), in_chans=arch.in_chans, num_classes=arch.num_classes)
    return common | _vit_kwargs(arch)


def _timm_class(arch: ArchSpec) -> type[nn.Module]:
    from timm.models.beit import Beit
    from timm.models.deit import VisionTransformerDistilled
    from timm.models.eva import Eva
    from timm.models.naflexvit import NaFlexVit
    from timm.models.vision_transformer import VisionTransformer

    classes = {"VisionTransformer": VisionTransformer, "VisionTransformerDistilled": VisionTransformerDistilled,
               "Eva": Eva, "Beit": Beit, "NaFlexVit": NaFlexVit}
    if arch.timm_class not in classes:
        raise VitdashError(f"no timm class {arch.timm_class!r} here; known: {', '.join(classes)}")
    return classes[arch.timm_class]


def _instantiate(arch: ArchSpec, weight_init: str = "skip") -> nn.Module:
    """The class built directly (timm.create_model drops None-valued arguments, so a registered recipe's
    LayerScale or embedding norm could not be switched off)."""
    cls = _timm_class(arch)
    kwargs = timm_kwargs(arch)
    if arch.timm_class in ("VisionTransformer", "VisionTransformerDistilled"):
        kwargs["weight_init"] = weight_init
        if arch.has_dist_token:
            kwargs["class_token"] = True  # the distilled class adds its own token on top
    elif arch.timm_class == "NaFlexVit" and weight_init != "skip":  # (it has no 'skip')
        kwargs["cfg"].weight_init = weight_init
    try:
        model = cls(**kwargs)
    except (AssertionError, TypeError, ValueError) as e:
        raise VitdashError(f"timm's {arch.timm_class} cannot be built with the inferred settings: {e}") from None
    if arch.global_pool == "map" and arch.timm_class != "Eva":
        _fit_attention_pool(model, arch, _norm(arch), weight_init)
    if arch.timm_class == "Beit" and not (arch.final_norm or arch.fc_norm):
        model.norm = nn.Identity()  # (Beit has no switch for it: Data2VecVisionModel's files end without a norm)
    proj = getattr(getattr(model, "patch_embed", None), "proj", None)
    if not arch.patch_bias and getattr(proj, "bias", None) is not None:
        proj.bias = None  # bias-free patches without the pre-norm timm ties that to (open_clip's no_ln_pre: CLIPA)
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
    if arch.not_in_timm:
        raise VitdashError("this ViT has parts timm's VisionTransformer cannot compute, so no exact timm model can be "
                           "built (the architecture and the training verdict still hold): "
                           + "; ".join(arch.not_in_timm))
    model = _instantiate(arch)
    state = {k: ckpt.tensors[k].to(dtype) for k in ckpt.tensors}
    if arch.representation_size:
        model.head = PreLogitsHead(arch.embed_dim, arch.representation_size, arch.num_classes)
        state = {_PRE_LOGITS_KEYS.get(k, k): v for k, v in state.items()}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise VitdashError(f"the canonical tensors do not fit timm's {arch.timm_class} built from the inferred "
                           f"architecture: {e}") from None
    if "fixed" in arch.pos_embed and getattr(model, "pos_embed", None) is not None:
        model.pos_embed.requires_grad_(False)  # a computed table (sin-cos), loaded as a non-learned embedding
    return model.to(dtype).eval()


def build_random_twin(ckpt: Checkpoint, arch: ArchSpec | None = None, seed: int = 0) -> nn.Module:
    """The same architecture at timm's default init: the baseline that pretraining must beat."""
    arch = arch or infer_architecture(ckpt)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = _instantiate(arch, weight_init="")
    return model.eval()
