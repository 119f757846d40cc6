"""Hugging Face SigLIP vision towers (SiglipVisionModel, SiglipModel, SiglipForImageClassification) map onto timm's
VisionTransformer with 'map' pooling, and the rebuilt model computes transformers' own outputs: the tanh GELU
that SigLIP's config names included (the exact GELU is 6e-4 off on these weights, far beyond the tolerance)."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from tests.layout_utils import assert_accounted, assert_same, assert_spec_complete, randomize
from vitdash.identity.architecture import infer_architecture
from vitdash.identity.model import build_model
from vitdash.load.sources import checkpoint_from_state_dict, load, load_timm
from vitdash.trained.verdict import audit

VISION = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, image_size=32,
              patch_size=8)
TEXT = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, vocab_size=100,
            max_position_embeddings=16, bos_token_id=1, eos_token_id=2, pad_token_id=0)


def _perturbed(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Moved off transformers' init (as tests/test_sources.py's hf_model), so that every tensor matters to the
    comparison; i.i.d. noise, so the weights are no more trained than the init was."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


def _image(seed: int = 1) -> torch.Tensor:
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def vision(tmp_path_factory):
    from transformers import SiglipVisionConfig, SiglipVisionModel

    model = _perturbed(SiglipVisionModel(SiglipVisionConfig(**VISION)))
    folder = tmp_path_factory.mktemp("siglip_vision")
    model.save_pretrained(folder)
    return model, folder


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    from transformers import SiglipConfig, SiglipModel

    model = _perturbed(SiglipModel(SiglipConfig(text_config=TEXT, vision_config=VISION)), seed=1)
    folder = tmp_path_factory.mktemp("siglip_full")
    model.save_pretrained(folder)
    return model, folder


def test_vision_model_maps_and_reproduces_pooler_output(vision):
    model, folder = vision
    ckpt = load(folder)
    assert ckpt.layout == "hf" and ckpt.canonical and ckpt.unmapped_keys == []
    assert ckpt.num_params == sum(p.numel() for p in model.parameters())
    assert_accounted(ckpt, load_file(folder / "model.safetensors"))
    assert {"pos_embed", "attn_pool.latent", "attn_pool.q.weight", "attn_pool.kv.bias"} <= set(ckpt.tensors)
    assert "cls_token" not in ckpt.tensors and ckpt.tensors.shape("pos_embed") == (1, 16, 64)
    arch = infer_architecture(ckpt)
    assert (arch.global_pool, arch.num_heads, arch.heads_source, arch.has_class_token) == ("map", 4, "config", False)
    assert (arch.act, arch.norm_eps, arch.pool_latent_len, arch.pool_mlp_hidden) == ("gelu_tanh", 1e-6, 1, 128)
    rebuilt = build_model(ckpt, arch)
    x = _image()
    with torch.no_grad():
        ref = model(pixel_values=x)
        features = rebuilt.forward_features(x)
        assert torch.allclose(features, ref.last_hidden_state, atol=1e-5)  # post_layernorm -> timm's norm
        assert torch.allclose(rebuilt.forward_head(features, pre_logits=True), ref.pooler_output, atol=1e-5)
        assert torch.allclose(rebuilt(x), ref.pooler_output, atol=1e-5)  # num_classes 0: the pooled features


def test_bare_weights_still_get_siglips_activation(vision):
    """A state dict without its config.json: the layout itself says tanh GELU and eps 1e-6 (SigLIP's defaults)."""
    model, _ = vision
    arch = infer_architecture(checkpoint_from_state_dict(model.state_dict()))
    assert (arch.act, arch.norm_eps, arch.global_pool) == ("gelu_tanh", 1e-6, "map")


def test_full_siglip_model_maps_its_vision_tower(full):
    model, folder = full
    saved = load_file(folder / "model.safetensors")
    ckpt = load(folder)
    assert ckpt.layout == "hf" and ckpt.canonical
    assert sorted(ckpt.unmapped_keys) == sorted(k for k in saved if not k.startswith("vision_model."))
    assert {"logit_scale", "logit_bias", "text_model.head.weight"} <= set(ckpt.unmapped_keys)
    assert_accounted(ckpt, saved)
    assert all("text tower" in why for why in ckpt.unmapped_reasons.values())
    assert ckpt.num_params == sum(v.numel() for v in saved.values())  # the file's tensors, text tower included
    arch = infer_architecture(ckpt)  # heads, activation and eps from the nested vision_config
    assert arch.num_params == sum(v.numel() for k, v in saved.items() if k.startswith("vision_model."))
    assert (arch.global_pool, arch.num_heads, arch.heads_source, arch.act) == ("map", 4, "config", "gelu_tanh")
    x = _image(2)
    with torch.no_grad():
        assert torch.allclose(build_model(ckpt, arch)(x), model.vision_model(pixel_values=x).pooler_output,
                              atol=1e-5)


def test_image_classifier_averages_patch_tokens(tmp_path):
    """SiglipForImageClassification feeds the mean patch token to its classifier: timm's 'avg' pooling, with the
    attention-pooling head it carries kept aside."""
    from transformers import SiglipConfig, SiglipForImageClassification

    model = _perturbed(SiglipForImageClassification(SiglipConfig(text_config=TEXT, vision_config=VISION,
                                                                 num_labels=3)), seed=2)
    model.save_pretrained(tmp_path)
    ckpt = load(tmp_path)
    assert ckpt.canonical and ckpt.unmapped_keys and all(".head." in k for k in ckpt.unmapped_keys)
    assert_accounted(ckpt, load_file(tmp_path / "model.safetensors"))
    assert any("SiglipForImageClassification" in n for n in ckpt.metadata["mapping_notes"])
    arch = infer_architecture(ckpt)
    assert (arch.global_pool, arch.num_classes, arch.fc_norm) == ("avg", 3, False)
    x = _image(3)
    with torch.no_grad():
        assert torch.allclose(build_model(ckpt, arch)(x), model(pixel_values=x).logits, atol=1e-5)


@pytest.mark.parametrize("name", ["vit_base_patch32_siglip_256", "vit_base_patch16_clip_quickgelu_224"])
def test_activation_from_timm_definition(name):
    """timm checkpoints have no config activation: the named model's definition gives it (tiny, same recipe)."""
    import timm

    ckpt = load_timm(name, img_size=32, patch_size=8, depth=1, embed_dim=64, num_heads=4)
    with torch.device("meta"):
        expected = type(timm.create_model(name).blocks[0].mlp.act)
    assert type(build_model(ckpt).blocks[0].mlp.act) is expected


def test_audit_reads_random(vision):
    """The tiny tower is transformers' init plus i.i.d. noise: no tensor carries the structure training leaves,
    so the audit must not call it trained."""
    result = audit(load(vision[1]))
    assert result.verdict == "init", result.summary
    assert result.tensor("attn_pool.latent") is not None


# ---- SigLIP 2 (NaFlex): a Linear over flattened patches, the same tower at its position table's grid ----------

SIGLIP2 = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, patch_size=8,
               num_patches=16)


