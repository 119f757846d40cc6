"""(f) tintn/vision-transformer-from-scratch (the TDS/Medium "Implementing Vision Transformer (ViT) from
Scratch" tutorial): one module per attention head, `attention.heads.{h}.{query,key,value}` (D -> head_dim),
use_faster_attention=False, qkv_bias=True. Own modules, same keys/shapes/forward.
Other variants of the same file: tintn_vit_heads_nobias.py, tintn_vit_fused.py, tintn_pixel_vit.py.
"""
import math

import torch
from torch import nn


SOURCE = 'tintn/vision-transformer-from-scratch@52c59c6e52f66f9265e799457c9dcedc020fd483:vit.py'
BASE = dict(patch_size=8, hidden_size=48, num_hidden_layers=2, num_attention_heads=4, intermediate_size=4 * 48,
            initializer_range=0.02, qkv_bias=True, use_faster_attention=False)
HEAD = ['classifier.']
TRAIN = dict(lr=2e-3, steps=500)

NOTES = """
* Keys: `embedding.patch_embeddings.projection` (Conv2d), `embedding.cls_token` (1,1,D),
  `embedding.position_embeddings` (1,N+1,D), `encoder.blocks.{i}.layernorm_1`, `encoder.blocks.{i}.layernorm_2`,
  `encoder.blocks.{i}.mlp.{dense_1,dense_2}`, `encoder.blocks.{i}.attention.output_projection`, and either
  per-head `encoder.blocks.{i}.attention.heads.{h}.{query,key,value}` (weight (head_dim, D)) or fused
  `encoder.blocks.{i}.attention.qkv_projection` (3D, D; chunked [q|k|v], each split (H, head_dim) -- timm order).
  Per-head weights concatenate along dim 0 in head order to the fused q/k/v weight.
* Pre-norm, activation = tanh-approximate GELU ("NewGELUActivation"), NO final LayerNorm: the classifier reads
  the raw cls token of the last block. (timm: norm=Identity, act=gelu_tanh.)
* Original forward returns (logits, attention_probs_or_None); we return logits.
* Init: Linear/Conv normal(0, 0.02) with zero bias, LN (1, 0), cls & positions trunc_normal(0.02).
  The repo's train.py default config is hidden 48, 4 heads, 4 layers, patch 4 @ 32px, use_faster_attention=True.
"""


class NewGELUActivation(nn.Module):
    def forward(self, x):
        return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


class PatchEmbeddings(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.projection = nn.Conv2d(c['num_channels'], c['hidden_size'], c['patch_size'], c['patch_size'])

    def forward(self, x):
        return self.projection(x).flatten(2).transpose(1, 2)


class Embeddings(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.patch_embeddings = PatchEmbeddings(c)
        n = (c['image_size'] // c['patch_size']) ** 2
        self.cls_token = nn.Parameter(torch.randn(1, 1, c['hidden_size']))
        self.position_embeddings = nn.Parameter(torch.randn(1, n + 1, c['hidden_size']))

    def forward(self, x):
        x = self.patch_embeddings(x)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        return x + self.position_embeddings


class AttentionHead(nn.Module):
    def __init__(self, d, hd, bias):
        super().__init__()
        self.hd = hd
        self.query = nn.Linear(d, hd, bias=bias)
        self.key = nn.Linear(d, hd, bias=bias)
        self.value = nn.Linear(d, hd, bias=bias)

    def forward(self, x):
        a = torch.softmax(self.query(x) @ self.key(x).transpose(-1, -2) / math.sqrt(self.hd), dim=-1)
        return a @ self.value(x)


class MultiHeadAttention(nn.Module):
    def __init__(self, c):
        super().__init__()
        d, h = c['hidden_size'], c['num_attention_heads']
        self.heads = nn.ModuleList([AttentionHead(d, d // h, c['qkv_bias']) for _ in range(h)])
        self.output_projection = nn.Linear(d // h * h, d)

    def forward(self, x):
        return self.output_projection(torch.cat([hd(x) for hd in self.heads], dim=-1))


class FasterMultiHeadAttention(nn.Module):
    def __init__(self, c):
        super().__init__()
        d, self.h = c['hidden_size'], c['num_attention_heads']
        self.hd = d // self.h
        self.qkv_projection = nn.Linear(d, 3 * self.hd * self.h, bias=c['qkv_bias'])
        self.output_projection = nn.Linear(self.hd * self.h, d)

    def forward(self, x):
        b, n, _ = x.shape
        q, k, v = (t.view(b, n, self.h, self.hd).transpose(1, 2) for t in self.qkv_projection(x).chunk(3, dim=-1))
        a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(self.hd), dim=-1)
        return self.output_projection((a @ v).transpose(1, 2).reshape(b, n, self.h * self.hd))


class MLP(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.dense_1 = nn.Linear(c['hidden_size'], c['intermediate_size'])
        self.activation = NewGELUActivation()
        self.dense_2 = nn.Linear(c['intermediate_size'], c['hidden_size'])

    def forward(self, x):
        return self.dense_2(self.activation(self.dense_1(x)))


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.attention = FasterMultiHeadAttention(c) if c['use_faster_attention'] else MultiHeadAttention(c)
        self.layernorm_1 = nn.LayerNorm(c['hidden_size'])
        self.mlp = MLP(c)
        self.layernorm_2 = nn.LayerNorm(c['hidden_size'])

    def forward(self, x):
        x = x + self.attention(self.layernorm_1(x))
        return x + self.mlp(self.layernorm_2(x))


class Encoder(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.blocks = nn.ModuleList([Block(c) for _ in range(c['num_hidden_layers'])])


class ViTForClassfication(nn.Module):  # sic, upstream spelling
    def __init__(self, c):
        super().__init__()
        self.config = c
        self.embedding = Embeddings(c)
        self.encoder = Encoder(c)
        self.classifier = nn.Linear(c['hidden_size'], c['num_classes'])
        self.apply(self._init_weights)

    def forward(self, x):
        x = self.embedding(x)
        for blk in self.encoder.blocks:
            x = blk(x)
        return self.classifier(x[:, 0, :])

    def _init_weights(self, m):
        std = self.config['initializer_range']
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.normal_(m.weight, mean=0.0, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            m.bias.data.zero_()
            m.weight.data.fill_(1.0)
        elif isinstance(m, Embeddings):
            nn.init.trunc_normal_(m.position_embeddings, mean=0.0, std=std)
            nn.init.trunc_normal_(m.cls_token, mean=0.0, std=std)


def make_expected(cfg):
    from tests.implementations.common import make_expected as _mk
    return _mk(
        SOURCE, embed_dim=cfg['hidden_size'], depth=cfg['num_hidden_layers'], num_heads=cfg['num_attention_heads'],
        patch_size=cfg['patch_size'], img_size=cfg['image_size'], in_chans=cfg['num_channels'],
        num_classes=cfg['num_classes'], class_token=True, pooling='cls', pos_embed='learned', pre_norm=True,
        final_norm=False, activation='gelu_tanh', qkv_bias=cfg['qkv_bias'], mlp_hidden=cfg['intermediate_size'],
        buffers={}, patch_embed='conv', timm_expressible=True,
    )


def config(base, num_classes, img_size, in_chans):
    c = dict(base)
    c.update(num_classes=num_classes, image_size=img_size, num_channels=in_chans)
    return c


def expected(num_classes=10, img_size=32, in_chans=1):
    return make_expected(config(BASE, num_classes, img_size, in_chans))


EXPECTED = expected()


def build(num_classes=10, img_size=32, in_chans=1):
    return ViTForClassfication(config(BASE, num_classes, img_size, in_chans))
