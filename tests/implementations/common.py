"""Shared helpers for the reproduction modules (not an implementation itself).

Every implementation module exposes
    build(num_classes=10, img_size=..., in_chans=1) -> nn.Module
    EXPECTED  (truth for build() with its default arguments)
    expected(num_classes, img_size, in_chans) -> dict (same, for other arguments)
    SOURCE    'repo@commit:path' (or 'package==version:module') that was read
optional hooks used by train.py:
    TRAIN = dict(lr=..., steps=...)          overrides of the training defaults
    HEAD  = ['prefix.', ...]                 state-dict prefixes re-initialised for the
                                             "fresh head" variant ([] = no such variant)
    loss_fn(model, x, y) -> scalar loss      default: cross-entropy on model(x)
    predict(model, x)   -> scores (B, C)     default: model(x) (argmax is taken)
    evaluate(model, x, y) -> dict            for negatives whose metric is not accuracy
    NOTES = '...'                            forward semantics worth knowing (for NOTES.md)
"""
import math

import numpy as np
import torch

# Images handed to every model by train.py are digits/16 normalised with mean 0.5, std 0.5
# (range [-1, 1]); negatives that need raw pixel values invert this exactly.
NORM_MEAN = 0.5
NORM_STD = 0.5

_DEFAULTS = dict(
    embed_dim=None, depth=None, num_heads=None, patch_size=None, img_size=None, in_chans=1,
    num_classes=10, class_token=False, dist_token=False, num_reg_tokens=0, pooling=None,
    pos_embed=None, pre_norm=None, final_norm=None, activation=None, qkv_bias=None,
    mlp_hidden=None, buffers={}, is_vit=True, looks_like=None,
    # extras beyond the brief's list
    patch_embed=None,        # 'conv' | 'linear' | None
    patch_flatten=None,      # flatten order of a Linear patch embedding: '(p1 p2 c)' | '(c p1 p2)'
    frozen_params={},        # parameters saved in the state dict but never trained {name: kind}
    unsaved_tables={},       # fixed tables used in forward but absent from the state dict
    output='logits',         # 'logits' | 'probs' | 'tuple_train_avg_eval' ...
    timm_expressible=None,   # can timm.VisionTransformer compute the same function?
    not_in_source=[],        # state-dict keys that exist only because of our test harness
    source=None,
)


def make_expected(source, **kw):
    unknown = set(kw) - set(_DEFAULTS)
    if unknown:
        raise KeyError(f'unknown EXPECTED fields: {sorted(unknown)}')
    out = dict(_DEFAULTS)
    out.update(kw)
    out['source'] = source
    return out


def sincos_1d_interleaved(length, dim):
    """Vaswani table: even columns sin(pos * w_i), odd columns cos(pos * w_i), w_i = 10000^(-2i/dim)."""
    pos = torch.arange(length, dtype=torch.float32)[:, None]
    w = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    pe = torch.zeros(length, dim)
    pe[:, 0::2] = torch.sin(pos * w)
    pe[:, 1::2] = torch.cos(pos * w[: dim // 2])
    return pe


def mae_2d_sincos(dim, grid, cls_token):
    """MAE/MoCo-v3 2-D table (float64 math, float32 result): first half of the channels encodes the
    column (x) index, second half the row (y) index; within each half [sin | cos] blocks; the cls row
    (if any) is all zeros and comes first."""
    assert dim % 4 == 0
    half = dim // 2
    omega = np.arange(half // 2, dtype=np.float64) / (half / 2.0)
    omega = 1.0 / 10000 ** omega
    ys, xs = np.meshgrid(np.arange(grid, dtype=np.float64), np.arange(grid, dtype=np.float64),
                         indexing='ij')

    def one(pos):
        out = np.einsum('m,d->md', pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    emb = np.concatenate([one(xs), one(ys)], axis=1)
    if cls_token:
        emb = np.concatenate([np.zeros([1, dim]), emb], axis=0)
    return torch.from_numpy(emb).float()


def images_to_pixels(x):
    """Invert train.py's normalisation: back to digit intensities 0..16 (ints)."""
    return torch.round((x * NORM_STD + NORM_MEAN) * 16).clamp(0, 16).long()
