"""OpenAI CLIP and OpenCLIP image towers in their own names (`visual.conv1`, `visual.class_embedding`,
`visual.positional_embedding`, `visual.transformer.resblocks.N.attn.in_proj_weight`, `visual.ln_post`,
`visual.proj`), as open_clip saves a whole CLIP model: the text tower beside them is set aside. Towers open_clip
builds from timm (`visual.trunk.*`, its SigLIP models among them) are timm's own names under that prefix. Meta's
Perception Encoder saves these names too, with LayerScale and an attention pool (`attn_pool.probe`): timm's Eva.

The packed `in_proj` is already timm's [q; k; v]. What shapes cannot tell comes from open_clip's model config
(`open_clip_config.json` beside Hub weights, or the model config itself as config.json): the head width, QuickGELU
(OpenAI's weights) or GELU, the norm eps, and whether `ln_post` normalizes the pooled feature (CLIPA's
`final_ln_after_pool`, timm's fc_norm) or every token (timm's norm).
"""
from __future__ import annotations

import re
from typing import Any

import torch

from vitdash.load.layouts import timm_layout
from vitdash.load.layouts.canon import Canon, rename_by_rules, strip_prefix

NAME = "open_clip"

# open_clip's defaults (OPENAI_DATASET_MEAN/STD serve every open_clip ViT unless its config says otherwise).
_MEAN, _STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
_TRUNK = "visual.trunk."
# OpenAI's TorchScript files record these settings as tensors beside the weights.
_OPENAI_SCALARS = ("input_resolution", "context_length", "vocab_size")


def _rules(p: str, post: str) -> list[tuple[str, str]]:
    block = p + r"transformer\.resblocks\.(\d+)\."
    return [
        (p + r"conv1\.weight", "patch_embed.proj.weight"),
        (p + r"ln_pre\.(weight|bias)", r"norm_pre.\1"),
        (block + r"ln_([12])\.(weight|bias)", r"blocks.\1.norm\2.\3"),
        (block + r"attn\.in_proj_(weight|bias)", r"blocks.\1.attn.qkv.\2"),
        (block + r"attn\.out_proj\.(weight|bias)", r"blocks.\1.attn.proj.\2"),
        (block + r"mlp\.c_fc\.(weight|bias)", r"blocks.\1.mlp.fc1.\2"),
        (block + r"mlp\.c_proj\.(weight|bias)", r"blocks.\1.mlp.fc2.\2"),
        (block + r"ls_([12])\.gamma", r"blocks.\1.ls\2.gamma"),
        (p + r"ln_post\.(weight|bias)", post + r".\1"),
    ]


def _model_config(meta: dict[str, Any]) -> dict[str, Any] | None:
    """open_clip's model config: under `model_cfg` in open_clip_config.json, or a model config as config.json."""
    for cfg in ((meta.get("open_clip_config") or {}).get("model_cfg"), meta.get("config")):
        if isinstance(cfg, dict) and isinstance(cfg.get("vision_cfg"), dict):
            return cfg
    return None


def _preprocessing(canon: Canon, meta: dict[str, Any], vision: dict[str, Any]) -> dict[str, Any]:
    """open_clip's eval transform as a timm pretrained_cfg: shortest side resized to the image size, centre crop."""
    pre = (meta.get("open_clip_config") or {}).get("preprocess_cfg") or {}
    if not pre:
        canon.notes.append("no open_clip preprocess_cfg: open_clip's defaults assumed (OpenAI's mean and std, "
                           "bicubic, shortest side resized and centre-cropped)")
    cfg: dict[str, Any] = {"mean": tuple(pre.get("mean") or _MEAN), "std": tuple(pre.get("std") or _STD),
                           "interpolation": str(pre.get("interpolation") or "bicubic"), "crop_pct": 1.0}
    size = vision.get("image_size")
    if isinstance(size, int):
        cfg["input_size"] = (3, size, size)
    return cfg


def _timm_trunk(src, meta: dict[str, Any]) -> Canon | None:
    """open_clip's timm-backed towers (SigLIP, SigLIP 2 and others): a timm model under `visual.trunk.`, named by
    the config's `timm_model_name`, so timm's own definition says its heads and activation."""
    inner = timm_layout.convert(strip_prefix(src, _TRUNK), meta)
    if inner is None:
        return None
    canon = Canon(src)
    canon.adopt(inner, _TRUNK)
    vision = (_model_config(meta) or {}).get("vision_cfg") or {}
    if vision.get("timm_model_name"):
        canon.metadata["timm_model"] = str(vision["timm_model_name"])
    if vision.get("timm_pool") in ("avg", "token", "map"):
        canon.metadata["global_pool"] = vision["timm_pool"]  # open_clip resets the trunk's pool to it
    canon.metadata["pretrained_cfg"] = _preprocessing(canon, meta, vision)
    canon.set_aside([k for k in src if k.startswith("visual.head.")],
                    "open_clip's projection head into the joint image-text space")
    canon.set_aside([k for k in src if not k.startswith("visual.")], "the text tower and the contrastive scale")
    return canon


