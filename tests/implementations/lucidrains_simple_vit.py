"""(a) lucidrains vit-pytorch `SimpleViT` -- the installed package itself (vit-pytorch==1.26.14)."""
from vit_pytorch import SimpleViT

from tests.implementations.common import make_expected

SOURCE = ('vit-pytorch==1.26.14:vit_pytorch/simple_vit.py '
          '(= lucidrains/vit-pytorch@69d24fe9e3024c0d4b02761123b8583a24ebed1e:vit_pytorch/simple_vit.py)')
DIM, DEPTH, HEADS, DIM_HEAD, MLP, PATCH = 64, 2, 4, 16, 128, 8
HEAD = ['linear_head.']

NOTES = """
* The 2-D sincos table `pos_embedding` is a PLAIN ATTRIBUTE in 1.26.14 (`self.pos_embedding = posemb_sincos_2d(...)`),
  not a buffer: it is NOT in the state dict (and does not follow `.to(device)`; forward moves it each call).
  Table layout: (h*w, dim) = [sin(x*w_i) | cos(x*w_i) | sin(y*w_i) | cos(y*w_i)], w_i = 10000^(-i/(dim/4 - 1)),
  x = column index, y = row index (note the `- 1`, unlike MAE's i/(dim/4)). No cls token; mean pooling.
* Same patch embedding as ViT (LN(patch_dim) -> Linear -> LN(dim), flatten (p1 p2 c)).
* No bias anywhere in attention (`to_qkv`, `to_out` both bias-free), pre-norm inside sublayers,
  final `transformer.norm`, mean over tokens, `linear_head`.
"""


def expected(num_classes=10, img_size=32, in_chans=1):
    return make_expected(
        SOURCE, embed_dim=DIM, depth=DEPTH, num_heads=HEADS, patch_size=PATCH, img_size=img_size,
        in_chans=in_chans, num_classes=num_classes, class_token=False, pooling='mean',
        pos_embed='sincos_unsaved', pre_norm=True, final_norm=True, activation='gelu', qkv_bias=False,
        mlp_hidden=MLP, buffers={}, unsaved_tables={'pos_embedding': 'sincos'},
        patch_embed='linear', patch_flatten='(p1 p2 c)', timm_expressible=False,
    )


EXPECTED = expected()


def build(num_classes=10, img_size=32, in_chans=1):
    return SimpleViT(image_size=img_size, patch_size=PATCH, num_classes=num_classes, dim=DIM,
                     depth=DEPTH, heads=HEADS, dim_head=DIM_HEAD, mlp_dim=MLP, channels=in_chans)
