"""MAE pretraining checkpoints, facebookresearch/mae's (`{'model': ..., 'args': ...}`) and Hugging Face's
ViTMAEForPreTraining (the Hub's names, the names transformers 5 writes and the ones it holds in memory): the
encoder is the canonical model and computes the source's own unmasked encoding; the decoder is set aside as the
pretraining decoder, every tensor of it, and the fixed sin-cos position table is recorded as fixed."""
from __future__ import annotations

import argparse
import dataclasses
from functools import partial

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from tests.layout_utils import assert_accounted, assert_same, assert_spec_complete, image, randomize, saved_tensors
from vitdash.identity.architecture import infer_architecture
from vitdash.identity.model import build_model
from vitdash.load.sources import load


class _MaskedAutoencoderViT(nn.Module):
    """models_mae.MaskedAutoencoderViT, parameter for parameter (it is built from timm's PatchEmbed and Block),
    with its encoder run at mask ratio 0, as feature extraction does."""

    def __init__(self, img_size=32, patch_size=8, embed_dim=48, depth=2, num_heads=12, decoder_embed_dim=32,
                 decoder_depth=1, decoder_num_heads=2, mlp_ratio=4.0):
        super().__init__()
        from timm.layers import PatchEmbed
        from timm.models.vision_transformer import Block

        norm = partial(nn.LayerNorm, eps=1e-6)
        self.patch_embed = PatchEmbed(img_size, patch_size, 3, embed_dim)
        n = self.patch_embed.num_patches
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, n + 1, embed_dim), requires_grad=False)
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mlp_ratio, qkv_bias=True, norm_layer=norm)
                                    for _ in range(depth))
        self.norm = norm(embed_dim)
        self.decoder_embed = nn.Linear(embed_dim, decoder_embed_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_embed_dim))
        self.decoder_pos_embed = nn.Parameter(torch.zeros(1, n + 1, decoder_embed_dim), requires_grad=False)
        self.decoder_blocks = nn.ModuleList(Block(decoder_embed_dim, decoder_num_heads, mlp_ratio, qkv_bias=True,
                                                  norm_layer=norm) for _ in range(decoder_depth))
        self.decoder_norm = norm(decoder_embed_dim)
        self.decoder_pred = nn.Linear(decoder_embed_dim, patch_size ** 2 * 3)

    def forward_encoder(self, x):
        x = self.patch_embed(x) + self.pos_embed[:, 1:, :]
        cls = (self.cls_token + self.pos_embed[:, :1, :]).expand(x.shape[0], -1, -1)
        x = torch.cat((cls, x), dim=1)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)


DECODER_PREFIXES = ("mask_token", "decoder_embed.", "decoder_pos_embed", "decoder_blocks.", "decoder_norm.",
                    "decoder_pred.")


def test_facebookresearch_pretraining_checkpoint(tmp_path):
    """main_pretrain.py saves {'model', 'optimizer', 'epoch', 'scaler', 'args'}; args.model names the encoder
    (mae_vit_base_patch16: 12 heads, which this tiny one has too)."""
    model = randomize(_MaskedAutoencoderViT())
    file = tmp_path / "checkpoint-799.pth"
    args = argparse.Namespace(model="mae_vit_base_patch16", mask_ratio=0.75, input_size=32, norm_pix_loss=True)
    torch.save({"model": model.state_dict(), "epoch": 799, "args": args}, file)
    saved = saved_tensors(file)
    ckpt = load(file)
    assert ckpt.layout == "mae" and ckpt.metadata["pos_embed"] == "fixed"
    assert_accounted(ckpt, saved)
    assert set(ckpt.unmapped_keys) == {k for k in saved if k.startswith(DECODER_PREFIXES)}
    assert all("pretraining decoder" in why for why in ckpt.unmapped_reasons.values())
    assert any("pretraining decoder" in n for n in ckpt.metadata["mapping_notes"])
    arch = infer_architecture(ckpt)
    assert_spec_complete(ckpt, arch)
    assert (arch.embed_dim, arch.depth, arch.num_heads, arch.heads_source, arch.patch_size, arch.img_size) == (
        48, 2, 12, "config", 8, (32, 32))
    assert (arch.num_prefix_tokens, arch.global_pool, arch.mlp_type, arch.norm_eps) == (1, "token", "mlp", 1e-6)
    assert (arch.timm_class, arch.pos_embed) == ("VisionTransformer", "fixed")  # MAE's saved sin-cos table
    x = image()
    rebuilt = build_model(ckpt, arch)
    with torch.no_grad():
        theirs = model.forward_encoder(x)
        assert_same(rebuilt.forward_features(x), theirs, "MAE pretraining checkpoint, encoder tokens")
        assert_same(rebuilt(x), theirs[:, 0], "MAE pretraining checkpoint, class token")
        wrong = build_model(ckpt, dataclasses.replace(arch, num_heads=4, head_dim=12))  # heads matter
        assert (wrong.forward_features(x) - theirs).abs().max() > 1e-3


