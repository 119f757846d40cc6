"""(e) s-chh/PyTorch-Scratch-Vision-Transformer-ViT `VisionTransformer` (scratch version): separate
`queries` / `keys` / `values` Linears (with bias) + `out_projection` per block, norm/fc layers flat in the block.
Own modules, same keys/shapes/forward (repo defaults except n_layers 6 -> 2 and 16 px instead of 28).
"""
import torch
from torch import nn

from tests.implementations import schh_vit_torch as T
from tests.implementations.schh_vit_torch import EmbedLayer, Classifier, _init

SOURCE = 's-chh/PyTorch-Scratch-Vision-Transformer-ViT@5d66670b8ac7d70f89bce7823c332958edd6de57:model.py'
DIM, DEPTH, HEADS, MUL, PATCH, DROPOUT = 64, 2, 4, 2, 4, 0.1
HEAD = ['classifier.']
TRAIN = dict(steps=500)

NOTES = """
* Keys: `embedding.{conv1, pos_embedding (1,N,D) -- patches only, cls_token}`,
  `encoder.{i}.norm1`, `encoder.{i}.attention.{queries,keys,values,out_projection}`, `encoder.{i}.norm2`,
  `encoder.{i}.fc1`, `encoder.{i}.fc2` (MLP Linears sit directly in the block, no `mlp.` level),
  `norm` (final LN, all tokens), `classifier.fc1` + tanh + `classifier.fc2` on the cls token.
* Pre-norm; attention scores divided by sqrt(head_dim); heads split as (H, head_dim) along the output
  features of each of queries/keys/values (same as timm's qkv split within q, k, v).
* Same embedding quirk as the torch-layer variant: cls token prepended AFTER adding pos_embedding.
"""


class SelfAttention(nn.Module):
    def __init__(self, embed_dim, n_heads):
        super().__init__()
        self.h, self.hd = n_heads, embed_dim // n_heads
        self.queries = nn.Linear(embed_dim, embed_dim)
        self.keys = nn.Linear(embed_dim, embed_dim)
        self.values = nn.Linear(embed_dim, embed_dim)
        self.out_projection = nn.Linear(embed_dim, embed_dim)

    def forward(self, x):
        b, s, e = x.shape
        sp = lambda t: t.reshape(b, s, self.h, self.hd).permute(0, 2, 1, 3)
        q, k, v = sp(self.queries(x)), sp(self.keys(x)), sp(self.values(x))
        a = torch.softmax((q @ k.transpose(-1, -2)) / float(self.hd) ** 0.5, dim=-1)
        return self.out_projection((a @ v).permute(0, 2, 1, 3).reshape(b, s, e))


class Encoder(nn.Module):
    def __init__(self, embed_dim, n_heads, forward_mul, dropout):
        super().__init__()
        self.norm1 = nn.LayerNorm(embed_dim)
        self.attention = SelfAttention(embed_dim, n_heads)
        self.dropout1 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(embed_dim)
        self.fc1 = nn.Linear(embed_dim, embed_dim * forward_mul)
        self.activation = nn.GELU()
        self.fc2 = nn.Linear(embed_dim * forward_mul, embed_dim)
        self.dropout2 = nn.Dropout(dropout)

    def forward(self, x):
        x = x + self.dropout1(self.attention(self.norm1(x)))
        return x + self.dropout2(self.fc2(self.activation(self.fc1(self.norm2(x)))))


class VisionTransformer(nn.Module):
    def __init__(self, num_classes, img_size, in_chans):
        super().__init__()
        self.embedding = EmbedLayer(in_chans, DIM, img_size, PATCH, DROPOUT)
        self.encoder = nn.ModuleList([Encoder(DIM, HEADS, MUL, DROPOUT) for _ in range(DEPTH)])
        self.norm = nn.LayerNorm(DIM)
        self.classifier = Classifier(DIM, num_classes)
        self.apply(_init)

    def forward(self, x):
        x = self.embedding(x)
        for blk in self.encoder:
            x = blk(x)
        return self.classifier(self.norm(x))


EXPECTED = T.EXPECTED


def build(num_classes=10, img_size=16, in_chans=1):
    return VisionTransformer(num_classes, img_size, in_chans)
