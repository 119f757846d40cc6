"""(d) s-chh/PyTorch-Scratch-Vision-Transformer-ViT `VisionTransformer_pytorch`: conv patches, learned
positions for the PATCHES ONLY (cls token gets none), nn.TransformerEncoder(norm_first=True,
activation=nn.GELU(), norm=LayerNorm), classifier fc1 -> tanh -> fc2 on the cls token.
Own modules, same keys/shapes/forward (repo defaults except n_layers 6 -> 2 and 16 px instead of 28).
"""
import torch
from torch import nn

from tests.implementations.common import make_expected

SOURCE = 's-chh/PyTorch-Scratch-Vision-Transformer-ViT@5d66670b8ac7d70f89bce7823c332958edd6de57:model.py'
DIM, DEPTH, HEADS, MUL, PATCH, DROPOUT = 64, 2, 4, 2, 4, 0.1
HEAD = ['classifier.']

NOTES = """
* Keys: `embedding.conv1` (Conv2d), `embedding.pos_embedding` (1, N, D) -- N rows, NOT N+1: positions are added
  to the patch tokens BEFORE the cls token is prepended, so the cls token has no position embedding --
  `embedding.cls_token` (1,1,D), `encoder.layers.{i}.*` (stock TransformerEncoderLayer, norm_first=True, GELU),
  `encoder.norm` (final LN on all tokens), `classifier.fc1` (D->D) + tanh + `classifier.fc2` (D->classes).
* timm can express it only approximately: pos_embed without the cls row is timm's `no_embed_class=True`,
  and the fc1+tanh pre-logits is timm's `pre_logits` (representation_size) -- both exist in timm.
* Init (vit_init_weights): trunc_normal(0.02) for Linear/Conv weights, zero biases, LN (1, 0);
  NB torch re-initialises MHA in_proj (xavier) inside its own constructor, then .apply() overrides it only for
  nn.Linear children (out_proj), not for the in_proj_weight Parameter.
"""


class EmbedLayer(nn.Module):
    def __init__(self, n_channels, embed_dim, image_size, patch_size, dropout):
        super().__init__()
        self.conv1 = nn.Conv2d(n_channels, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.pos_embedding = nn.Parameter(torch.zeros(1, (image_size // patch_size) ** 2, embed_dim))
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        x = self.conv1(x).flatten(2).transpose(1, 2) + self.pos_embedding
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        return self.dropout(x)


class Classifier(nn.Module):
    def __init__(self, embed_dim, n_classes):
        super().__init__()
        self.fc1 = nn.Linear(embed_dim, embed_dim)
        self.activation = nn.Tanh()
        self.fc2 = nn.Linear(embed_dim, n_classes)

    def forward(self, x):
        return self.fc2(self.activation(self.fc1(x[:, 0, :])))


def _init(m):
    if isinstance(m, (nn.Conv2d, nn.Linear)):
        nn.init.trunc_normal_(m.weight, mean=0.0, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
    elif isinstance(m, EmbedLayer):
        nn.init.trunc_normal_(m.cls_token, std=0.02)
        nn.init.trunc_normal_(m.pos_embedding, std=0.02)


class VisionTransformerPytorch(nn.Module):
    def __init__(self, num_classes, img_size, in_chans):
        super().__init__()
        self.embedding = EmbedLayer(in_chans, DIM, img_size, PATCH, DROPOUT)
        layer = nn.TransformerEncoderLayer(d_model=DIM, nhead=HEADS, dim_feedforward=MUL * DIM, dropout=DROPOUT,
                                           activation=nn.GELU(), batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, DEPTH, norm=nn.LayerNorm(DIM), enable_nested_tensor=False)
        self.classifier = Classifier(DIM, num_classes)
        self.apply(_init)

    def forward(self, x):
        return self.classifier(self.encoder(self.embedding(x)))


def expected(num_classes=10, img_size=16, in_chans=1):  # repo default 28 (speed)
    return make_expected(
        SOURCE, embed_dim=DIM, depth=DEPTH, num_heads=HEADS, patch_size=PATCH, img_size=img_size,
        in_chans=in_chans, num_classes=num_classes, class_token=True, pooling='cls',
        pos_embed='learned', pre_norm=True, final_norm=True, activation='gelu', qkv_bias=True,
        mlp_hidden=MUL * DIM, buffers={}, patch_embed='conv', timm_expressible=True,
    )


EXPECTED = expected()


def build(num_classes=10, img_size=16, in_chans=1):
    return VisionTransformerPytorch(num_classes, img_size, in_chans)