def _vit_mae(cls_name: str, seed: int):
    import transformers

    config = transformers.ViTMAEConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                       intermediate_size=128, image_size=32, patch_size=8, decoder_hidden_size=32,
                                       decoder_num_hidden_layers=1, decoder_num_attention_heads=2,
                                       decoder_intermediate_size=64, mask_ratio=0.0)
    return randomize(getattr(transformers, cls_name)(config), seed)


def _hub_decoder_names(sd: dict) -> dict:
    """What the Hub's ViTMAEForPreTraining files hold: transformers 4's decoder names (decoder_layers.N)."""
    return {k.replace("decoder.decoder_encoder.layer.", "decoder.decoder_layers."): v for k, v in sd.items()}


@pytest.mark.parametrize("names", ["saved_by_transformers5", "hub", "transformers5_in_memory"])
def test_hugging_face_vit_mae_for_pretraining(tmp_path, names):
    model = _vit_mae("ViTMAEForPreTraining", seed=1)
    model.save_pretrained(tmp_path)
    file = tmp_path / "model.safetensors"
    if names == "hub":
        save_file(_hub_decoder_names(load_file(file)), file, metadata={"format": "pt"})
    elif names == "transformers5_in_memory":
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, file, metadata={"format": "pt"})
    saved = saved_tensors(file)
    ckpt = load(tmp_path)
    assert ckpt.layout == "mae" and ckpt.metadata["pos_embed"] == "fixed"
    assert_accounted(ckpt, saved)
    assert set(ckpt.unmapped_keys) == {k for k in saved if k.startswith("decoder.")}
    assert all("pretraining decoder" in why for why in ckpt.unmapped_reasons.values())
    arch = infer_architecture(ckpt)
    assert_spec_complete(ckpt, arch)
    assert (arch.embed_dim, arch.depth, arch.num_heads, arch.heads_source, arch.norm_eps) == (64, 2, 4, "config", 1e-12)
    assert (arch.patch_size, arch.img_size, arch.num_prefix_tokens, arch.pos_embed, arch.mlp_type) == (
        8, (32, 32), 1, "fixed", "mlp")
    x = image(2)
    noise = torch.arange(16, dtype=torch.float32).expand(2, -1)  # with mask ratio 0: every patch, in order
    with torch.no_grad():
        theirs = model.vit(pixel_values=x, noise=noise).last_hidden_state
        assert_same(build_model(ckpt, arch).forward_features(x), theirs, f"ViTMAEForPreTraining [{names}] tokens")


def test_hugging_face_vit_mae_model(tmp_path):
    """The encoder alone (ViTMAEModel): no decoder to set aside, its position table still fixed."""
    model = _vit_mae("ViTMAEModel", seed=2)
    model.save_pretrained(tmp_path)
    ckpt = load(tmp_path)
    assert ckpt.layout == "mae" and ckpt.unmapped_keys == [] and ckpt.metadata["pos_embed"] == "fixed"
    assert_accounted(ckpt, saved_tensors(tmp_path / "model.safetensors"))
    x = image(3)
    noise = torch.arange(16, dtype=torch.float32).expand(2, -1)
    with torch.no_grad():
        theirs = model(pixel_values=x, noise=noise).last_hidden_state
        assert_same(build_model(ckpt).forward_features(x), theirs, "ViTMAEModel tokens")
