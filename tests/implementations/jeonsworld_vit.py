"""(e) jeonsworld/ViT-pytorch `VisionTransformer` (popular port that loads Google's .npz weights):
separate `query`/`key`/`value` Linears with bias + `out`, `attention_norm` / `ffn_norm`, `encoder_norm`.
Own modules, same keys/shapes/forward; tiny config (hidden 64, mlp 128, 4 heads, 2 layers, patch 8).
"""
import math

import torch
from torch import nn
import torch.nn.functional as F

from tests.implementations.common import make_expected

SOURCE = 'jeonsworld/ViT-pytorch@460a162767de1722a014ed2261463dbbc01196b6:models/modeling.py'
DIM, DEPTH, HEADS, MLP, PATCH = 64, 2, 4, 128, 8
HEAD = ['head.']

NOTES = """
* Keys: `transformer.embeddings.patch_embeddings.{weight,bias}` (the Conv2d IS `patch_embeddings`, no `.proj`),
  `transformer.embeddings.{position_embeddings (1,N+1,D), cls_token}`,
  `transformer.encoder.layer.{i}.{attention_norm, ffn_norm}`, `...attn.{query,key,value,out}`,
  `...ffn.{fc1,fc2}`, `transformer.encoder.encoder_norm`, `head`.
* Pre-norm, LN eps 1e-6, exact GELU, cls pooling after encoder_norm. Identical function to timm's ViT
  (q/k/v/out map to qkv (concatenated [q;k;v]) / proj).
* Original forward returns (logits, attn_weights) (or a loss when labels are given); we return logits.
  Upstream `Embeddings` hard-codes in_channels=3 (Transformer never passes it); 1-channel models need that edit.
* Init: Mlp fc weights xavier_uniform, biases normal(std 1e-6); cls_token and position_embeddings zeros;
  other Linears torch default. `head` zero-init only when `zero_head=True` in load_from.
"""


class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.h, self.hd = HEADS, DIM // HEADS
        self.query = nn.Linear(DIM, DIM)
        self.key = nn.Linear(DIM, DIM)
        self.value = nn.Linear(DIM, DIM)
        self.out = nn.Linear(DIM, DIM)

    def forward(self, x):
        b, n, _ = x.shape
        sp = lambda t: t.view(b, n, self.h, self.hd).permute(0, 2, 1, 3)
        q, k, v = sp(self.query(x)), sp(self.key(x)), sp(self.value(x))
        a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(self.hd), dim=-1)
        return self.out((a @ v).permute(0, 2, 1, 3).reshape(b, n, DIM))


class Mlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(DIM, MLP)
        self.fc2 = nn.Linear(MLP, DIM)
        nn.init.xavier_uniform_(self.fc1.weight)
        nn.init.xavier_uniform_(self.fc2.weight)
        nn.init.normal_(self.fc1.bias, std=1e-6)
        nn.init.normal_(self.fc2.bias, std=1e-6)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.attention_norm = nn.LayerNorm(DIM, eps=1e-6)
        self.ffn_norm = nn.LayerNorm(DIM, eps=1e-6)
        self.ffn = Mlp()
        self.attn = Attention()

    def forward(self, x):
        x = x + self.attn(self.attention_norm(x))
        return x + self.ffn(self.ffn_norm(x))


class Embeddings(nn.Module):
    def __init__(self, img_size, in_chans):
        super().__init__()
        n = (img_size // PATCH) ** 2
        self.patch_embeddings = nn.Conv2d(in_chans, DIM, PATCH, PATCH)
        self.position_embeddings = nn.Parameter(torch.zeros(1, n + 1, DIM))
        self.cls_token = nn.Parameter(torch.zeros(1, 1, DIM))

    def forward(self, x):
        x = self.patch_embeddings(x).flatten(2).transpose(-1, -2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        return x + self.position_embeddings


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = nn.ModuleList([Block() for _ in range(DEPTH)])
        self.encoder_norm = nn.LayerNorm(DIM, eps=1e-6)

    def forward(self, x):
        for blk in self.layer:
            x = blk(x)
        return self.encoder_norm(x)


class Transformer(nn.Module):
    def __init__(self, img_size, in_chans):
        super().__init__()
        self.embeddings = Embeddings(img_size, in_chans)
        self.encoder = Encoder()


class VisionTransformer(nn.Module):
    def __init__(self, num_classes, img_size, in_chans):
        super().__init__()
        self.transformer = Transformer(img_size, in_chans)
        self.head = nn.Linear(DIM, num_classes)

    def forward(self, x):
        x = self.transformer.encoder(self.transformer.embeddings(x))
        return self.head(x[:, 0])


def expected(num_classes=10, img_size=32, in_chans=1):
    return make_expected(
        SOURCE, embed_dim=DIM, depth=DEPTH, num_heads=HEADS, patch_size=PATCH, img_size=img_size,
        in_chans=in_chans, num_classes=num_classes, class_token=True, pooling='cls',
        pos_embed='learned', pre_norm=True, final_norm=True, activation='gelu', qkv_bias=True,
        mlp_hidden=MLP, buffers={}, patch_embed='conv', timm_expressible=True,
    )


EXPECTED = expected()


def build(num_classes=10, img_size=32, in_chans=1):
    return VisionTransformer(num_classes, img_size, in_chans)
