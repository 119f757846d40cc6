"""MAE pretraining checkpoints: facebookresearch/mae's (`{'model': ...}`, the encoder already in timm's names) and
Hugging Face's `ViTMAEForPreTraining` (`vit.*`, the ViT names of `hf`). The encoder is the canonical model; the
decoder that reconstructs masked patches (`decoder_*`, `mask_token`; `decoder.*` in transformers) is set aside as
what it is, since no inference path uses it.

MAE's position embeddings are a fixed 2-D sin-cos table saved with the weights (never trained): recorded as
such, so a table that looks structured at initialization is not read as learned.
"""
from __future__ import annotations

import re
from typing import Any

from vitdash.load.layouts import hf, timm_layout
from vitdash.load.layouts.canon import Canon

NAME = "mae"

_DECODER = re.compile(r"(?:mask_token|decoder_(?:embed|pos_embed|blocks|norm|pred)\b.*|decoder\..*)")
# models_mae.py's encoders: mae_vit_{base,large,huge}_patch{16,14}[_dec512d8b].
_MAE_NAME = re.compile(r"mae_vit_(base|large|huge)_patch(\d+)")
_MAE_HEADS = {"base": 12, "large": 16, "huge": 16}


def _is_mae(src, meta: dict[str, Any]) -> bool:
    config = meta.get("config") if isinstance(meta.get("config"), dict) else {}
    args = meta.get("args") if isinstance(meta.get("args"), dict) else {}
    return (config.get("model_type") == "vit_mae" or bool(_MAE_NAME.match(str(args.get("model", ""))))
            or any(k.startswith(("decoder_embed.", "decoder.decoder_embed.")) for k in src))


def convert(src, meta) -> Canon | None:
    if not _is_mae(src, meta):
        return None
    canon = timm_layout.convert(src, meta) or hf.convert(src, meta)
    if canon is None:
        return None
    canon.set_aside([k for k in src if _DECODER.fullmatch(k)],
                    "MAE's pretraining decoder (it reconstructs masked patches; the encoder is the model)")
    canon.metadata["pos_embed"] = "fixed"
    canon.metadata["timm_class"] = "VisionTransformer"
    args = meta.get("args") if isinstance(meta.get("args"), dict) else {}
    if (found := _MAE_NAME.match(str(args.get("model", "")))) and "num_heads" not in canon.metadata:
        size, patch = found.groups()
        canon.metadata["num_heads"] = _MAE_HEADS[size]
        canon.notes.append(f"{args['model']}: MAE's ViT-{size[0].upper()}/{patch} encoder, {_MAE_HEADS[size]} heads")
    return canon
