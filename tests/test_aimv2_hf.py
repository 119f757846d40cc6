"""Hugging Face AIMv2 towers (Aimv2VisionModel, the vision half of Aimv2Model) map onto timm's aimv2-style
VisionTransformer (RMSNorm, `patch_embed.norm`, SwiGLU as fc1_g/fc1_x, no class token) and compute transformers'
own token features; the attention-pooling head and the text tower are set aside with their reasons."""
from __future__ import annotations

import math
from functools import partial

import pytest
import torch

from tests.layout_utils import assert_accounted, assert_same, image, randomize, saved_tensors
from vitdash.load.checkpoint import Checkpoint
from vitdash.load.sources import load

VISION = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=176, image_size=32,
              patch_size=8, rms_norm_eps=1e-5)
TEXT = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, vocab_size=100,
            max_position_embeddings=16)


def _timm_model(ckpt: Checkpoint, num_heads: int) -> torch.nn.Module:
    """timm's VisionTransformer as its aimv2_* models build it, sized from the canonical tensors and the metadata
    the layout recorded, loaded strictly."""
    from timm.layers import RmsNorm, SwiGLU
    from timm.models.vision_transformer import VisionTransformer

    t = ckpt.tensors
    dim, chans, patch, _ = t.shape("patch_embed.proj.weight")
    norm = partial(RmsNorm, eps=ckpt.metadata["norm_eps"])
    model = VisionTransformer(
        img_size=math.isqrt(t.shape("pos_embed")[1]) * patch, patch_size=patch, in_chans=chans, embed_dim=dim,
        depth=1 + max(int(k.split(".")[1]) for k in t if k.startswith("blocks.")), num_heads=num_heads,
        mlp_ratio=t.shape("blocks.0.mlp.fc1_g.weight")[0] / dim, class_token=False, global_pool="avg", fc_norm=False,
        qkv_bias="blocks.0.attn.qkv.bias" in t, proj_bias="blocks.0.attn.proj.bias" in t, mlp_layer=SwiGLU,
        act_layer=ckpt.metadata["hidden_act"], norm_layer=norm, embed_norm_layer=norm, num_classes=0)
    model.load_state_dict(dict(t.materialize()), strict=True)
    return model.eval()


@pytest.mark.parametrize("biases", [False, True])
def test_vision_model(tmp_path, biases):
    from transformers import Aimv2VisionConfig, Aimv2VisionModel

    model = randomize(Aimv2VisionModel(Aimv2VisionConfig(**VISION, qkv_bias=biases, mlp_bias=biases)))
    model.save_pretrained(tmp_path)
    saved = saved_tensors(tmp_path / "model.safetensors")
    ckpt = load(tmp_path)
    assert ckpt.layout == "hf" and ckpt.metadata["timm_class"] == "VisionTransformer"
    assert {"patch_embed.norm.weight", "blocks.1.mlp.fc1_g.weight", "blocks.1.mlp.fc1_x.weight"} <= set(ckpt.tensors)
    assert_accounted(ckpt, saved)
    assert set(ckpt.unmapped_keys) == {k for k in saved if k.startswith("head.")}
    assert all("attention-pooling head" in why for why in ckpt.unmapped_reasons.values())
    assert (ckpt.metadata["hidden_act"], ckpt.metadata["norm_eps"]) == ("silu", 1e-5)
    x = image()
    rebuilt = _timm_model(ckpt, ckpt.metadata["config"]["num_attention_heads"])
    with torch.no_grad():
        theirs = model(pixel_values=x).last_hidden_state
        assert_same(rebuilt.forward_features(x), theirs, f"Aimv2VisionModel[biases={biases}] tokens")
        for block in rebuilt.blocks:  # the gate is fc1_g: with the halves swapped the features are far off
            block.mlp.fc1_g, block.mlp.fc1_x = block.mlp.fc1_x, block.mlp.fc1_g
        assert (rebuilt.forward_features(x) - theirs).abs().max() > 1e-3


def test_aimv2_model_vision_half(tmp_path):
    from transformers import Aimv2Config, Aimv2Model

    model = randomize(Aimv2Model(Aimv2Config(text_config=TEXT, vision_config=VISION)), seed=1)
    model.save_pretrained(tmp_path)
    saved = saved_tensors(tmp_path / "model.safetensors")
    ckpt = load(tmp_path)
    assert_accounted(ckpt, saved)
    reasons = ckpt.unmapped_reasons
    assert {k for k in saved if not k.startswith("vision_model.") or k.startswith("vision_model.head.")} == set(reasons)
    assert "text tower" in reasons["text_model.rms_norm.weight"] and "text tower" in reasons["visual_projection.weight"]
    assert ckpt.metadata["num_heads"] == 4  # from the nested vision_config
    x = image(2)
    with torch.no_grad():
        assert_same(_timm_model(ckpt, ckpt.metadata["num_heads"]).forward_features(x),
                    model.vision_model(pixel_values=x).last_hidden_state, "Aimv2Model vision half, tokens")


def test_native_tower_has_no_position_table(tmp_path):
    """'native' towers compute a sin-cos table per image size: nothing in the file to map, and said so."""
    from transformers import Aimv2VisionConfig, Aimv2VisionModel

    model = randomize(Aimv2VisionModel(Aimv2VisionConfig(**VISION, is_native=True, use_head=False)), seed=2)
    model.save_pretrained(tmp_path)
    ckpt = load(tmp_path)
    assert_accounted(ckpt, saved_tensors(tmp_path / "model.safetensors"))
    assert "pos_embed" not in ckpt.tensors and ckpt.metadata["pos_embed"] == "fixed"
    assert any("native" in n for n in ckpt.metadata["mapping_notes"])
