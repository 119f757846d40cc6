"""(c) Hugging Face `ViTForImageClassification` from the installed package (transformers==5.23.0).

NB transformers 5.x renamed the ViT modules; this is the layout a checkpoint saved by 5.x has.
Checkpoints saved by 4.x (most files on disk / on the Hub) use the legacy names -> see hf_vit_legacy.py.
"""
from transformers import ViTConfig, ViTForImageClassification

from tests.implementations.common import make_expected

SOURCE = 'transformers==5.23.0:transformers/models/vit/modeling_vit.py'
DIM, DEPTH, HEADS, MLP, PATCH = 64, 2, 4, 128, 8
HEAD = ['classifier.']

NOTES = """
* transformers 5.23 keys: `vit.embeddings.{cls_token, position_embeddings, patch_embeddings.projection}`,
  `vit.layers.{i}.attention.{q_proj,k_proj,v_proj,o_proj}`, `vit.layers.{i}.{layernorm_before,
  layernorm_after}`, `vit.layers.{i}.mlp.{fc1,fc2}`, `vit.layernorm`, `classifier`.
  `transformers/conversion_mapping.py` maps the 4.x names (`encoder.layer.` -> `layers.`,
  `attention.attention.query` -> `attention.q_proj`, `attention.output.dense` -> `attention.o_proj`,
  `intermediate.dense` -> `mlp.fc1`, `output.dense` -> `mlp.fc2`) when loading old checkpoints.
* Pre-norm, LayerNorm eps 1e-12 (config default), exact GELU, cls pooling after `vit.layernorm`.
  No pooler in ViTForImageClassification (add_pooling_layer=False).
* The package model returns an ImageClassifierOutput; the subclass here only unwraps `.logits`
  (keys unchanged).
"""


class _ViTLogits(ViTForImageClassification):
    def forward(self, x):  # noqa: D401 - keys identical to the parent class
        return super().forward(pixel_values=x).logits


def _config(num_classes, img_size, in_chans):
    return ViTConfig(hidden_size=DIM, num_hidden_layers=DEPTH, num_attention_heads=HEADS,
                     intermediate_size=MLP, image_size=img_size, patch_size=PATCH,
                     num_channels=in_chans, num_labels=num_classes)


def expected(num_classes=10, img_size=32, in_chans=1):
    return make_expected(
        SOURCE, embed_dim=DIM, depth=DEPTH, num_heads=HEADS, patch_size=PATCH, img_size=img_size,
        in_chans=in_chans, num_classes=num_classes, class_token=True, pooling='cls',
        pos_embed='learned', pre_norm=True, final_norm=True, activation='gelu', qkv_bias=True,
        mlp_hidden=MLP, buffers={}, patch_embed='conv', timm_expressible=True,
    )


EXPECTED = expected()


def build(num_classes=10, img_size=32, in_chans=1):
    return _ViTLogits(_config(num_classes, img_size, in_chans))