def _naflex_patches(x: torch.Tensor, p: int) -> torch.Tensor:
    """transformers' Siglip2 image processor: row-major patches, each flattened (ph, pw, C)."""
    b, c, h, w = x.shape
    return x.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 3, 5, 1).reshape(b, (h // p) * (w // p), p * p * c)


@pytest.mark.parametrize("kind", ["Siglip2VisionModel", "Siglip2Model"])
def test_siglip2_naflex_tower_at_its_grid(tmp_path, kind):
    import transformers

    if kind == "Siglip2Model":
        model = transformers.Siglip2Model(transformers.Siglip2Config(text_config=TEXT, vision_config=SIGLIP2))
    else:
        model = transformers.Siglip2VisionModel(transformers.Siglip2VisionConfig(**SIGLIP2))
    randomize(model, seed=4)
    model.save_pretrained(tmp_path)
    saved = load_file(tmp_path / "model.safetensors")
    ckpt = load(tmp_path)
    assert ckpt.layout == "hf" and ckpt.metadata["timm_class"] == "VisionTransformer"
    assert ckpt.tensors.shape("patch_embed.proj.weight") == (64, 3, 8, 8)
    assert_accounted(ckpt, saved)
    if kind == "Siglip2Model":
        assert set(ckpt.unmapped_keys) == {k for k in saved if not k.startswith("vision_model.")}
        assert all("text tower" in why for why in ckpt.unmapped_reasons.values())
    arch = infer_architecture(ckpt)
    assert_spec_complete(ckpt, arch)
    assert (arch.embed_dim, arch.depth, arch.num_heads, arch.heads_source, arch.patch_size, arch.img_size) == (
        64, 2, 4, "config", 8, (32, 32))
    assert (arch.num_prefix_tokens, arch.global_pool, arch.act, arch.mlp_type) == (0, "map", "gelu_tanh", "mlp")
    assert (arch.timm_class, arch.pos_embed) == ("VisionTransformer", "learned")
    x = _image(5)
    tower = model.vision_model if kind == "Siglip2Model" else model
    with torch.no_grad():
        theirs = tower(pixel_values=_naflex_patches(x, 8), pixel_attention_mask=torch.ones(2, 16, dtype=torch.long),
                       spatial_shapes=torch.tensor([[4, 4], [4, 4]])).pooler_output
        assert_same(build_model(ckpt, arch)(x), theirs, f"{kind} (NaFlex) at its 4x4 grid, pooled")
        # the patch layout matters: channels-first flattening is far off
        assert (tower(pixel_values=x.reshape(2, 3, 4, 8, 4, 8).permute(0, 2, 4, 1, 3, 5).reshape(2, 16, -1),
                      pixel_attention_mask=torch.ones(2, 16, dtype=torch.long),
                      spatial_shapes=torch.tensor([[4, 4], [4, 4]])).pooler_output - theirs).abs().max() > 1e-3
