"""(e) Tutorial ViT built from hyunwoongko/transformer's encoder blocks ("Attention Is All You Need" from
scratch): `w_q`/`w_k`/`w_v`/`w_concat` Linears, a homemade LayerNorm with `gamma`/`beta` (eps 1e-12,
biased variance), POST-norm, ReLU FFN (`linear1`/`linear2`), and the repo's sinusoid table kept as a plain
tensor attribute (so it is NOT in the state dict).

The block/LN/positional modules follow that repo's keys and maths exactly; the ViT wrapper around them
(Linear patch embedding (p1 p2 c), cls token, head on the cls token) is the usual student composition,
not a specific upstream file.
"""
import math

import torch
from torch import nn

from tests.implementations.common import make_expected, sincos_1d_interleaved

SOURCE = ('hyunwoongko/transformer@63286547b9cd174a6cfc204832271814d685181f:models/blocks/encoder_layer.py, '
          'models/layers/{multi_head_attention,layer_norm,position_wise_feed_forward,scale_dot_product_attention}.py, '
          'models/embedding/positional_encoding.py (ViT wrapper: composition)')
DIM, DEPTH, HEADS, MLP, PATCH, DROP = 64, 2, 4, 128, 8, 0.1
HEAD = ['linear.']

NOTES = """
* Keys: `patch_embed` (Linear P*P*C -> D, (p1 p2 c)), `cls_token` (1,1,D),
  `encoder.layers.{i}.attention.{w_q,w_k,w_v,w_concat}`, `encoder.layers.{i}.norm1.{gamma,beta}`,
  `encoder.layers.{i}.ffn.{linear1,linear2}`, `encoder.layers.{i}.norm2.{gamma,beta}`, `linear` (head).
  LayerNorm parameters are called gamma/beta, not weight/bias.
* POST-norm: x = norm1(x + attn(x)); x = norm2(x + ffn(x)); ReLU; LN eps 1e-12 with biased variance
  (same maths as nn.LayerNorm up to eps). No final norm beyond the last block's norm2.
* Positions: Vaswani 1-D sinusoid (sin on even, cos on odd channels, (L, D)) added to the token sequence
  incl. the cls token at position 0; stored as a plain attribute (`self.encoding`, requires_grad False)
  => never saved. A checkpoint therefore has NO position tensor at all.
"""


class LayerNorm(nn.Module):
    def __init__(self, d_model, eps=1e-12):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(d_model))
        self.beta = nn.Parameter(torch.zeros(d_model))
        self.eps = eps

    def forward(self, x):
        mean = x.mean(-1, keepdim=True)
        var = x.var(-1, unbiased=False, keepdim=True)
        return self.gamma * (x - mean) / torch.sqrt(var + self.eps) + self.beta


class MultiHeadAttention(nn.Module):
    def __init__(self, d_model, n_head):
        super().__init__()
        self.n_head = n_head
        self.w_q = nn.Linear(d_model, d_model)
        self.w_k = nn.Linear(d_model, d_model)
        self.w_v = nn.Linear(d_model, d_model)
        self.w_concat = nn.Linear(d_model, d_model)

    def forward(self, x):
        b, n, d = x.shape
        sp = lambda t: t.view(b, n, self.n_head, d // self.n_head).transpose(1, 2)
        q, k, v = sp(self.w_q(x)), sp(self.w_k(x)), sp(self.w_v(x))
        a = torch.softmax(q @ k.transpose(2, 3) / math.sqrt(d // self.n_head), dim=-1)
        return self.w_concat((a @ v).transpose(1, 2).reshape(b, n, d))


class PositionwiseFeedForward(nn.Module):
    def __init__(self, d_model, hidden, drop_prob):
        super().__init__()
        self.linear1 = nn.Linear(d_model, hidden)
        self.linear2 = nn.Linear(hidden, d_model)
        self.relu = nn.ReLU()
        self.dropout = nn.Dropout(drop_prob)

    def forward(self, x):
        return self.linear2(self.dropout(self.relu(self.linear1(x))))


class EncoderLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.attention = MultiHeadAttention(DIM, HEADS)
        self.norm1 = LayerNorm(DIM)
        self.dropout1 = nn.Dropout(DROP)
        self.ffn = PositionwiseFeedForward(DIM, MLP, DROP)
        self.norm2 = LayerNorm(DIM)
        self.dropout2 = nn.Dropout(DROP)

    def forward(self, x):
        x = self.norm1(x + self.dropout1(self.attention(x)))
        return self.norm2(x + self.dropout2(self.ffn(x)))


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList([EncoderLayer() for _ in range(DEPTH)])


class TutorialViT(nn.Module):
    def __init__(self, num_classes, img_size, in_chans):
        super().__init__()
        self.p = PATCH
        n = (img_size // PATCH) ** 2
        self.patch_embed = nn.Linear(PATCH * PATCH * in_chans, DIM)
        self.cls_token = nn.Parameter(torch.randn(1, 1, DIM) * 0.02)
        self.encoding = sincos_1d_interleaved(n + 1, DIM)      # plain attribute, like the repo
        self.encoding.requires_grad = False
        self.encoder = Encoder()
        self.linear = nn.Linear(DIM, num_classes)

    def forward(self, x):
        b, c, hh, ww = x.shape
        p = self.p
        x = x.reshape(b, c, hh // p, p, ww // p, p).permute(0, 2, 4, 3, 5, 1).reshape(b, -1, p * p * c)
        x = torch.cat([self.cls_token.expand(b, -1, -1), self.patch_embed(x)], dim=1)
        x = x + self.encoding[: x.shape[1]].to(x.device)
        for layer in self.encoder.layers:
            x = layer(x)
        return self.linear(x[:, 0])


def expected(num_classes=10, img_size=32, in_chans=1):
    return make_expected(
        SOURCE, embed_dim=DIM, depth=DEPTH, num_heads=HEADS, patch_size=PATCH, img_size=img_size,
        in_chans=in_chans, num_classes=num_classes, class_token=True, pooling='cls',
        pos_embed='sincos_unsaved', pre_norm=False, final_norm=False, activation='relu', qkv_bias=True,
        mlp_hidden=MLP, buffers={}, unsaved_tables={'encoding': 'sincos_1d'},
        patch_embed='linear', patch_flatten='(p1 p2 c)', timm_expressible=False,
    )


EXPECTED = expected()


def build(num_classes=10, img_size=32, in_chans=1):
    return TutorialViT(num_classes, img_size, in_chans)
