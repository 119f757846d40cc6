"""(d) nn.TransformerEncoder ViT with a Linear patch embedding over rearranged patches:
vit-pytorch's `vit_pytorch.efficient.ViT` (the "bring your own transformer" wrapper, package itself)
fed a stock `nn.TransformerEncoder(nn.TransformerEncoderLayer(...))` with torch's defaults
(post-norm, ReLU, dropout 0.1, eps 1e-5) -- only batch_first=True and dim_feedforward set.
"""
from torch import nn
from vit_pytorch.efficient import ViT

from tests.implementations.common import make_expected

SOURCE = ('vit-pytorch==1.26.14:vit_pytorch/efficient.py (= lucidrains/vit-pytorch@69d24fe9e3024c0d4b02761123b8583a24ebed1e) '
          '+ torch==2.14.1 nn.TransformerEncoderLayer defaults')
DIM, DEPTH, HEADS, MLP, PATCH = 64, 2, 4, 128, 8
HEAD = ['mlp_head.']

NOTES = """
* `transformer.layers.{i}.self_attn.{in_proj_weight (3D,D), in_proj_bias, out_proj.*}`, `linear1`, `linear2`,
  `norm1`, `norm2` -- stock nn.TransformerEncoderLayer; default norm_first=False => POST-norm:
  x = norm1(x + attn(x)); x = norm2(x + ff(x)); activation ReLU; in_proj rows ordered [q; k; v].
  No `transformer.norm` (TransformerEncoder(norm=None)).
* Wrapper: `to_patch_embedding.{1: LN(patch_dim), 2: Linear, 3: LN(dim)}` with flatten (p1 p2 c),
  `cls_token` (1,1,D), `pos_embedding` (1,N+1,D), head `mlp_head = Sequential(LayerNorm, Linear)` applied to
  the cls token (so the only "final norm" is the LN inside the head, on the pooled token).
* Pitfall seen in the wild: nn.TransformerEncoderLayer defaults to batch_first=False; passing (B, N, D)
  then attends across the BATCH. We build the correct batch_first=True variant.
"""


def expected(num_classes=10, img_size=32, in_chans=1):
    return make_expected(
        SOURCE, embed_dim=DIM, depth=DEPTH, num_heads=HEADS, patch_size=PATCH, img_size=img_size,
        in_chans=in_chans, num_classes=num_classes, class_token=True, pooling='cls',
        pos_embed='learned', pre_norm=False, final_norm=True, activation='relu', qkv_bias=True,
        mlp_hidden=MLP, buffers={}, patch_embed='linear', patch_flatten='(p1 p2 c)',
        timm_expressible=False,  # post-norm blocks, ReLU, LN around the patch Linear
    )


EXPECTED = expected()


def build(num_classes=10, img_size=32, in_chans=1):
    layer = nn.TransformerEncoderLayer(d_model=DIM, nhead=HEADS, dim_feedforward=MLP, batch_first=True)
    enc = nn.TransformerEncoder(layer, num_layers=DEPTH, enable_nested_tensor=False)
    return ViT(image_size=img_size, patch_size=PATCH, num_classes=num_classes, dim=DIM,
               transformer=enc, pool='cls', channels=in_chans)
