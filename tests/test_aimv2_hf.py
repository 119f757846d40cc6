"""Hugging Face AIMv2 towers (Aimv2VisionModel, the vision half of Aimv2Model) map onto timm's aimv2-style
VisionTransformer (RMSNorm, `patch_embed.norm`, SwiGLU as fc1_g/fc1_x, no class token) and compute transformers'
own token features; the attention-pooling head and the text tower are set aside with their reasons."""
from __future__ import annotations

import pytest
import torch

from tests.layout_utils import assert_accounted, assert_same, assert_spec_complete, image, randomize, saved_tensors
from vitdash.identity.architecture import infer_architecture
from vitdash.identity.model import build_model
from vitdash.load.checkpoint import Checkpoint
from vitdash.load.sources import load

VISION = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=176, image_size=32,
              patch_size=8, rms_norm_eps=1e-5)
TEXT = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, vocab_size=100,
            max_position_embeddings=16)


def _built(ckpt: Checkpoint) -> torch.nn.Module:
    """The model vitdash builds, after the architecture it reads is checked against the source's config."""
    arch = infer_architecture(ckpt)
    assert_spec_complete(ckpt, arch)
    assert (arch.timm_class, arch.embed_dim, arch.depth, arch.num_heads, arch.heads_source, arch.patch_size) == (
        "VisionTransformer", 64, 2, 4, "config", 8)
    assert (arch.img_size, arch.num_prefix_tokens, arch.pos_embed, arch.global_pool) == ((32, 32), 0, "learned", "avg")
    assert (arch.mlp_type, arch.mlp_layer, arch.norm_type, arch.patch_norm, arch.act, arch.norm_eps) == (
        "swiglu", "SwiGLU", "rmsnorm", True, "silu", 1e-5)
    return build_model(ckpt, arch)


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
    rebuilt = _built(ckpt)
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
        assert_same(_built(ckpt).forward_features(x),
                    model.vision_model(pixel_values=x).last_hidden_state, "Aimv2Model vision half, tokens")


def test_native_tower_gets_its_run_time_table(tmp_path):
    """'native' towers compute a sin-cos table per image size: the one for the config's size is made (the only
    canonical tensor that is not the file's), and the model then computes transformers' features there."""
    from transformers import Aimv2VisionConfig, Aimv2VisionModel

    model = randomize(Aimv2VisionModel(Aimv2VisionConfig(**VISION, is_native=True, use_head=False)), seed=2)
    model.save_pretrained(tmp_path)
    saved = saved_tensors(tmp_path / "model.safetensors")
    ckpt = load(tmp_path)
    assert ckpt.derived == ["pos_embed"] and ckpt.unmapped_keys == [] and "pos_embed" not in saved
    assert ckpt.num_params == sum(v.numel() for v in saved.values()) == ckpt.tensors.num_params - 16 * 64
    assert ckpt.metadata["pos_embed"] == "fixed" and any("native" in n for n in ckpt.metadata["mapping_notes"])
    arch = infer_architecture(ckpt)
    assert (arch.pos_embed, arch.grid_size) == ("fixed", (4, 4))
    x = image(3)
    with torch.no_grad():
        assert_same(build_model(ckpt, arch).forward_features(x), model(pixel_values=x).last_hidden_state,
                    "Aimv2VisionModel (native) tokens")


def _apple_name(key: str) -> str:
    """timm's aimv2 key -> the name Apple's AIMv2Model (the apple/aimv2-* repositories' remote code) saves."""
    key = key.replace("mlp.fc1_g", "mlp.fc1").replace("mlp.fc1_x", "mlp.fc3").replace("norm1", "norm_1")
    key = key.replace("norm2", "norm_2").replace("patch_embed.", "preprocessor.patchifier.")
    key = key.replace("pos_embed", "preprocessor.pos_embed")
    return "trunk.post_trunk_norm." + key[5:] if key.startswith("norm.") else (
        "trunk." + key if key.startswith("blocks.") else key)


def test_apples_own_names_from_the_hub_repositories(tmp_path):
    """A folder as the apple/aimv2-* repositories hold it (Apple's names and config.json): timm's checkpoint filter
    reads these names back to its own, and vitdash's model computes timm's aimv2 features."""
    import json

    import timm
    from safetensors.torch import save_file
    from timm.models.vision_transformer import checkpoint_filter_fn

    model = randomize(timm.create_model("aimv2_large_patch14_224", pretrained=False, img_size=32, patch_size=8,
                                        embed_dim=64, depth=2, num_heads=4, num_classes=0), seed=3).eval()
    apple = {_apple_name(k): v.detach().contiguous() for k, v in model.state_dict().items()}
    assert checkpoint_filter_fn(apple, model).keys() == model.state_dict().keys()
    save_file(apple, tmp_path / "model.safetensors")
    (tmp_path / "config.json").write_text(json.dumps(dict(
        model_type="aimv2", architectures=["AIMv2Model"], hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=model.blocks[0].mlp.fc2.in_features, num_channels=3, image_size=32, patch_size=8,
        rms_norm_eps=1e-5, qkv_bias=False, use_bias=False)))
    ckpt = load(tmp_path)
    assert_accounted(ckpt, apple)
    assert ckpt.unmapped_keys == []
    x = image(4)
    with torch.no_grad():
        assert_same(_built(ckpt).forward_features(x), model.forward_features(x), "Apple's AIMv2 names, tokens")
