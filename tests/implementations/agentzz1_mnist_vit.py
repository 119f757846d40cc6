"""(i) agentzz1/transformer_poc `MNISTViT` (FPGA proof of concept): no class token, mean pooling, POST-norm
blocks built on nn.MultiheadAttention, Linear patch embedding over x.unfold patches, 1 attention head.
Own modules, same keys/shapes/forward (upstream N_LAYERS=1; 2 here).
"""
import torch
from torch import nn
import torch.nn.functional as F

from tests.implementations.common import make_expected

SOURCE = 'agentzz1/transformer_poc@c9e71ee0c750343eaae96851d6c806a3dc13a05e:mnist_poc.py'
PATCH, D, HEADS, FF, LAYERS, DROPOUT = 7, 32, 1, 64, 2, 0.1
HEAD = ['classifier.']

NOTES = """
* Keys: `patch_embed.proj` (Linear 49 -> 32; patches from x.unfold(2,p,p).unfold(3,p,p), flattened (c p1 p2)),
  `pos_embed` (1, 16, 32), `encoder.{i}.attn.{in_proj_weight, in_proj_bias, out_proj.*}` (nn.MultiheadAttention,
  batch_first), `encoder.{i}.ffn.{fc1,fc2}`, `encoder.{i}.norm1`, `encoder.{i}.norm2`, `norm`, `classifier`.
* POST-norm: x = norm1(x + attn(x)); x = norm2(x + fc2(gelu(fc1(x)))); then an extra final `norm`, mean over the
  16 tokens, classifier. 1 head of dim 32. Upstream reshape assumes 1 channel (SEQ_LEN fixed to 16, 28x28 input).
"""


class PatchEmbed(nn.Module):
    def __init__(self, patch, d_model, in_chans):
        super().__init__()
        self.patch = patch
        self.proj = nn.Linear(in_chans * patch * patch, d_model)

    def forward(self, x):
        b, c, p = x.shape[0], x.shape[1], self.patch
        x = x.unfold(2, p, p).unfold(3, p, p)                       # B C gh gw p p
        x = x.permute(0, 2, 3, 1, 4, 5).reshape(b, -1, c * p * p)   # == upstream reshape when C == 1
        return self.proj(x)


class PostLNFFN(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(D, FF)
        self.fc2 = nn.Linear(FF, D)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class PostLNEncoderLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn = nn.MultiheadAttention(D, HEADS, dropout=DROPOUT, batch_first=True)
        self.ffn = PostLNFFN()
        self.norm1 = nn.LayerNorm(D)
        self.norm2 = nn.LayerNorm(D)
        self.drop = nn.Dropout(DROPOUT)

    def forward(self, x):
        x = self.norm1(x + self.drop(self.attn(x, x, x)[0]))
        return self.norm2(x + self.drop(self.ffn(x)))


class MNISTViT(nn.Module):
    def __init__(self, num_classes, img_size, in_chans):
        super().__init__()
        self.patch_embed = PatchEmbed(PATCH, D, in_chans)
        self.pos_embed = nn.Parameter(torch.zeros(1, (img_size // PATCH) ** 2, D))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.encoder = nn.Sequential(*[PostLNEncoderLayer() for _ in range(LAYERS)])
        self.norm = nn.LayerNorm(D)
        self.classifier = nn.Linear(D, num_classes)

    def forward(self, x):
        x = self.encoder(self.patch_embed(x) + self.pos_embed)
        return self.classifier(self.norm(x).mean(dim=1))


def expected(num_classes=10, img_size=28, in_chans=1):
    return make_expected(
        SOURCE, embed_dim=D, depth=LAYERS, num_heads=HEADS, patch_size=PATCH, img_size=img_size,
        in_chans=in_chans, num_classes=num_classes, class_token=False, pooling='mean',
        pos_embed='learned', pre_norm=False, final_norm=True, activation='gelu', qkv_bias=True,
        mlp_hidden=FF, buffers={}, patch_embed='linear', patch_flatten='(c p1 p2)', timm_expressible=False,
    )


EXPECTED = expected()


def build(num_classes=10, img_size=28, in_chans=1):
    return MNISTViT(num_classes, img_size, in_chans)
