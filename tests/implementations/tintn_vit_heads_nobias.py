"""(e/f) tintn/vision-transformer-from-scratch, per-head query/key/value WITHOUT bias (config qkv_bias=False)."""
from tests.implementations import tintn_vit_heads as T

SOURCE = T.SOURCE
BASE = dict(T.BASE, qkv_bias=False)
HEAD = T.HEAD
TRAIN = T.TRAIN
NOTES = "* Same as tintn_vit_heads with `qkv_bias=False`: per-head `query`/`key`/`value` have weights only.\n"


def expected(num_classes=10, img_size=32, in_chans=1):
    return T.make_expected(T.config(BASE, num_classes, img_size, in_chans))


EXPECTED = expected()


def build(num_classes=10, img_size=32, in_chans=1):
    return T.ViTForClassfication(T.config(BASE, num_classes, img_size, in_chans))
