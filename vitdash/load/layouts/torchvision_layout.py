"""torchvision `VisionTransformer` (vit_b_16 family): `conv_proj`, `encoder.layers.encoder_layer_N`."""
from __future__ import annotations

from vitdash.load.layouts.canon import Canon, rename_by_rules

NAME = "torchvision"

_L = r"encoder\.layers\.encoder_layer_(\d+)\."
_RULES = [
    (r"class_token", "cls_token"),
    (r"conv_proj\.(weight|bias)", r"patch_embed.proj.\1"),
    (r"encoder\.pos_embedding", "pos_embed"),
    (_L + r"ln_1\.(weight|bias)", r"blocks.\1.norm1.\2"),
    (_L + r"self_attention\.in_proj_(weight|bias)", r"blocks.\1.attn.qkv.\2"),
    (_L + r"self_attention\.out_proj\.(weight|bias)", r"blocks.\1.attn.proj.\2"),
    (_L + r"ln_2\.(weight|bias)", r"blocks.\1.norm2.\2"),
    (_L + r"mlp\.(?:0|linear_1)\.(weight|bias)", r"blocks.\1.mlp.fc1.\2"),
    (_L + r"mlp\.(?:3|linear_2)\.(weight|bias)", r"blocks.\1.mlp.fc2.\2"),
    (r"encoder\.ln\.(weight|bias)", r"norm.\1"),
    (r"heads\.head\.(weight|bias)", r"head.\1"),
    (r"heads\.pre_logits\.(weight|bias)", r"pre_logits.fc.\1"),
]


def convert(src, meta) -> Canon | None:
    if "conv_proj.weight" not in src or not any(k.startswith("encoder.layers.encoder_layer_") for k in src):
        return None
    canon = Canon(src)
    canon.metadata["norm_eps"] = 1e-6
    rename_by_rules(canon, _RULES)
    return canon
