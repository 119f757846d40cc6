"""big_vision / original JAX ViT `.npz`: converted by timm's own `_load_weights` into timm names.

The shapes in the file fix the architecture (the attention kernels even carry the head count),
so the timm model is built from them and timm does the (subtle) transposes.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from vitdash.checkpoint import TensorStore
from vitdash.errors import VitdashError
from vitdash.formats import RawCheckpoint


def _prefix(keys: set[str]) -> str:
    for p in ("", "opt/target/", "params/", "img/", "params/img/"):
        if f"{p}embedding/kernel" in keys:
            return p
    raise VitdashError("npz file has no ViT patch embedding ('embedding/kernel'): not a big_vision ViT")


def read(path: Path) -> RawCheckpoint:
    from timm.models.vision_transformer import VisionTransformer

    try:
        w = np.load(path, allow_pickle=False)
        keys = set(w.files)
    except Exception as e:
        raise VitdashError(f"{path.name}: unreadable npz ({e})") from None
    p = _prefix(keys)
    blk = f"{p}Transformer/encoderblock_0/"
    ph, pw, in_chans, dim = w[f"{p}embedding/kernel"].shape
    depth = sum(1 for k in keys if k.startswith(f"{p}Transformer/encoderblock_") and k.endswith("LayerNorm_0/scale"))
    _, heads, _ = w[f"{blk}MultiHeadDotProductAttention_1/query/kernel"].shape
    mlp = w[f"{blk}MlpBlock_3/Dense_0/kernel"].shape[1]
    pos = w[f"{p}Transformer/posembed_input/pos_embedding"].shape[1]
    has_cls = f"{p}cls" in keys
    side = int(round((pos - int(has_cls)) ** 0.5))
    num_classes = w[f"{p}head/kernel"].shape[1] if f"{p}head/kernel" in keys else 0
    model = VisionTransformer(
        img_size=side * ph, patch_size=ph, in_chans=in_chans, embed_dim=dim, depth=depth, num_heads=heads,
        mlp_ratio=mlp / dim, num_classes=num_classes, class_token=has_cls,
        global_pool="token" if has_cls else "avg", weight_init="skip")
    try:
        model.load_pretrained(str(path), prefix=p)
    except Exception as e:
        raise VitdashError(f"{path.name}: timm could not convert this npz ({type(e).__name__}: {e})") from None
    sd = {k: v.detach() for k, v in model.state_dict().items()}
    return RawCheckpoint(TensorStore.from_tensors(sd), "npz", {"num_heads": heads}, [p.rstrip("/")] if p else [],
                         files=[path])
