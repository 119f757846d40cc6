"""(k) facebookresearch/mae `MaskedAutoencoderViT` (models_mae.py): timm PatchEmbed + timm Blocks (the
installed timm 1.0.31 classes, as upstream imports them), fixed 2-D sin-cos `pos_embed` / `decoder_pos_embed`
saved in the state dict as requires_grad=False PARAMETERS, `mask_token`, `decoder_*` keys.

One addition for this harness: `head` (Linear on the normed cls token), which a pre-training checkpoint does
not have (listed in EXPECTED['not_in_source']). Training = MAE reconstruction loss (mask ratio 0.75) + CE on
the head over the unmasked encoder, so encoder AND decoder are trained.
"""
from functools import partial

import torch
from torch import nn
import torch.nn.functional as F
from timm.models.vision_transformer import Block, PatchEmbed

from tests.implementations.common import make_expected, mae_2d_sincos

SOURCE = ('facebookresearch/mae@efb2a8062c206524e35e47d04501ed4f544c0ae8:models_mae.py, util/pos_embed.py '
          '(timm==1.0.31 Block/PatchEmbed)')
DIM, DEPTH, HEADS, PATCH, MLP_RATIO = 64, 2, 4, 8, 4.0
DEC_DIM, DEC_DEPTH, DEC_HEADS = 32, 1, 4
MASK_RATIO = 0.75
HEAD = ['head.']

NOTES = """
* Encoder keys: `cls_token` (1,1,D), `pos_embed` (1,N+1,D) FIXED sincos (requires_grad=False Parameter => saved,
  identical before/after training; row 0 (cls) all zeros), `patch_embed.proj` (Conv2d), `blocks.{i}.{norm1,
  attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}` (qkv_bias=True, LN eps 1e-6), `norm`.
* Decoder keys: `mask_token` (1,1,Dd), `decoder_embed` (Linear D->Dd), `decoder_pos_embed` (1,N+1,Dd) fixed sincos,
  `decoder_blocks.{i}.*`, `decoder_norm`, `decoder_pred` (Linear Dd -> P*P*C, output flattened (p q c) = channel
  LAST, from patchify's einsum 'nchpwq->nhwpqc').
* pos table: channels [0:D/2] encode the column (x) index, [D/2:D] the row (y) index, each [sin | cos] with
  omega_i = 10000^(-i/(D/4)), i < D/4 (util/pos_embed.py; np.meshgrid(grid_w, grid_h) puts w first).
* Encoder = timm ViT (pre-norm, GELU, cls token, final `norm`); MAE fine-tuning (models_vit.py) uses
  global_pool (mean of patch tokens + fc_norm) by default instead -- not reproduced here.
* Init: xavier_uniform on every Linear (incl. fused qkv) and on the patch conv viewed as (D, C*P*P);
  cls_token / mask_token normal(0.02); LN (1, 0).
"""


