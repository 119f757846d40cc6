"""(d) nn.TransformerEncoder ViT with a Linear over torch-unfolded patches, mean pooling, no cls token,
everything else at torch's nn.TransformerEncoderLayer defaults (post-norm, ReLU, dropout 0.1).

Pattern reproduction (no single upstream file): the unfold-then-Linear patching is the one in
agentzz1/transformer_poc mnist_poc.py; the encoder is the stock torch layer used with its defaults as in
many tutorial ViTs. Flatten order here is (c p1 p2) -- channel SLOWEST -- which is what
x.unfold(2,p,p).unfold(3,p,p) + permute(0,2,3,1,4,5) gives; timm/lucidrains use (p1 p2 c).
"""
import torch
from torch import nn

from tests.implementations.common import make_expected

SOURCE = ('pattern: agentzz1/transformer_poc@c9e71ee0c750343eaae96851d6c806a3dc13a05e:mnist_poc.py (unfold patching) '
          '+ torch==2.14.1 nn.TransformerEncoderLayer defaults')
DIM, DEPTH, HEADS, MLP, PATCH = 64, 2, 4, 128, 8
HEAD = ['head.']

NOTES = """
* Keys: `patch_proj` (Linear C*P*P -> D, input flattened (c p1 p2)), `pos_embedding` (1, N, D),
  `encoder.layers.{i}.{self_attn.in_proj_weight, self_attn.in_proj_bias, self_attn.out_proj.*, linear1, linear2,
  norm1, norm2}`, `head`. POST-norm, ReLU, no final norm after the stack (the last norm2 is the last LN),
  mean over tokens, Linear head.
* A Linear patch embedding with (c p1 p2) order maps onto a timm Conv2d patch_embed by a plain reshape
  (D, C*P*P) -> (D, C, P, P); (p1 p2 c) needs a permute. Indistinguishable when C == 1.
"""


class UnfoldViT(nn.Module):
    def __init__(self, num_classes, img_size, in_chans):
        super().__init__()
        self.p = PATCH
        self.patch_proj = nn.Linear(in_chans * PATCH * PATCH, DIM)
        self.pos_embedding = nn.Parameter(torch.randn(1, (img_size // PATCH) ** 2, DIM) * 0.02)
        layer = nn.TransformerEncoderLayer(d_model=DIM, nhead=HEADS, dim_feedforward=MLP, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers=DEPTH, enable_nested_tensor=False)
        self.head = nn.Linear(DIM, num_classes)

    def patches(self, x):
        b, c = x.shape[:2]
        x = x.unfold(2, self.p, self.p).unfold(3, self.p, self.p)       # B C gh gw p p
        x = x.permute(0, 2, 3, 1, 4, 5).reshape(b, -1, c * self.p * self.p)  # B N (c p1 p2)
        return x

    def forward(self, x):
        x = self.patch_proj(self.patches(x)) + self.pos_embedding
        return self.head(self.encoder(x).mean(dim=1))


def expected(num_classes=10, img_size=32, in_chans=1):
    return make_expected(
        SOURCE, embed_dim=DIM, depth=DEPTH, num_heads=HEADS, patch_size=PATCH, img_size=img_size,
        in_chans=in_chans, num_classes=num_classes, class_token=False, pooling='mean',
        pos_embed='learned', pre_norm=False, final_norm=False, activation='relu', qkv_bias=True,
        mlp_hidden=MLP, buffers={}, patch_embed='linear', patch_flatten='(c p1 p2)', timm_expressible=False,
    )


EXPECTED = expected()


def build(num_classes=10, img_size=32, in_chans=1):
    return UnfoldViT(num_classes, img_size, in_chans)
