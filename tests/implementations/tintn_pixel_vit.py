"""(j) Pixel tokens: tintn/vision-transformer-from-scratch (fused attention) with patch_size=1 on the raw
8x8 digits -> 64 pixel tokens + cls; the patch embedding is a 1x1 Conv2d (weight (D, C, 1, 1))."""
from tests.implementations import tintn_vit_heads as T

SOURCE = T.SOURCE
BASE = dict(T.BASE, use_faster_attention=True, patch_size=1, hidden_size=32, intermediate_size=128)
HEAD = T.HEAD
TRAIN = dict(lr=3e-3, steps=400)
NOTES = ("* patch_size=1: `embedding.patch_embeddings.projection.weight` is (D, C, 1, 1); grid = image size "
         "(8x8 -> 64 tokens + cls, position_embeddings (1, 65, D)). Otherwise as tintn_vit_fused.\n")


def expected(num_classes=10, img_size=8, in_chans=1):
    return T.make_expected(T.config(BASE, num_classes, img_size, in_chans))


EXPECTED = expected()


def build(num_classes=10, img_size=8, in_chans=1):
    return T.ViTForClassfication(T.config(BASE, num_classes, img_size, in_chans))
