"""(f) BrianPulfer's "Vision Transformers from Scratch (PyTorch): A step-by-step guide" (Medium), now in
BrianPulfer/PapersReimplementations: per-head `q_mappings.{h}` / `k_mappings.{h}` / `v_mappings.{h}` that each
map ONLY that head's d_head-slice of the token (block-diagonal attention projections), no output projection,
1-D sinusoid positions as a NON-persistent buffer, class token shape (1, D), Softmax inside the head.
Own modules, same keys/shapes/forward (hidden 32 instead of 8, patches 4x4 on 32px).
"""
import torch
from torch import nn

from tests.implementations.common import make_expected, sincos_1d_interleaved

SOURCE = 'BrianPulfer/PapersReimplementations@ce70cab23f7157d911fa541b387797d9d64c65fc:src/cv/vit/vit_torch.py'
N_PATCHES, HIDDEN, HEADS, BLOCKS, MLP_RATIO = 8, 32, 2, 2, 4
HEAD = ['mlp.']
TRAIN = dict(lr=1e-3, steps=400)  # upstream uses lr 5e-3 (noisier with the double softmax)


def loss_fn(model, x, y):
    # upstream trains nn.CrossEntropyLoss on the softmax OUTPUT (double softmax); reproduced as is
    return nn.functional.cross_entropy(model(x), y)


NOTES = """
* Keys: `linear_mapper` (Linear C*P*P -> D, patches flattened (c p1 p2) by `patch.flatten()`), `class_token` (1, D)
  (2-D, init torch.rand => uniform [0,1)), `blocks.{i}.norm1`, `blocks.{i}.mhsa.{q,k,v}_mappings.{h}`
  (Linear(d_head, d_head) each), `blocks.{i}.norm2`, `blocks.{i}.mlp.{0,2}`, `mlp.0` (head Linear; `mlp.1` is Softmax).
* `positional_embeddings` is registered with persistent=False => not in the state dict (table (N+1, D),
  sin on even / cos on odd channels, row 0 for the cls token).
* Attention: head h attends with q/k/v computed from channels [h*d_head:(h+1)*d_head] of the normed token only;
  outputs concatenated; NO output projection. Equivalent to one block-diagonal qkv Linear + identity proj.
* Pre-norm, exact GELU, no final norm; forward returns SOFTMAX PROBABILITIES, and upstream trains
  CrossEntropyLoss on them (double softmax) -- reproduced in loss_fn.
"""


class MyMSA(nn.Module):
    def __init__(self, d, n_heads):
        super().__init__()
        self.n_heads, self.d_head = n_heads, d // n_heads
        self.q_mappings = nn.ModuleList([nn.Linear(self.d_head, self.d_head) for _ in range(n_heads)])
        self.k_mappings = nn.ModuleList([nn.Linear(self.d_head, self.d_head) for _ in range(n_heads)])
        self.v_mappings = nn.ModuleList([nn.Linear(self.d_head, self.d_head) for _ in range(n_heads)])

    def forward(self, x):  # vectorised over the batch (upstream loops over sequences)
        outs = []
        for h in range(self.n_heads):
            s = x[..., h * self.d_head:(h + 1) * self.d_head]
            q, k, v = self.q_mappings[h](s), self.k_mappings[h](s), self.v_mappings[h](s)
            a = torch.softmax(q @ k.transpose(-1, -2) / self.d_head ** 0.5, dim=-1)
            outs.append(a @ v)
        return torch.cat(outs, dim=-1)


class MyViTBlock(nn.Module):
    def __init__(self, d, n_heads, mlp_ratio=4):
        super().__init__()
        self.norm1 = nn.LayerNorm(d)
        self.mhsa = MyMSA(d, n_heads)
        self.norm2 = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, mlp_ratio * d), nn.GELU(), nn.Linear(mlp_ratio * d, d))

    def forward(self, x):
        x = x + self.mhsa(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class MyViT(nn.Module):
    def __init__(self, chw, n_patches, n_blocks, hidden_d, n_heads, out_d):
        super().__init__()
        c, h, w = chw
        self.n_patches = n_patches
        self.ps = h // n_patches
        self.linear_mapper = nn.Linear(c * self.ps * self.ps, hidden_d)
        self.class_token = nn.Parameter(torch.rand(1, hidden_d))
        self.register_buffer('positional_embeddings', sincos_1d_interleaved(n_patches ** 2 + 1, hidden_d),
                             persistent=False)
        self.blocks = nn.ModuleList([MyViTBlock(hidden_d, n_heads, MLP_RATIO) for _ in range(n_blocks)])
        self.mlp = nn.Sequential(nn.Linear(hidden_d, out_d), nn.Softmax(dim=-1))

    def forward(self, images):
        b, c = images.shape[:2]
        n, p = self.n_patches, self.ps
        patches = images.reshape(b, c, n, p, n, p).permute(0, 2, 4, 1, 3, 5).reshape(b, n * n, c * p * p)
        tokens = torch.cat([self.class_token.expand(b, 1, -1), self.linear_mapper(patches)], dim=1)
        out = tokens + self.positional_embeddings.repeat(b, 1, 1)
        for blk in self.blocks:
            out = blk(out)
        return self.mlp(out[:, 0])


def expected(num_classes=10, img_size=32, in_chans=1):
    return make_expected(
        SOURCE, embed_dim=HIDDEN, depth=BLOCKS, num_heads=HEADS, patch_size=img_size // N_PATCHES,
        img_size=img_size, in_chans=in_chans, num_classes=num_classes, class_token=True, pooling='cls',
        pos_embed='sincos_unsaved', pre_norm=True, final_norm=False, activation='gelu', qkv_bias=True,
        mlp_hidden=MLP_RATIO * HIDDEN, buffers={}, unsaved_tables={'positional_embeddings': 'sincos_1d'},
        patch_embed='linear', patch_flatten='(c p1 p2)', output='probs',
        timm_expressible=False,  # up to the final softmax it is: block-diagonal qkv, identity proj
    )


EXPECTED = expected()


def build(num_classes=10, img_size=32, in_chans=1):
    return MyViT((in_chans, img_size, img_size), N_PATCHES, BLOCKS, HIDDEN, HEADS, num_classes)
