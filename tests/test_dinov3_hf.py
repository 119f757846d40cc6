"""Hugging Face DINOv3 ViTs, in the Hub's names (`layer.N.`) and transformers 5's (`model.layer.N.`), map onto timm's
Eva as its vit_*_dinov3 models build it, with the rotary settings read from config.json, and the model vitdash
builds computes transformers' own features at the native size and at another (rotary embeddings recomputed for
the grid)."""
from __future__ import annotations

import dataclasses

import pytest
import torch
from safetensors.torch import save_file

from tests.layout_utils import assert_accounted, assert_same, assert_spec_complete, image, randomize, saved_tensors
from vitdash.identity.architecture import infer_architecture
from vitdash.identity.model import build_model
from vitdash.load.sources import load

BASE = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128, image_size=32,
            patch_size=8, num_register_tokens=4)
VARIANTS = {
    "plain": {},  # GELU MLP, q/v biases, 4 registers (ViT-S/B/L)
    "swiglu": dict(use_gated_mlp=True, hidden_act="silu", intermediate_size=96, query_bias=False, value_bias=False,
                   num_register_tokens=0, layer_norm_eps=1e-6, rope_theta=50.0),  # S+/H+/7B style
    "key_bias": dict(key_bias=True),
}


@pytest.mark.parametrize("names", ["hub", "transformers5"])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_dinov3_vit_model(tmp_path, variant, names):
    from transformers import DINOv3ViTConfig, DINOv3ViTModel

    config = {**BASE, **VARIANTS[variant]}
    model = randomize(DINOv3ViTModel(DINOv3ViTConfig(**config)))
    model.save_pretrained(tmp_path)  # transformers 5 writes the Hub's names back
    file = tmp_path / "model.safetensors"
    if names == "transformers5":
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, file, metadata={"format": "pt"})
    saved = saved_tensors(file)
    assert any(k.startswith("model.layer.") for k in saved) == (names == "transformers5")
    ckpt = load(tmp_path)
    assert ckpt.layout == "hf" and ckpt.canonical
    assert_accounted(ckpt, saved)
    empty_registers = ["embeddings.register_tokens"] if variant == "swiglu" else []  # (1, 0, D) in the file
    assert sorted(ckpt.unmapped_keys) == sorted(["embeddings.mask_token", *empty_registers])
    arch = infer_architecture(ckpt)
    assert_spec_complete(ckpt, arch)
    registers = config["num_register_tokens"]
    assert (arch.timm_class, arch.embed_dim, arch.depth, arch.num_heads, arch.patch_size, arch.img_size) == (
        "Eva", 64, 2, 4, 8, (32, 32))
    assert (arch.num_prefix_tokens, arch.num_reg_tokens, arch.pos_embed, arch.global_pool) == (
        1 + registers, registers, "rope", "token")
    assert (arch.mlp_type, arch.attn_bias, arch.layer_scale) == (
        "swiglu" if variant == "swiglu" else "mlp", {"plain": "qv", "swiglu": "none", "key_bias": "qkv"}[variant], True)
    assert (arch.norm_eps, arch.model_args["rope_temperature"]) == (config.get("layer_norm_eps", 1e-5),
                                                                   config.get("rope_theta", 100.0))
    rebuilt = build_model(ckpt, arch)
    for size in ((32, 32), (48, 40)):
        x = image(size=size)
        with torch.no_grad():
            theirs = model(pixel_values=x)
            assert_same(rebuilt.forward_features(x), theirs.last_hidden_state,
                        f"DINOv3ViTModel[{variant}, {names}] {size} tokens")
            assert_same(rebuilt(x), theirs.pooler_output, f"DINOv3ViTModel[{variant}, {names}] {size} pooled")
    with torch.no_grad():  # the rotary settings matter: interleaved instead of rotate-half is far off
        wrong = build_model(ckpt, dataclasses.replace(arch, model_args={**arch.model_args, "rope_rotate_half": False}))
        assert (wrong.forward_features(x) - theirs.last_hidden_state).abs().max() > 1e-3
