"""(c') Hugging Face ViTForImageClassification as saved by transformers 4.x (legacy key names).

Own modules reproducing the 4.x state-dict layout and forward (checked numerically against the
installed 5.23 package model after applying transformers' own 4.x->5.x key renaming).
"""
import torch
from torch import nn
import torch.nn.functional as F

from tests.implementations.common import make_expected

SOURCE = ('huggingface/transformers v4.x src/transformers/models/vit/modeling_vit.py layout; '
          'renaming table read in transformers==5.23.0:transformers/conversion_mapping.py ("ViTModel")')
DIM, DEPTH, HEADS, MLP, PATCH = 64, 2, 4, 128, 8
EPS = 1e-12
HEAD = ['classifier.']

NOTES = """
* Legacy (4.x) keys: `vit.embeddings.{cls_token, position_embeddings, patch_embeddings.projection}`,
  `vit.encoder.layer.{i}.attention.attention.{query,key,value}`, `vit.encoder.layer.{i}.attention.output.dense`,
  `vit.encoder.layer.{i}.intermediate.dense` (fc1), `vit.encoder.layer.{i}.output.dense` (fc2),
  `vit.encoder.layer.{i}.layernorm_before` / `layernorm_after`, `vit.layernorm`, `classifier`.
  (`vit.pooler.dense` appears only in ViTModel checkpoints with add_pooling_layer=True: Linear + tanh on cls.)
* Beware the two `dense` names: `attention.output.dense` (D->D, attention out proj) vs `output.dense`
  (MLP fc2, mlp_hidden->D). Pre-norm, LN eps 1e-12, exact GELU, cls pooling after `vit.layernorm`.
"""


class _SelfAttn(nn.Module):
    def __init__(self):
        super().__init__()
        self.query = nn.Linear(DIM, DIM)
        self.key = nn.Linear(DIM, DIM)
        self.value = nn.Linear(DIM, DIM)

    def forward(self, x):
        b, n, _ = x.shape
        split = lambda t: t.view(b, n, HEADS, DIM // HEADS).transpose(1, 2)
        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        a = torch.softmax(q @ k.transpose(-1, -2) / (DIM // HEADS) ** 0.5, dim=-1)
        return (a @ v).transpose(1, 2).reshape(b, n, DIM)


class _Dense(nn.Module):
    def __init__(self, i, o):
        super().__init__()
        self.dense = nn.Linear(i, o)


class _Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.attention = _SelfAttn()
        self.output = _Dense(DIM, DIM)

    def forward(self, x):
        return self.output.dense(self.attention(x))


class _Layer(nn.Module):
    def __init__(self):
        super().__init__()
        self.attention = _Attention()
        self.intermediate = _Dense(DIM, MLP)
        self.output = _Dense(MLP, DIM)
        self.layernorm_before = nn.LayerNorm(DIM, eps=EPS)
        self.layernorm_after = nn.LayerNorm(DIM, eps=EPS)

    def forward(self, x):
        x = x + self.attention(self.layernorm_before(x))
        return x + self.output.dense(F.gelu(self.intermediate.dense(self.layernorm_after(x))))


class _PatchEmb(nn.Module):
    def __init__(self, in_chans):
        super().__init__()
        self.projection = nn.Conv2d(in_chans, DIM, PATCH, PATCH)


class _Embeddings(nn.Module):
    def __init__(self, img_size, in_chans):
        super().__init__()
        n = (img_size // PATCH) ** 2
        self.cls_token = nn.Parameter(torch.zeros(1, 1, DIM))
        self.position_embeddings = nn.Parameter(torch.zeros(1, n + 1, DIM))
        self.patch_embeddings = _PatchEmb(in_chans)

    def forward(self, x):
        x = self.patch_embeddings.projection(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        return x + self.position_embeddings


class _Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = nn.ModuleList([_Layer() for _ in range(DEPTH)])


class _ViTModel(nn.Module):
    def __init__(self, img_size, in_chans):
        super().__init__()
        self.embeddings = _Embeddings(img_size, in_chans)
        self.encoder = _Encoder()
        self.layernorm = nn.LayerNorm(DIM, eps=EPS)


class ViTForImageClassificationV4(nn.Module):
    def __init__(self, num_classes, img_size, in_chans):
        super().__init__()
        self.vit = _ViTModel(img_size, in_chans)
        self.classifier = nn.Linear(DIM, num_classes)
        for m in self.modules():  # HF _init_weights (initializer_range 0.02)
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        nn.init.trunc_normal_(self.vit.embeddings.position_embeddings, std=0.02)
        nn.init.trunc_normal_(self.vit.embeddings.cls_token, std=0.02)

    def forward(self, x):
        x = self.vit.embeddings(x)
        for layer in self.vit.encoder.layer:
            x = layer(x)
        return self.classifier(self.vit.layernorm(x)[:, 0])


def to_v5_keys(sd):
    """transformers' own ViTModel renaming (conversion_mapping.py), for the equivalence check."""
    out = {}
    for k, v in sd.items():
        k2 = k.replace('encoder.layer.', 'layers.')
        k2 = k2.replace('attention.attention.query', 'attention.q_proj')
        k2 = k2.replace('attention.attention.key', 'attention.k_proj')
        k2 = k2.replace('attention.attention.value', 'attention.v_proj')
        k2 = k2.replace('attention.output.dense', 'attention.o_proj')
        k2 = k2.replace('intermediate.dense', 'mlp.fc1')
        k2 = k2.replace('output.dense', 'mlp.fc2')
        out[k2] = v
    return out


def expected(num_classes=10, img_size=32, in_chans=1):
    return make_expected(
        SOURCE, embed_dim=DIM, depth=DEPTH, num_heads=HEADS, patch_size=PATCH, img_size=img_size,
        in_chans=in_chans, num_classes=num_classes, class_token=True, pooling='cls',
        pos_embed='learned', pre_norm=True, final_norm=True, activation='gelu', qkv_bias=True,
        mlp_hidden=MLP, buffers={}, patch_embed='conv', timm_expressible=True,
    )


EXPECTED = expected()


def build(num_classes=10, img_size=32, in_chans=1):
    return ViTForImageClassificationV4(num_classes, img_size, in_chans)
