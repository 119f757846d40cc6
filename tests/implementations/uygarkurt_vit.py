"""(d) uygarkurt/ViT-PyTorch (YouTube "Vision Transformer in PyTorch from scratch" notebook):
conv patch embedding + nn.TransformerEncoder(norm_first=True, activation="gelu"), dim_feedforward left
at torch's default 2048, embed_dim = patch_size**2 * in_channels (16), 8 heads (head_dim 2); notebook uses 28px, 16px here (speed).
Own modules, same keys/shapes/forward.
"""
import torch
from torch import nn

from tests.implementations.common import make_expected

SOURCE = 'uygarkurt/ViT-PyTorch@56b91411cce40d6aeebc39bd16bfe7c589dcefe6:vit-implementation.ipynb'
PATCH, HEADS, DEPTH = 4, 8, 2      # notebook: NUM_ENCODERS = 4
FF = 2048                          # nn.TransformerEncoderLayer default (HIDDEN_DIM=768 in the notebook is unused)
DROPOUT = 0.001
HEAD = ['mlp_head.']

NOTES = """
* Keys: `embeddings_block.cls_token` with shape (1, in_channels, D) (!), `embeddings_block.position_embeddings`
  (1, N+1, D), `embeddings_block.patcher.0` (Conv2d; `.1` is nn.Flatten(2), no params),
  `encoder_blocks.layers.{i}.{self_attn.in_proj_*, self_attn.out_proj.*, linear1, linear2, norm1, norm2}`,
  `mlp_head.0` (LayerNorm), `mlp_head.1` (Linear).
* norm_first=True => PRE-norm: x = x + attn(norm1(x)); x = x + ff(norm2(x)); GELU (exact) via activation="gelu".
  The TransformerEncoder has no final norm; the head's LayerNorm normalises only the cls token.
* embed_dim is tied to patch_size**2 * in_channels (=16 at patch 4, 1 channel): tiny width, 8 heads of dim 2,
  and a 2048-wide MLP (128x the width) because dim_feedforward was never passed.
* Only works with in_channels=1: the cls_token's second axis is in_channels, so 3 channels would prepend 3
  "cls" tokens and no longer match position_embeddings.
"""


class PatchEmbedding(nn.Module):
    def __init__(self, embed_dim, patch_size, num_patches, dropout, in_channels):
        super().__init__()
        self.patcher = nn.Sequential(nn.Conv2d(in_channels, embed_dim, patch_size, patch_size), nn.Flatten(2))
        self.cls_token = nn.Parameter(torch.randn(1, in_channels, embed_dim))
        self.position_embeddings = nn.Parameter(torch.randn(1, num_patches + 1, embed_dim))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        x = self.patcher(x).permute(0, 2, 1)
        return self.dropout(self.position_embeddings + torch.cat([cls, x], dim=1))


class ViT(nn.Module):
    def __init__(self, num_classes, img_size, in_chans):
        super().__init__()
        dim = PATCH * PATCH * in_chans
        self.embeddings_block = PatchEmbedding(dim, PATCH, (img_size // PATCH) ** 2, DROPOUT, in_chans)
        layer = nn.TransformerEncoderLayer(d_model=dim, nhead=HEADS, dropout=DROPOUT, activation='gelu',
                                           batch_first=True, norm_first=True)
        self.encoder_blocks = nn.TransformerEncoder(layer, num_layers=DEPTH, enable_nested_tensor=False)
        self.mlp_head = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, num_classes))

    def forward(self, x):
        x = self.encoder_blocks(self.embeddings_block(x))
        return self.mlp_head(x[:, 0, :])


def expected(num_classes=10, img_size=16, in_chans=1):
    return make_expected(
        SOURCE, embed_dim=PATCH * PATCH * in_chans, depth=DEPTH, num_heads=HEADS, patch_size=PATCH,
        img_size=img_size, in_chans=in_chans, num_classes=num_classes, class_token=True, pooling='cls',
        pos_embed='learned', pre_norm=True, final_norm=True, activation='gelu', qkv_bias=True,
        mlp_hidden=FF, buffers={}, patch_embed='conv',
        timm_expressible=True,  # pre-norm + GELU + fc_norm-style LN on the cls token (timm: fc_norm)
    )


EXPECTED = expected()


def build(num_classes=10, img_size=16, in_chans=1):
    return ViT(num_classes, img_size, in_chans)
