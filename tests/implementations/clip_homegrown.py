"""(h) Homegrown CLIP in openai/CLIP's state-dict layout: image tower `visual.*` (a ViT: conv1 without bias,
class_embedding, positional_embedding, ln_pre, transformer.resblocks, ln_post, proj) beside a text transformer
(token_embedding, positional_embedding, transformer.resblocks, ln_final, text_projection) and logit_scale,
all in ONE state dict, plus -- as homegrown copies commonly do -- the causal mask registered as a PERSISTENT
buffer `attn_mask` (openai/CLIP keeps it as a plain attribute of each block; open_clip registers it with
persistent=False, so neither saves it).

Classification = CLIP zero-shot style: logits = exp(logit_scale) * cos(image_emb, text_emb(class prompt)),
prompts are fixed token sequences [SOT, 3+k, EOT]; trained end to end with cross-entropy over the 10 prompts.
"""
from collections import OrderedDict

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from tests.implementations.common import make_expected

SOURCE = 'openai/CLIP@d05afc436d78f1c48dc0dbf8e5980a9d471f35f6:clip/model.py (VisionTransformer, CLIP, ResidualAttentionBlock)'
V_WIDTH, V_LAYERS, V_HEADS, PATCH, EMBED = 64, 2, 4, 8, 32
T_WIDTH, T_LAYERS, T_HEADS, CTX, VOCAB = 32, 1, 4, 8, 32
SOT, EOT = 1, VOCAB - 1
HEAD = ['visual.proj']

NOTES = """
* Vision keys: `visual.conv1.weight` (no bias), `visual.class_embedding` (D,) -- 1-D --, `visual.positional_embedding`
  (N+1, D) -- 2-D --, `visual.ln_pre`, `visual.transformer.resblocks.{i}.{ln_1, attn.in_proj_weight, attn.in_proj_bias,
  attn.out_proj.*, ln_2, mlp.c_fc, mlp.c_proj}`, `visual.ln_post`, `visual.proj` (D, embed) -- a bare Parameter
  used as x @ proj (transpose of a Linear weight), no bias.
* Vision forward: conv -> cat(class_embedding, patches) + positional -> ln_pre (an EXTRA LN before the blocks;
  timm: norm_pre / pre_norm=True) -> pre-norm blocks with QuickGELU (x*sigmoid(1.702x); timm act 'quick_gelu')
  -> ln_post on the cls token only -> @ proj. timm's vit_*_clip_* models express it exactly.
* Text keys beside it: `token_embedding.weight`, `positional_embedding` (ctx, W), `transformer.resblocks.*`,
  `ln_final`, `text_projection` (W, embed), `logit_scale` (scalar), and the persistent buffer `attn_mask`
  (ctx, ctx) additive causal mask: 0 on/below the diagonal, -inf above.
* nn.MultiheadAttention runs sequence-first (L, N, D) here, as in openai/CLIP; keys are the same either way.
"""


class LayerNorm(nn.LayerNorm):
    def forward(self, x):
        return super().forward(x.float()).type(x.dtype)


class QuickGELU(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


class ResidualAttentionBlock(nn.Module):
    def __init__(self, d_model, n_head):
        super().__init__()
        self.attn = nn.MultiheadAttention(d_model, n_head)
        self.ln_1 = LayerNorm(d_model)
        self.mlp = nn.Sequential(OrderedDict([('c_fc', nn.Linear(d_model, d_model * 4)), ('gelu', QuickGELU()),
                                              ('c_proj', nn.Linear(d_model * 4, d_model))]))
        self.ln_2 = LayerNorm(d_model)

    def forward(self, x, attn_mask=None):
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False, attn_mask=attn_mask)[0]
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, width, layers, heads):
        super().__init__()
        self.resblocks = nn.ModuleList([ResidualAttentionBlock(width, heads) for _ in range(layers)])

    def forward(self, x, attn_mask=None):
        for blk in self.resblocks:
            x = blk(x, attn_mask)
        return x


