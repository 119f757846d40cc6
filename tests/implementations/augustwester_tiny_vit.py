"""(extra) augustwester/tiny-vit ("The simplest implementation of a ViT you will find anywhere"): a real public
ViT with two silent bugs worth recognising: the patch rearrange puts the patch index OUTSIDE the grid index
("b c (ph h) (pw w) -> b (h w) (ph pw c)"), so each token is a STRIDED set of pixels, and the attention divides
by 1/sqrt(d) (i.e. multiplies by sqrt(d)). Also: one LayerNorm per layer (before attention only), 8 heads x 64
hard-coded (inner dim 512 != embed 64), no qkv/out bias. Own modules, same keys/shapes/forward.
"""
import torch
from torch import nn

from tests.implementations.common import make_expected

SOURCE = 'augustwester/tiny-vit@b16132de2427b1b98256272baa2a588698835d3e:vit.py,att.py,ff.py'
DIM, MLP, DEPTH, HEADS, DIM_HEAD, PATCH = 64, 256, 2, 8, 64, 8
HEAD = ['classification_head.']
TRAIN = dict(lr=1e-4 * 5)

NOTES = """
* Keys: `patch_to_embed` (Linear patch_dim -> D), `pos_embedding` (1,N+1,D), `cls` (1,1,D),
  `layers.{i}.0` (LayerNorm), `layers.{i}.1.W` (Linear D -> 3*8*64, no bias; output split (k h d) = (3, H, dh),
  the timm order), `layers.{i}.1.out` (Linear 512 -> D, no bias), `layers.{i}.2.net.{0,3}` (FF Linears),
  `classification_head.{0: LayerNorm, 1: Linear}` on the cls token.
* Tokens: pixel (r, c) of token (h, w) is image[r*gh + h, c*gw + w] for r, c < P (gh = H/P): a dilated
  sampling grid, NOT a contiguous patch; flatten order (ph pw c). Not expressible as a Conv2d patch embed.
* Attention logits are q.k * sqrt(dh) (bug: `softmax(qkT / (1/sqrt(dh)))`); x = att(norm(x)) + x;
  x = ff(x) + x (no norm before the FF). Final "norm" = the LN inside the head (cls token only).
"""


class Attention(nn.Module):
    def __init__(self, dim, num_heads, dim_head):
        super().__init__()
        self.num_heads = num_heads
        self.W = nn.Linear(dim, 3 * num_heads * dim_head, bias=False)
        self.scale = 1 / dim_head ** 0.5
        self.out = nn.Linear(dim_head * num_heads, dim, bias=False)

    def forward(self, x):
        b, t, _ = x.shape
        q, k, v = self.W(x).view(b, t, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        att = torch.softmax((q @ k.transpose(-1, -2)) / self.scale, dim=-1) @ v
        return self.out(att.transpose(1, 2).reshape(b, t, -1))


class FeedForward(nn.Module):
    def __init__(self, dim, hidden_dim):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden_dim), nn.GELU(), nn.Dropout(0), nn.Linear(hidden_dim, dim),
                                 nn.Dropout(0))

    def forward(self, x):
        return self.net(x)


class ViT(nn.Module):
    def __init__(self, num_classes, img_size, in_chans):
        super().__init__()
        self.patch_size = PATCH
        n = (img_size // PATCH) ** 2
        self.patch_to_embed = nn.Linear(in_chans * PATCH * PATCH, DIM)
        self.pos_embedding = nn.Parameter(torch.randn(1, n + 1, DIM))
        self.cls = nn.Parameter(torch.randn(1, 1, DIM))
        self.layers = nn.ModuleList([nn.ModuleList([nn.LayerNorm(DIM), Attention(DIM, HEADS, DIM_HEAD),
                                                    FeedForward(DIM, MLP)]) for _ in range(DEPTH)])
        self.classification_head = nn.Sequential(nn.LayerNorm(DIM), nn.Linear(DIM, num_classes))

    def forward(self, x):
        b, c, hh, ww = x.shape
        p = self.patch_size
        # "b c (ph h) (pw w) -> b (h w) (ph pw c)" with ph = pw = patch_size
        x = x.reshape(b, c, p, hh // p, p, ww // p).permute(0, 3, 5, 2, 4, 1).reshape(b, -1, p * p * c)
        x = torch.cat([self.cls.repeat(b, 1, 1), self.patch_to_embed(x)], dim=1) + self.pos_embedding
        for norm, att, ff in self.layers:
            x = att(norm(x)) + x
            x = ff(x) + x
        return self.classification_head(x[:, 0])


def expected(num_classes=10, img_size=32, in_chans=1):
    return make_expected(
        SOURCE, embed_dim=DIM, depth=DEPTH, num_heads=HEADS, patch_size=PATCH, img_size=img_size,
        in_chans=in_chans, num_classes=num_classes, class_token=True, pooling='cls',
        pos_embed='learned', pre_norm=True, final_norm=True, activation='gelu', qkv_bias=False,
        mlp_hidden=MLP, buffers={}, patch_embed='linear', patch_flatten='(ph pw c) strided',
        timm_expressible=False,
    )


EXPECTED = expected()


def build(num_classes=10, img_size=32, in_chans=1):
    return ViT(num_classes, img_size, in_chans)
