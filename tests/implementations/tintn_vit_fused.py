"""(f) tintn/vision-transformer-from-scratch with use_faster_attention=True (the repo's train.py default):
fused `attention.qkv_projection` instead of per-head modules; patch 4 as in the repo config (16 px here)."""
from tests.implementations import tintn_vit_heads as T

SOURCE = T.SOURCE
BASE = dict(T.BASE, use_faster_attention=True, patch_size=4)
HEAD = T.HEAD
TRAIN = dict(lr=3e-3)
NOTES = ("* Same file as tintn_vit_heads, `use_faster_attention=True`: `attention.qkv_projection` (3D, D) "
         "chunked [q|k|v], heads split (H, head_dim); patch 4 (repo config; 16 px here for speed => 16 patch tokens + cls).\n")


def expected(num_classes=10, img_size=16, in_chans=1):  # repo config 32 px (speed)
    return T.make_expected(T.config(BASE, num_classes, img_size, in_chans))


EXPECTED = expected()


def build(num_classes=10, img_size=16, in_chans=1):
    return T.ViTForClassfication(T.config(BASE, num_classes, img_size, in_chans))
