"""Hugging Face DINOv3 ViTs, in the Hub's names (`layer.N.`) and transformers 5's (`model.layer.N.`), map onto timm's
Eva as its vit_*_dinov3 models build it, with the rotary settings read from config.json, and compute transformers'
own features at the native size and at another (rotary embeddings recomputed for the grid)."""
from __future__ import annotations

import math
from functools import partial

import pytest
import torch
from safetensors.torch import save_file

from tests.layout_utils import assert_accounted, assert_same, image, randomize, saved_tensors
from vitdash.load.checkpoint import Checkpoint
from vitdash.load.sources import load

BASE = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128, image_size=32,
            patch_size=8, num_register_tokens=4)
VARIANTS = {
    "plain": {},  # GELU MLP, q/v biases, 4 registers (ViT-S/B/L)
    "swiglu": dict(use_gated_mlp=True, hidden_act="silu", intermediate_size=96, query_bias=False, value_bias=False,
                   num_register_tokens=0, layer_norm_eps=1e-6, rope_theta=50.0),  # S+/H+/7B style
    "key_bias": dict(key_bias=True),
}


def _eva(ckpt: Checkpoint, heads: int, img_size: int, **override) -> torch.nn.Module:
    """timm's Eva sized from the canonical tensors and built from the metadata the layout recorded, loaded
    strictly."""
    from timm.layers import LayerNorm
    from timm.models.eva import Eva

    t, meta = ckpt.tensors, ckpt.metadata
    dim, chans, patch, _ = t.shape("patch_embed.proj.weight")
    gated = "blocks.0.mlp.fc1_g.weight" in t
    hidden = t.shape("blocks.0.mlp.fc1_g.weight" if gated else "blocks.0.mlp.fc1.weight")[0]
    kwargs = dict(
        img_size=img_size, patch_size=patch, in_chans=chans, embed_dim=dim, num_heads=heads,
        depth=1 + max(int(k.split(".")[1]) for k in t if k.startswith("blocks.")), mlp_ratio=hidden / dim,
        num_reg_tokens=t.shape("reg_token")[1] if "reg_token" in t else 0, class_token=True, init_values=1.0,
        norm_layer=partial(LayerNorm, eps=meta["norm_eps"]), dynamic_img_size=True, use_fc_norm=False,
        global_pool=meta["global_pool"], num_classes=0, qkv_fused=True,
        qkv_bias="blocks.0.attn.q_bias" in t or "blocks.0.attn.qkv.bias" in t,
        swiglu_mlp=gated, swiglu_align_to=1 if gated else 0, **meta["model_args"])
    model = Eva(**{**kwargs, **override})
    model.load_state_dict(dict(t.materialize()), strict=True)
    return model.eval()


def _hub_names(sd: dict) -> dict:
    return {k.replace("model.layer.", "layer."): v.contiguous() for k, v in sd.items()}


@pytest.mark.parametrize("names", ["hub", "transformers5"])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_dinov3_vit_model(tmp_path, variant, names):
    from transformers import DINOv3ViTConfig, DINOv3ViTModel

    model = randomize(DINOv3ViTModel(DINOv3ViTConfig(**{**BASE, **VARIANTS[variant]})))
    model.save_pretrained(tmp_path)  # transformers 5 writes the Hub's names back
    file = tmp_path / "model.safetensors"
    if names == "transformers5":
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, file, metadata={"format": "pt"})
    saved = saved_tensors(file)
    assert any(k.startswith("model.layer.") for k in saved) == (names == "transformers5")
    ckpt = load(tmp_path)
    assert ckpt.layout == "hf" and ckpt.canonical
    meta = ckpt.metadata
    assert (meta["timm_class"], meta["pos_embed"], meta["global_pool"]) == ("Eva", "rope", "token")
    assert meta["model_args"]["rope_temperature"] == VARIANTS[variant].get("rope_theta", 100.0)
    assert meta["model_args"].get("attn_type") == ("rope" if variant == "key_bias" else None)
    assert_accounted(ckpt, saved)
    empty_registers = ["embeddings.register_tokens"] if variant == "swiglu" else []  # (1, 0, D) in the file
    assert sorted(ckpt.unmapped_keys) == sorted(["embeddings.mask_token", *empty_registers])
    assert "pos_embed" not in ckpt.tensors
    assert ("blocks.0.attn.q_bias" in ckpt.tensors) == (variant == "plain")
    assert ("blocks.0.attn.qkv.bias" in ckpt.tensors) == (variant == "key_bias")
    assert ("blocks.0.mlp.fc1_g.weight" in ckpt.tensors) == (variant == "swiglu")
    heads = meta["config"]["num_attention_heads"]
    rebuilt = _eva(ckpt, heads, meta["config"]["image_size"])
    for size in ((32, 32), (48, 40)):
        x = image(size=size)
        with torch.no_grad():
            theirs = model(pixel_values=x)
            features = rebuilt.forward_features(x)
            assert_same(features, theirs.last_hidden_state, f"DINOv3ViTModel[{variant}, {names}] {size} tokens")
            assert_same(rebuilt.forward_head(features, pre_logits=True), theirs.pooler_output,
                        f"DINOv3ViTModel[{variant}, {names}] {size} pooled")
    with torch.no_grad():  # the rotary settings matter: interleaved instead of rotate-half is far off
        wrong = _eva(ckpt, heads, 32, rope_rotate_half=False)
        assert (wrong.forward_features(x) - theirs.last_hidden_state).abs().max() > 1e-3
    assert math.isclose(meta["norm_eps"], VARIANTS[variant].get("layer_norm_eps", 1e-5))
