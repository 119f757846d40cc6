"""(b) torchvision `VisionTransformer` (package torchvision==0.29.1), 1-channel by replacing conv_proj."""
import math

from torch import nn
from torchvision.models import VisionTransformer

from tests.implementations.common import make_expected

SOURCE = 'torchvision==0.29.1:torchvision/models/vision_transformer.py'
DIM, DEPTH, HEADS, MLP, PATCH = 64, 2, 4, 128, 8
HEAD = ['heads.']
TRAIN = dict(lr=1e-3)

NOTES = """
* Keys: `class_token` (1,1,D), `conv_proj` (Conv2d), `encoder.pos_embedding` (1,N+1,D),
  `encoder.layers.encoder_layer_{i}.{ln_1, self_attention (nn.MultiheadAttention: in_proj_weight/bias,
  out_proj), ln_2, mlp.0, mlp.3}`, `encoder.ln`, `heads.head` (or `heads.pre_logits` + `heads.head` when
  representation_size is set). Layer names are `encoder_layer_0..` (OrderedDict), not integers.
* Pre-norm, LN eps 1e-6, exact GELU, cls pooling after the final `encoder.ln`.
* `heads.head` is ZERO-initialised by torchvision (weight and bias), so an untrained torchvision ViT
  outputs all-zero logits; the "fresh head" variant is therefore exactly zero too.
* 1-channel variant: users replace `conv_proj` with `nn.Conv2d(1, D, P, P)`; we re-init it the way
  torchvision does (trunc_normal std sqrt(1/fan_in), zero bias). `_process_input` asserts H == W == image_size.
"""


def expected(num_classes=10, img_size=32, in_chans=1):
    return make_expected(
        SOURCE, embed_dim=DIM, depth=DEPTH, num_heads=HEADS, patch_size=PATCH, img_size=img_size,
        in_chans=in_chans, num_classes=num_classes, class_token=True, pooling='cls',
        pos_embed='learned', pre_norm=True, final_norm=True, activation='gelu', qkv_bias=True,
        mlp_hidden=MLP, buffers={}, patch_embed='conv', timm_expressible=True,
    )


EXPECTED = expected()


def build(num_classes=10, img_size=32, in_chans=1):
    m = VisionTransformer(image_size=img_size, patch_size=PATCH, num_layers=DEPTH, num_heads=HEADS,
                          hidden_dim=DIM, mlp_dim=MLP, num_classes=num_classes)
    if in_chans != 3:
        conv = nn.Conv2d(in_chans, DIM, kernel_size=PATCH, stride=PATCH)
        fan_in = conv.in_channels * conv.kernel_size[0] * conv.kernel_size[1]
        nn.init.trunc_normal_(conv.weight, std=math.sqrt(1 / fan_in))
        nn.init.zeros_(conv.bias)
        m.conv_proj = conv
    return m
