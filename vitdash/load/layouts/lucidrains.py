"""lucidrains vit-pytorch `ViT`: patches by einops Rearrange + Linear, PreNorm blocks, `to_qkv` without bias.

The Linear over flattened `(p1 p2 c)` patches is exactly a stride-p convolution once reshaped, so the
model becomes a timm ViT. Only the classic layout (Linear right after the Rearrange) is mapped: newer
versions put a LayerNorm on raw patch pixels, which timm's ViT does not have.
"""
from __future__ import annotations

import math

from vitdash.load.layouts.canon import Canon, rename_by_rules

NAME = "vit-pytorch"

_L = r"transformer\.layers\.(\d+)\."
_RULES = [
    (r"cls_token", "cls_token"),
    (r"pos_embedding", "pos_embed"),
    (_L + r"0\.norm\.(weight|bias)", r"blocks.\1.norm1.\2"),
    (_L + r"0\.(?:fn\.)?to_qkv\.(weight|bias)", r"blocks.\1.attn.qkv.\2"),
    (_L + r"0\.(?:fn\.)?to_out\.0\.(weight|bias)", r"blocks.\1.attn.proj.\2"),
    (_L + r"1\.norm\.(weight|bias)", r"blocks.\1.norm2.\2"),
    (_L + r"1\.fn\.net\.0\.(weight|bias)", r"blocks.\1.mlp.fc1.\2"),
    (_L + r"1\.fn\.net\.3\.(weight|bias)", r"blocks.\1.mlp.fc2.\2"),
    (r"transformer\.norm\.(weight|bias)", r"norm.\1"),
    (r"mlp_head\.0\.(weight|bias)", r"norm.\1"),  # old head: LayerNorm then Linear (LN commutes with cls pooling)
    (r"mlp_head\.1\.(weight|bias)", r"head.\1"),
    (r"mlp_head\.(weight|bias)", r"head.\1"),
]


def _patch_geometry(patch_dim: int) -> tuple[int, int] | None:
    """(patch, channels) with patch_dim = patch^2 * channels; 1 or 3 channels can never both fit."""
    for chans in (3, 1):
        if patch_dim % chans == 0 and math.isqrt(patch_dim // chans) ** 2 == patch_dim // chans:
            return math.isqrt(patch_dim // chans), chans
    return None


def convert(src, meta) -> Canon | None:
    key = "to_patch_embedding.1.weight"
    if key not in src or "transformer.layers.0.0.norm.weight" not in src or len(src.shape(key)) != 2:
        return None
    dim, patch_dim = src.shape(key)
    geometry = _patch_geometry(patch_dim)
    if geometry is None:
        return None
    p, c = geometry
    canon = Canon(src)
    canon.put("patch_embed.proj.weight", key, (dim, c, p, p),
              lambda w: w.reshape(dim, p, p, c).permute(0, 3, 1, 2).contiguous())
    canon.rename("patch_embed.proj.bias", "to_patch_embedding.1.bias")
    canon.notes.append(f"patch embedding: Linear over ({p}x{p}x{c}) patches reshaped to a {p}x{p} convolution")
    canon.notes.append("pooling assumed 'cls' (vit-pytorch's default); a model trained with pool='mean' "
                       "cannot be told apart from its weights")
    canon.metadata["norm_eps"] = 1e-5  # nn.LayerNorm default
    rename_by_rules(canon, _RULES)
    return canon
