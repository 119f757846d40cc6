"""big_vision / original JAX ViT `.npz`: converted by timm's own `_load_weights` into timm names.

The shapes in the file fix the architecture (the attention kernels even carry the head count), so a
timm `VisionTransformer` is built from them and timm's loader does the (subtle) transposes. Both
layouts timm reads are covered: the original ViT release (`Transformer/posembed_input`, blocks with
`MultiHeadDotProductAttention_1`) and big_vision (`params/` prefix, top-level `pos_embedding`, blocks
possibly stacked under `Transformer/encoderblock/` by `nn.scan`, optional MAP head).
"""
from __future__ import annotations

import math
import zipfile
from pathlib import Path

import numpy as np

from vitdash.errors import VitdashError
from vitdash.load.checkpoint import TensorStore
from vitdash.load.formats.raw import RawCheckpoint

_PREFIXES = ("", "opt/target/", "params/", "params/img/", "img/")


def _prefix(keys: set[str], name: str) -> str:
    for p in _PREFIXES:
        if f"{p}embedding/kernel" in keys:
            return p
    shown = ", ".join(sorted(keys)[:6])
    raise VitdashError(f"{name}: npz has no ViT patch embedding ('embedding/kernel'), so it is not a JAX/big_vision "
                       f"ViT (keys: {shown})")


def _architecture(w, keys: set[str], p: str) -> tuple[dict, bool]:
    """VisionTransformer kwargs from the arrays' shapes (mirrors the branches of timm's `_load_weights`),
    and whether the layout is big_vision's."""
    big_vision = p.startswith("params/") or f"{p}pos_embedding" in keys or \
        f"{p}Transformer/encoderblock/LayerNorm_0/scale" in keys
    scanned = f"{p}Transformer/encoderblock/LayerNorm_0/scale" in keys
    mha = "MultiHeadDotProductAttention_0" if big_vision else "MultiHeadDotProductAttention_1"
    mlp_block = "MlpBlock_0" if big_vision else "MlpBlock_3"
    if scanned:
        blk, depth = f"{p}Transformer/encoderblock/", w[f"{p}Transformer/encoderblock/LayerNorm_0/scale"].shape[0]
    else:
        blk = f"{p}Transformer/encoderblock_0/"
        depth = sum(1 for k in keys
                    if k.startswith(f"{p}Transformer/encoderblock_") and k.endswith("/LayerNorm_0/scale"))
    if not depth:
        raise VitdashError("no transformer blocks (Transformer/encoderblock_N) found")
    ph, pw, in_chans, dim = w[f"{p}embedding/kernel"].shape
    query = w[f"{blk}{mha}/query/kernel"].shape[-3:]  # (dim, heads, head_dim), after the scan axis if any
    heads, head_dim = query[1], query[2]
    if heads * head_dim != dim:
        raise VitdashError(f"attention width {heads}x{head_dim} differs from the embedding width {dim}: "
                           "timm's VisionTransformer cannot hold it")
    mlp = w[f"{blk}{mlp_block}/Dense_0/kernel"].shape[-1]
    pos = w[f"{p}pos_embedding" if big_vision else f"{p}Transformer/posembed_input/pos_embedding"].shape
    has_cls = f"{p}cls" in keys
    tokens = pos[1] - (0 if big_vision else int(has_cls))  # big_vision keeps no position for the class token
    side = math.isqrt(tokens)
    if ph != pw or side * side != tokens:
        raise VitdashError(f"position table of {pos[1]} tokens with {ph}x{pw} patches: not a square grid")
    pool = "map" if f"{p}MAPHead_0/probe" in keys else ("token" if has_cls else "avg")
    return dict(img_size=side * ph, patch_size=ph, in_chans=in_chans, embed_dim=dim, depth=depth, num_heads=heads,
                mlp_ratio=mlp / dim, num_classes=w[f"{p}head/kernel"].shape[-1] if f"{p}head/kernel" in keys else 0,
                # fc_norm=False keeps `norm` as the final norm whatever the pooling: timm loads encoder_norm there.
                class_token=has_cls, global_pool=pool, fc_norm=False, no_embed_class=big_vision and has_cls,
                weight_init="skip"), big_vision


def read(path: Path) -> RawCheckpoint:
    from timm.models.vision_transformer import VisionTransformer

    try:
        w = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise VitdashError(f"{path.name}: unreadable npz ({e})") from None
    if not isinstance(w, np.lib.npyio.NpzFile):
        raise VitdashError(f"{path.name}: a single numpy array, not an .npz archive of named weights")
    with w:
        keys = set(w.files)
        p = _prefix(keys, path.name)
        try:
            kwargs, big_vision = _architecture(w, keys, p)
        except VitdashError as e:
            raise VitdashError(f"{path.name}: {e}") from None
        except (KeyError, ValueError, IndexError) as e:
            raise VitdashError(f"{path.name}: incomplete JAX ViT npz ({type(e).__name__}: {e})") from None
    try:
        model = VisionTransformer(**kwargs)
        model.load_pretrained(str(path), prefix=p)
    except Exception as e:  # noqa: BLE001 - any failure inside timm's converter means "this npz is not convertible"
        raise VitdashError(f"{path.name}: timm could not convert this npz ({type(e).__name__}: {e})") from None
    sd = {k: v.detach() for k, v in model.state_dict().items()}
    warnings = []
    if f"{p}pre_logits/kernel" in keys:
        warnings.append("the npz has a pre-logits (representation) layer that timm's converter drops; head "
                        "outputs of the converted model differ from the original's")
    meta = {"num_heads": kwargs["num_heads"], "npz_layout": "big_vision" if big_vision else "vit_jax",
            "global_pool": kwargs["global_pool"]}
    return RawCheckpoint(TensorStore.from_tensors(sd), "npz", meta, [p.rstrip("/")] if p else [], warnings,
                         files=[path])
