"""(a) lucidrains vit-pytorch `ViT`, pool='cls' -- the installed package itself (vit-pytorch==1.26.14)."""
from vit_pytorch import ViT

from tests.implementations.common import make_expected

SOURCE = ('vit-pytorch==1.26.14:vit_pytorch/vit.py '
          '(= lucidrains/vit-pytorch@69d24fe9e3024c0d4b02761123b8583a24ebed1e:vit_pytorch/vit.py)')
POOL = 'cls'
DIM, DEPTH, HEADS, DIM_HEAD, MLP, PATCH = 64, 2, 4, 16, 128, 8
HEAD = ['mlp_head.']

NOTES = """
* Patch embedding is `Sequential(Rearrange('b c (h p1) (w p2) -> b (h w) (p1 p2 c)'), LayerNorm(patch_dim),
  Linear(patch_dim, dim), LayerNorm(dim))` -> keys `to_patch_embedding.1` (LN over the raw patch),
  `.2` (Linear), `.3` (LN). Flatten order (p1 p2 c): channel fastest. timm's PatchEmbed has no such LNs.
* `cls_token` is 2-D `(num_cls_tokens, dim)` and `pos_embedding` is 2-D `(N + num_cls, dim)` (no batch axis)
  in this version (older releases used `(1, 1, dim)` / `(1, N+1, dim)`).
* Blocks are pre-norm but the LNs live INSIDE the sublayers: `layers.i.0.norm` (attention) and
  `layers.i.1.net.0` (feed-forward). Fused `to_qkv` has no bias; split order (3, heads, dim_head) like timm.
  `to_out` is `Sequential(Linear, Dropout)` -> `to_out.0.*` (absent entirely when heads == 1 and dim_head == dim).
* Final LN is `transformer.norm`, applied to all tokens; then pool (x[:, 0] for 'cls'; mean over all tokens for
  'mean', where there is no cls token) -> `mlp_head` (a plain Linear in this version).
* attention inner dim = heads * dim_head (may differ from dim). GELU is exact (erf).
"""


def expected(num_classes=10, img_size=32, in_chans=1, pool=POOL):
    return make_expected(
        SOURCE, embed_dim=DIM, depth=DEPTH, num_heads=HEADS, patch_size=PATCH, img_size=img_size,
        in_chans=in_chans, num_classes=num_classes, class_token=(pool == 'cls'), pooling=pool,
        pos_embed='learned', pre_norm=True, final_norm=True, activation='gelu', qkv_bias=False,
        mlp_hidden=MLP, buffers={}, patch_embed='linear', patch_flatten='(p1 p2 c)',
        timm_expressible=False,  # LayerNorms around the patch Linear have no timm equivalent
    )


EXPECTED = expected()


def build(num_classes=10, img_size=32, in_chans=1):
    return ViT(image_size=img_size, patch_size=PATCH, num_classes=num_classes, dim=DIM, depth=DEPTH,
               heads=HEADS, dim_head=DIM_HEAD, mlp_dim=MLP, pool=POOL, channels=in_chans)
