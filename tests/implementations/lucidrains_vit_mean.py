"""(a) lucidrains vit-pytorch `ViT`, pool='mean' -- the installed package itself (vit-pytorch==1.26.14)."""
from vit_pytorch import ViT

from tests.implementations import lucidrains_vit_cls as C

SOURCE = C.SOURCE
POOL = 'mean'
HEAD = C.HEAD
NOTES = C.NOTES + """
* pool='mean': the package still registers `cls_token` with shape (0, dim) -- a zero-element tensor in the
  state dict -- and `pos_embedding` has exactly N rows. Mean is over all N patch tokens after the final LN.
"""


def expected(num_classes=10, img_size=32, in_chans=1):
    return C.expected(num_classes, img_size, in_chans, pool=POOL)


EXPECTED = expected()


def build(num_classes=10, img_size=32, in_chans=1):
    return ViT(image_size=img_size, patch_size=C.PATCH, num_classes=num_classes, dim=C.DIM, depth=C.DEPTH,
               heads=C.HEADS, dim_head=C.DIM_HEAD, mlp_dim=C.MLP, pool=POOL, channels=in_chans)