class VisionTransformer(nn.Module):
    def __init__(self, img_size, in_chans):
        super().__init__()
        self.conv1 = nn.Conv2d(in_chans, V_WIDTH, PATCH, PATCH, bias=False)
        scale = V_WIDTH ** -0.5
        self.class_embedding = nn.Parameter(scale * torch.randn(V_WIDTH))
        self.positional_embedding = nn.Parameter(scale * torch.randn((img_size // PATCH) ** 2 + 1, V_WIDTH))
        self.ln_pre = LayerNorm(V_WIDTH)
        self.transformer = Transformer(V_WIDTH, V_LAYERS, V_HEADS)
        self.ln_post = LayerNorm(V_WIDTH)
        self.proj = nn.Parameter(scale * torch.randn(V_WIDTH, EMBED))

    def forward(self, x):
        x = self.conv1(x).flatten(2).permute(0, 2, 1)
        cls = self.class_embedding.to(x.dtype) + torch.zeros(x.shape[0], 1, x.shape[-1], dtype=x.dtype, device=x.device)
        x = self.ln_pre(torch.cat([cls, x], dim=1) + self.positional_embedding)
        x = self.transformer(x.permute(1, 0, 2)).permute(1, 0, 2)
        return self.ln_post(x[:, 0, :]) @ self.proj


class HomegrownCLIP(nn.Module):
    def __init__(self, num_classes, img_size, in_chans):
        super().__init__()
        self.num_classes = num_classes
        self.visual = VisionTransformer(img_size, in_chans)
        self.transformer = Transformer(T_WIDTH, T_LAYERS, T_HEADS)
        self.token_embedding = nn.Embedding(VOCAB, T_WIDTH)
        self.positional_embedding = nn.Parameter(torch.empty(CTX, T_WIDTH))
        self.ln_final = LayerNorm(T_WIDTH)
        self.text_projection = nn.Parameter(torch.empty(T_WIDTH, EMBED))
        self.logit_scale = nn.Parameter(torch.ones([]) * np.log(1 / 0.07))
        self.register_buffer('attn_mask', torch.full((CTX, CTX), float('-inf')).triu_(1))  # persistent
        self._init()

    def _init(self):  # openai CLIP initialize_parameters
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)
        for tr, w in ((self.transformer, T_WIDTH), (self.visual.transformer, V_WIDTH)):
            n = len(tr.resblocks)
            proj_std, attn_std, fc_std = (w ** -0.5) * ((2 * n) ** -0.5), w ** -0.5, (2 * w) ** -0.5
            for blk in tr.resblocks:
                nn.init.normal_(blk.attn.in_proj_weight, std=attn_std)
                nn.init.normal_(blk.attn.out_proj.weight, std=proj_std)
                nn.init.normal_(blk.mlp.c_fc.weight, std=fc_std)
                nn.init.normal_(blk.mlp.c_proj.weight, std=proj_std)
        nn.init.normal_(self.text_projection, std=T_WIDTH ** -0.5)

    def class_prompts(self, device):
        t = torch.zeros(self.num_classes, CTX, dtype=torch.long, device=device)
        t[:, 0] = SOT
        t[:, 1] = 3 + torch.arange(self.num_classes, device=device)
        t[:, 2] = EOT
        return t

    def encode_image(self, image):
        return self.visual(image)

    def encode_text(self, text):
        x = self.token_embedding(text) + self.positional_embedding
        x = self.transformer(x.permute(1, 0, 2), self.attn_mask).permute(1, 0, 2)
        x = self.ln_final(x)
        return x[torch.arange(x.shape[0]), text.argmax(dim=-1)] @ self.text_projection

    def forward(self, image):
        img = F.normalize(self.encode_image(image), dim=-1)
        txt = F.normalize(self.encode_text(self.class_prompts(image.device)), dim=-1)
        return self.logit_scale.exp() * img @ txt.t()


def expected(num_classes=10, img_size=32, in_chans=1):
    return make_expected(
        SOURCE, embed_dim=V_WIDTH, depth=V_LAYERS, num_heads=V_HEADS, patch_size=PATCH, img_size=img_size,
        in_chans=in_chans, num_classes=num_classes, class_token=True, pooling='cls',
        pos_embed='learned', pre_norm=True, final_norm=True, activation='quick_gelu', qkv_bias=True,
        mlp_hidden=4 * V_WIDTH, buffers={'attn_mask': 'mask'}, patch_embed='conv',
        output='logits (image-text cosine * exp(logit_scale))',
        timm_expressible=True,  # the visual tower (timm vit_*_clip_*: norm_pre, quick_gelu, head = proj^T)
    )


EXPECTED = expected()


def build(num_classes=10, img_size=32, in_chans=1):
    return HomegrownCLIP(num_classes, img_size, in_chans)
