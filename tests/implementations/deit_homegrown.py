"""(g) DeiT-style distilled ViT written from scratch with facebookresearch/deit's state-dict layout
(`DistilledVisionTransformer`, which subclasses timm's VisionTransformer): cls_token + dist_token,
pos_embed over N+2 tokens, two heads `head` / `head_dist`; training forward returns both logits, eval the mean.
"""
import torch
from torch import nn
import torch.nn.functional as F

from tests.implementations.common import make_expected

SOURCE = 'facebookresearch/deit@7e160fe43f0252d17191b71cbb5826254114ea5b:models.py (DistilledVisionTransformer)'
DIM, DEPTH, HEADS, MLP_RATIO, PATCH = 64, 2, 4, 4, 8
HEAD = ['head.', 'head_dist.']

NOTES = """
* Keys (timm names): `cls_token` (1,1,D), `dist_token` (1,1,D), `pos_embed` (1, N+2, D), `patch_embed.proj`
  (Conv2d), `blocks.{i}.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}`, `norm`, `head`, `head_dist`.
* Token order [cls, dist, patches]; pre-norm, LN eps 1e-6, exact GELU; after the final `norm`,
  head(x[:,0]) and head_dist(x[:,1]); train mode returns the tuple, eval mode returns (head + head_dist) / 2.
  timm expresses this as `VisionTransformerDistilled` (timm.models.deit).
* Trained here with hard "distillation" where the teacher is replaced by the labels (CE on both heads).
"""


class Attention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.h = heads
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.h, d // self.h).permute(2, 0, 3, 1, 4)
        a = torch.softmax(q @ k.transpose(-2, -1) * (d // self.h) ** -0.5, dim=-1)
        return self.proj((a @ v).transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, dim * MLP_RATIO)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, in_chans, dim):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, PATCH, PATCH)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class DistilledViT(nn.Module):
    def __init__(self, num_classes, img_size, in_chans):
        super().__init__()
        n = (img_size // PATCH) ** 2
        self.patch_embed = PatchEmbed(in_chans, DIM)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, DIM))
        self.dist_token = nn.Parameter(torch.zeros(1, 1, DIM))
        self.pos_embed = nn.Parameter(torch.zeros(1, n + 2, DIM))
        self.blocks = nn.ModuleList([Block(DIM, HEADS) for _ in range(DEPTH)])
        self.norm = nn.LayerNorm(DIM, eps=1e-6)
        self.head = nn.Linear(DIM, num_classes)
        self.head_dist = nn.Linear(DIM, num_classes)
        for p in (self.cls_token, self.dist_token, self.pos_embed):
            nn.init.trunc_normal_(p, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        x = self.patch_embed(x)
        b = x.shape[0]
        x = torch.cat([self.cls_token.expand(b, -1, -1), self.dist_token.expand(b, -1, -1), x], dim=1)
        x = x + self.pos_embed
        for blk in self.blocks:
            x = blk(x)
        x = self.norm(x)
        x, x_dist = self.head(x[:, 0]), self.head_dist(x[:, 1])
        return (x, x_dist) if self.training else (x + x_dist) / 2


def loss_fn(model, x, y):
    out, out_dist = model(x)
    return 0.5 * F.cross_entropy(out, y) + 0.5 * F.cross_entropy(out_dist, y)


def expected(num_classes=10, img_size=32, in_chans=1):
    return make_expected(
        SOURCE, embed_dim=DIM, depth=DEPTH, num_heads=HEADS, patch_size=PATCH, img_size=img_size,
        in_chans=in_chans, num_classes=num_classes, class_token=True, dist_token=True, pooling='cls',
        pos_embed='learned', pre_norm=True, final_norm=True, activation='gelu', qkv_bias=True,
        mlp_hidden=MLP_RATIO * DIM, buffers={}, patch_embed='conv', output='tuple_train_avg_eval',
        timm_expressible=True,  # timm VisionTransformerDistilled
    )


EXPECTED = expected()


def build(num_classes=10, img_size=32, in_chans=1):
    return DistilledViT(num_classes, img_size, in_chans)