def _perception_encoder(canon: Canon, p: str) -> None:
    """Meta's Perception Encoder in its own names (the facebook/PE-* files): a CLIP tower's, with LayerScale
    (`ls_N.gamma`) and an attention pool whose learned probe queries the tokens through one packed in_proj, then
    `proj`. timm builds it as an Eva, whose RoPE (never stored) the architecture takes from the family's layout."""
    src = canon.src
    dim = src.shape(p + "attn_pool.probe")[-1]
    canon.put("attn_pool.latent", p + "attn_pool.probe", src.shape(p + "attn_pool.probe"))
    for part in ("weight", "bias"):
        packed = f"{p}attn_pool.attn.in_proj_{part}"
        shape = src.shape(packed)
        canon.put(f"attn_pool.q.{part}", packed, (dim, *shape[1:]), lambda t: t[:dim])
        canon.put(f"attn_pool.kv.{part}", packed, (shape[0] - dim, *shape[1:]), lambda t: t[dim:])
    rename_by_rules(canon, [(re.escape(p) + r"attn_pool\.attn\.out_proj\.(weight|bias)", r"attn_pool.proj.\1"),
                            (re.escape(p) + r"attn_pool\.layernorm\.(weight|bias)", r"attn_pool.norm.\1"),
                            (re.escape(p) + r"attn_pool\.mlp\.c_fc\.(weight|bias)", r"attn_pool.mlp.fc1.\1"),
                            (re.escape(p) + r"attn_pool\.mlp\.c_proj\.(weight|bias)", r"attn_pool.mlp.fc2.\1"),
                            (re.escape(p) + r"transformer\.resblocks\.(\d+)\.ls_([12])\.gamma",
                             r"blocks.\1.gamma_\2")])
    if p + "proj" in src:  # timm's head: the projection, with the zero bias timm's Linear has
        out = src.shape(p + "proj")[1]
        canon.put("head.weight", p + "proj", (out, dim), lambda w: w.t())
        canon.synthesize("head.bias", (out,), lambda: torch.zeros(out))
    canon.metadata.update(timm_class="Eva", hidden_act="gelu")


def convert(src, meta) -> Canon | None:
    if _TRUNK + "patch_embed.proj.weight" in src:
        return _timm_trunk(src, meta)
    cls = next((k for k in src if k in ("visual.class_embedding", "class_embedding")), None)
    if cls is None or cls[: -len("class_embedding")] + "conv1.weight" not in src:
        return None
    prefix = cls[: -len("class_embedding")]
    canon = Canon(src)
    dim = src.shape(cls)[0]
    canon.put("cls_token", cls, (1, 1, dim), lambda c: c.reshape(1, 1, -1))
    pos = prefix + "positional_embedding"
    canon.put("pos_embed", pos, (1, *src.shape(pos)), lambda p: p[None])
    config = _model_config(meta)
    vision = (config or {}).get("vision_cfg") or {}
    if config is None:
        openai = any(k in src for k in _OPENAI_SCALARS)
        canon.notes.append("no open_clip model config: head count read from the weights, norm eps 1e-5, activation "
                           + ("QuickGELU (the file carries OpenAI's own settings)" if openai else
                              "assumed GELU (OpenAI's weights use QuickGELU; open_clip_config.json would say)"))
        canon.metadata["hidden_act"] = "quick_gelu" if openai else "gelu"
    else:
        canon.metadata["num_heads"] = dim // int(vision.get("head_width", 64))
        canon.metadata["hidden_act"] = "quick_gelu" if config.get("quick_gelu") else "gelu"
    canon.metadata["norm_eps"] = float((vision.get("norm_kwargs") or {}).get("eps", 1e-5))
    canon.metadata["timm_class"] = "VisionTransformer"
    canon.metadata["pretrained_cfg"] = _preprocessing(canon, meta, vision)
    if vision.get("pos_embed_type") == "sin_cos_2d":
        canon.metadata["pos_embed"] = "fixed"
    pool = vision.get("pool_type", "tok")
    post = "fc_norm" if pool == "avg" and vision.get("final_ln_after_pool") else "norm"
    if pool == "avg" and post == "norm":
        canon.metadata["global_pool"] = "avg"  # every token normalized, then the patch tokens averaged
    if prefix + "attn_pool.probe" in src:
        _perception_encoder(canon, prefix)
    rename_by_rules(canon, _rules(re.escape(prefix), post))
    if any(re.match(re.escape(prefix) + r"attn_pool", k) for k in src if k not in canon.used):
        canon.notes.append("CoCa's attentional pooler (attn_pool.*) has no timm counterpart: it is left over, and "
                           "the canonical model pools the class token instead")
    canon.set_aside([prefix + "proj"] if prefix + "proj" in src else [],
                    "the projection into CLIP's joint image-text space (the image feature is the pooled one "
                    "before it)")
    canon.set_aside([k for k in src if k in _OPENAI_SCALARS], "OpenAI's recorded settings (not weights)")
    if prefix:
        canon.set_aside([k for k in src if not k.startswith(prefix) and k not in _OPENAI_SCALARS],
                        "the text tower and the contrastive scale")
    return canon