class MaskedAutoencoderViT(nn.Module):
    def __init__(self, num_classes, img_size, in_chans):
        super().__init__()
        norm_layer = partial(nn.LayerNorm, eps=1e-6)
        self.in_chans = in_chans
        self.patch_embed = PatchEmbed(img_size, PATCH, in_chans, DIM)
        n = self.patch_embed.num_patches
        self.cls_token = nn.Parameter(torch.zeros(1, 1, DIM))
        self.pos_embed = nn.Parameter(torch.zeros(1, n + 1, DIM), requires_grad=False)
        self.blocks = nn.ModuleList([Block(DIM, HEADS, MLP_RATIO, qkv_bias=True, norm_layer=norm_layer)
                                     for _ in range(DEPTH)])
        self.norm = norm_layer(DIM)
        self.decoder_embed = nn.Linear(DIM, DEC_DIM, bias=True)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, DEC_DIM))
        self.decoder_pos_embed = nn.Parameter(torch.zeros(1, n + 1, DEC_DIM), requires_grad=False)
        self.decoder_blocks = nn.ModuleList([Block(DEC_DIM, DEC_HEADS, MLP_RATIO, qkv_bias=True, norm_layer=norm_layer)
                                             for _ in range(DEC_DEPTH)])
        self.decoder_norm = norm_layer(DEC_DIM)
        self.decoder_pred = nn.Linear(DEC_DIM, PATCH ** 2 * in_chans, bias=True)
        self.head = nn.Linear(DIM, num_classes)          # harness addition (not in models_mae.py)
        self.initialize_weights()

    def initialize_weights(self):
        g = int(self.patch_embed.num_patches ** 0.5)
        self.pos_embed.data.copy_(mae_2d_sincos(DIM, g, cls_token=True).unsqueeze(0))
        self.decoder_pos_embed.data.copy_(mae_2d_sincos(DEC_DIM, g, cls_token=True).unsqueeze(0))
        w = self.patch_embed.proj.weight.data
        nn.init.xavier_uniform_(w.view([w.shape[0], -1]))
        nn.init.normal_(self.cls_token, std=0.02)
        nn.init.normal_(self.mask_token, std=0.02)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m):
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.constant_(m.bias, 0)
        elif isinstance(m, nn.LayerNorm):
            nn.init.constant_(m.bias, 0)
            nn.init.constant_(m.weight, 1.0)

    def patchify(self, imgs):
        p, c = PATCH, self.in_chans
        h = w = imgs.shape[2] // p
        x = imgs.reshape(imgs.shape[0], c, h, p, w, p)
        return torch.einsum('nchpwq->nhwpqc', x).reshape(imgs.shape[0], h * w, p * p * c)

    @staticmethod
    def random_masking(x, mask_ratio):
        n, l, d = x.shape
        keep = int(l * (1 - mask_ratio))
        ids_shuffle = torch.argsort(torch.rand(n, l, device=x.device), dim=1)
        ids_restore = torch.argsort(ids_shuffle, dim=1)
        x_masked = torch.gather(x, 1, ids_shuffle[:, :keep].unsqueeze(-1).repeat(1, 1, d))
        mask = torch.ones(n, l, device=x.device)
        mask[:, :keep] = 0
        return x_masked, torch.gather(mask, 1, ids_restore), ids_restore

    def forward_encoder(self, x, mask_ratio):
        x = self.patch_embed(x) + self.pos_embed[:, 1:, :]
        x, mask, ids_restore = self.random_masking(x, mask_ratio)
        cls = (self.cls_token + self.pos_embed[:, :1, :]).expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x), mask, ids_restore

    def forward_decoder(self, x, ids_restore):
        x = self.decoder_embed(x)
        mask_tokens = self.mask_token.repeat(x.shape[0], ids_restore.shape[1] + 1 - x.shape[1], 1)
        x_ = torch.cat([x[:, 1:, :], mask_tokens], dim=1)
        x_ = torch.gather(x_, 1, ids_restore.unsqueeze(-1).repeat(1, 1, x.shape[2]))
        x = torch.cat([x[:, :1, :], x_], dim=1) + self.decoder_pos_embed
        for blk in self.decoder_blocks:
            x = blk(x)
        return self.decoder_pred(self.decoder_norm(x))[:, 1:, :]

    def forward_loss(self, imgs, pred, mask):
        loss = ((pred - self.patchify(imgs)) ** 2).mean(dim=-1)
        return (loss * mask).sum() / mask.sum()

    def forward_pretrain(self, imgs, mask_ratio=MASK_RATIO):
        latent, mask, ids_restore = self.forward_encoder(imgs, mask_ratio)
        pred = self.forward_decoder(latent, ids_restore)
        return self.forward_loss(imgs, pred, mask), pred, mask

    def forward(self, imgs):  # classification through the (unmasked) encoder + harness head
        latent, _, _ = self.forward_encoder(imgs, 0.0)
        return self.head(latent[:, 0])


def loss_fn(model, x, y):
    rec, _, _ = model.forward_pretrain(x)
    return rec + F.cross_entropy(model(x), y)


def expected(num_classes=10, img_size=32, in_chans=1):
    return make_expected(
        SOURCE, embed_dim=DIM, depth=DEPTH, num_heads=HEADS, patch_size=PATCH, img_size=img_size,
        in_chans=in_chans, num_classes=num_classes, class_token=True, pooling='cls',
        pos_embed='sincos_buffer', pre_norm=True, final_norm=True, activation='gelu', qkv_bias=True,
        mlp_hidden=int(MLP_RATIO * DIM), buffers={},
        frozen_params={'pos_embed': 'sincos', 'decoder_pos_embed': 'sincos'},
        patch_embed='conv', timm_expressible=True, not_in_source=['head.weight', 'head.bias'],
    )


EXPECTED = expected()


def build(num_classes=10, img_size=32, in_chans=1):
    return MaskedAutoencoderViT(num_classes, img_size, in_chans)
