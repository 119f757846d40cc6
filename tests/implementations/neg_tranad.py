"""(negative, looks like a sequence model) imperial-qore/TranAD `TranAD` (multivariate time-series anomaly
detection by reconstruction): sinusoid-ish `pos_encoder.pe` buffer, 1 custom TransformerEncoderLayer and two
TransformerDecoderLayers built on nn.MultiheadAttention (sequence-first), no LayerNorm anywhere,
`nn.LeakyReLU(True)` (negative_slope=True == 1.0, i.e. the identity), fcn = Linear + Sigmoid.
Own modules, same keys/shapes/forward.

Data: each 8x8 digit is read as a window of 8 time steps x 8 features (rows), intensities scaled to [0, 1].
"""
import math

import torch
from torch import nn

from tests.implementations.common import make_expected, images_to_pixels

SOURCE = 'imperial-qore/TranAD@7ffb98d0c18189cc3d9ab732b4cb0278200a0af0:src/models.py (TranAD), src/dlutils.py'
FEATS, WINDOW, FF = 8, 8, 16
HEAD = []
TRAIN = dict(lr=3e-3)

NOTES = """
* Keys: `pos_encoder.pe` (window, 1, 2F) persistent buffer, `transformer_encoder.layers.0.{self_attn.in_proj_weight,
  self_attn.in_proj_bias, self_attn.out_proj.*, linear1, linear2}`, `transformer_decoder{1,2}.layers.0.{self_attn.*,
  multihead_attn.*, linear1, linear2}`, `fcn.0` (Linear 2F -> F; `fcn.1` Sigmoid). d_model = 2*feats, nhead = feats.
* `pe` is NOT the Vaswani table: pe[p, d] = sin(p * w_d) + cos(p * w_d) with w_d = exp(-d * ln(10000) / D) over ALL
  d (no even/odd split), shape (max_len, 1, D) for sequence-first input.
* Encoder/decoder layers: residual adds only, no norms; activation LeakyReLU(negative_slope=True) == identity.
* forward(src, tgt) -> (x1, x2): two decoding phases, the second conditioned on the squared error of the first.
* As upstream, the target (the window's last step) is also the last row of the input window, so the trained
  reconstruction error is tiny (0.003 vs 0.15 for predicting the mean).
"""


class PositionalEncoding(nn.Module):
    def __init__(self, d_model, dropout=0.1, max_len=5000):
        super().__init__()
        self.dropout = nn.Dropout(p=dropout)
        pos = torch.arange(0, max_len, dtype=torch.float).unsqueeze(1)
        div = torch.exp(torch.arange(0, d_model).float() * (-math.log(10000.0) / d_model))
        pe = torch.sin(pos * div) + torch.cos(pos * div)
        self.register_buffer('pe', pe.unsqueeze(0).transpose(0, 1))

    def forward(self, x, pos=0):
        return self.dropout(x + self.pe[pos:pos + x.size(0), :])


class TransformerEncoderLayer(nn.Module):
    def __init__(self, d_model, nhead, dim_feedforward=16, dropout=0):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.activation = nn.LeakyReLU(True)

    def forward(self, src, src_mask=None, src_key_padding_mask=None, is_causal=False):
        src = src + self.dropout1(self.self_attn(src, src, src)[0])
        return src + self.dropout2(self.linear2(self.dropout(self.activation(self.linear1(src)))))


class TransformerDecoderLayer(nn.Module):
    def __init__(self, d_model, nhead, dim_feedforward=16, dropout=0):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
        self.multihead_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)
        self.activation = nn.LeakyReLU(True)

    def forward(self, tgt, memory, *args, **kwargs):
        tgt = tgt + self.dropout1(self.self_attn(tgt, tgt, tgt)[0])
        tgt = tgt + self.dropout2(self.multihead_attn(tgt, memory, memory)[0])
        return tgt + self.dropout3(self.linear2(self.dropout(self.activation(self.linear1(tgt)))))


class _Stack(nn.Module):
    """Same keys as nn.TransformerEncoder/Decoder(layer, 1): `layers.0.*`."""
    def __init__(self, layer):
        super().__init__()
        self.layers = nn.ModuleList([layer])

    def forward(self, *a):
        return self.layers[0](*a)


class TranAD(nn.Module):
    def __init__(self, feats):
        super().__init__()
        self.n_feats, self.n_window = feats, WINDOW
        self.pos_encoder = PositionalEncoding(2 * feats, 0.1, self.n_window)
        self.transformer_encoder = _Stack(TransformerEncoderLayer(2 * feats, feats, FF, 0.1))
        self.transformer_decoder1 = _Stack(TransformerDecoderLayer(2 * feats, feats, FF, 0.1))
        self.transformer_decoder2 = _Stack(TransformerDecoderLayer(2 * feats, feats, FF, 0.1))
        self.fcn = nn.Sequential(nn.Linear(2 * feats, feats), nn.Sigmoid())

    def encode(self, src, c, tgt):
        src = torch.cat((src, c), dim=2) * math.sqrt(self.n_feats)
        memory = self.transformer_encoder(self.pos_encoder(src))
        return tgt.repeat(1, 1, 2), memory

    def forward(self, src, tgt):
        c = torch.zeros_like(src)
        x1 = self.fcn(self.transformer_decoder1(*self.encode(src, c, tgt)))
        c = (x1 - src) ** 2
        x2 = self.fcn(self.transformer_decoder2(*self.encode(src, c, tgt)))
        return x1, x2


def _windows(x):
    w = images_to_pixels(x).float() / 16.0            # (B, 1, 8, 8) in [0, 1]
    src = w[:, 0].permute(1, 0, 2)                     # (window=8 rows, B, feats=8)
    return src, src[-1:]                               # tgt = last time step, as upstream (elem = window[-1])


def loss_fn(model, x, y):
    src, tgt = _windows(x)
    x1, x2 = model(src, tgt)
    return 0.5 * nn.functional.mse_loss(x1, tgt) + 0.5 * nn.functional.mse_loss(x2, tgt)


@torch.no_grad()
def evaluate(model, x, y):
    src, tgt = _windows(x)
    _, x2 = model(src, tgt)
    return {'recon_mse': nn.functional.mse_loss(x2, tgt).item(),
            'baseline_mse_predict_mean': ((tgt - tgt.mean()) ** 2).mean().item()}


def expected(num_classes=10, img_size=8, in_chans=1):
    return make_expected(SOURCE, img_size=img_size, in_chans=in_chans, num_classes=None, is_vit=False,
                         looks_like='sequence_model', buffers={'pos_encoder.pe': 'sincos'},
                         embed_dim=2 * FEATS, num_heads=FEATS, pre_norm=False, final_norm=False,
                         activation='leaky_relu(slope=1.0)=identity', output='(x1, x2) reconstructions')


EXPECTED = expected()


def build(num_classes=10, img_size=8, in_chans=1):
    return TranAD(FEATS)
