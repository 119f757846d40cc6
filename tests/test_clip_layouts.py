"""CLIP image towers in Hugging Face's names (CLIPVisionModel, CLIPVisionModelWithProjection, CLIPModel; the Hub's
`vision_model.` names and transformers 5's bare ones) and in OpenAI/OpenCLIP's own (`visual.*` beside the text
tower), saved the way each library saves them, map onto timm's VisionTransformer and compute the library's own
pooled image feature. The text tower and the joint-space projection are set aside, by name and reason."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from tests.layout_utils import assert_accounted, assert_same, assert_spec_complete, image, randomize, saved_tensors
from vitdash.identity.architecture import infer_architecture
from vitdash.identity.model import build_model
from vitdash.identity.timm_defs import clear_cache
from vitdash.load.sources import load

VISION = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, image_size=32,
              patch_size=8)
TEXT = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, vocab_size=100,
            max_position_embeddings=16, bos_token_id=0, eos_token_id=1, pad_token_id=1)
OTHER_ACT = {"quick_gelu": "gelu", "gelu": "quick_gelu"}


def _check_architecture(ckpt, act: str, heads: int = 4, width: int = 64):
    arch = infer_architecture(ckpt)
    assert_spec_complete(ckpt, arch)
    assert (arch.embed_dim, arch.depth, arch.num_heads, arch.patch_size, arch.img_size) == (width, 2, heads, 8,
                                                                                          (32, 32))
    assert (arch.timm_class, arch.num_prefix_tokens, arch.has_class_token, arch.global_pool) == (
        "VisionTransformer", 1, True, "token")
    assert (arch.pos_embed, arch.mlp_type) == ("learned", "mlp")
    assert (arch.act, arch.norm_eps, arch.pre_norm, arch.patch_bias, arch.num_classes) == (act, 1e-5, True, False, 0)
    return arch


def _pooled(ckpt, arch, x):
    with torch.no_grad():
        return build_model(ckpt, arch)(x)


def _sensitive(ckpt, arch, x, theirs):
    """The comparison can fail: the other GELU (same shapes) is far outside the tolerance."""
    wrong = _pooled(ckpt, dataclasses.replace(arch, act=OTHER_ACT[arch.act]), x)
    assert (wrong - theirs).abs().max() > 1e-4


# ---- Hugging Face ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("names", ["transformers5", "hub"])
@pytest.mark.parametrize("act", ["quick_gelu", "gelu"])
def test_clip_vision_model(tmp_path, act, names):
    from transformers import CLIPVisionConfig, CLIPVisionModel

    model = randomize(CLIPVisionModel(CLIPVisionConfig(**VISION, hidden_act=act)))
    model.save_pretrained(tmp_path)  # transformers 5 writes its module names: no `vision_model.`
    file = tmp_path / "model.safetensors"
    if names == "hub":  # the Hub's files (transformers 4): under `vision_model.`, older ones with position ids
        sd = {f"vision_model.{k}": v for k, v in load_file(file).items()}
        sd["vision_model.embeddings.position_ids"] = torch.arange(17)[None]
        save_file(sd, file, metadata={"format": "pt"})
    ckpt = load(tmp_path)
    assert ckpt.layout == "hf" and ckpt.metadata["timm_class"] == "VisionTransformer"
    assert_accounted(ckpt, saved_tensors(file))
    assert ckpt.unmapped_keys == (["vision_model.embeddings.position_ids"] if names == "hub" else [])
    arch = _check_architecture(ckpt, act)
    assert arch.heads_source == "config"
    x = image()
    with torch.no_grad():
        theirs = model(pixel_values=x).pooler_output  # post_layernorm(class token)
    assert_same(_pooled(ckpt, arch, x), theirs, f"CLIPVisionModel[{act}, {names} names]")
    _sensitive(ckpt, arch, x, theirs)


def test_clip_model_vision_half(tmp_path):
    from transformers import CLIPConfig, CLIPModel

    model = randomize(CLIPModel(CLIPConfig(text_config=TEXT, vision_config={**VISION, "hidden_act": "gelu"},
                                           projection_dim=24)), seed=1)
    model.save_pretrained(tmp_path)
    saved = saved_tensors(tmp_path / "model.safetensors")
    ckpt = load(tmp_path)
    assert ckpt.layout == "hf" and ckpt.canonical
    assert_accounted(ckpt, saved)
    reasons = ckpt.unmapped_reasons
    assert {k for k in saved if not k.startswith("vision_model.")} == set(reasons)
    assert "text tower" in reasons["text_model.final_layer_norm.weight"] and "text tower" in reasons["logit_scale"]
    assert "joint image-text space" in reasons["visual_projection.weight"]
    arch = _check_architecture(ckpt, "gelu")  # heads and activation from the nested vision_config
    assert arch.heads_source == "config"
    x = image(2)
    ours = _pooled(ckpt, arch, x)
    with torch.no_grad():
        pooled = model.vision_model(pixel_values=x).pooler_output
        features = model.get_image_features(pixel_values=x)
    features = getattr(features, "pooler_output", features)
    assert_same(ours, pooled, "CLIPModel vision half, pooled")
    assert_same(ours @ saved["visual_projection.weight"].T, features, "CLIPModel get_image_features")
    _sensitive(ckpt, arch, x, pooled)


def test_clip_vision_model_with_projection(tmp_path):
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    model = randomize(CLIPVisionModelWithProjection(CLIPVisionConfig(**VISION, projection_dim=24)), seed=2)
    model.save_pretrained(tmp_path)
    saved = saved_tensors(tmp_path / "model.safetensors")
    ckpt = load(tmp_path)
    assert_accounted(ckpt, saved)
    assert ckpt.unmapped_keys == ["visual_projection.weight"]
    arch = _check_architecture(ckpt, "quick_gelu")  # CLIPVisionConfig's default, as OpenAI's
    x = image(3)
    with torch.no_grad():
        embeds = model(pixel_values=x).image_embeds
    assert_same(_pooled(ckpt, arch, x) @ saved["visual_projection.weight"].T, embeds,
                "CLIPVisionModelWithProjection image_embeds")


# ---- OpenAI / OpenCLIP ----------------------------------------------------------------------------------------

OC_TEXT = dict(context_length=8, vocab_size=100, width=32, heads=2, layers=1)
OC_VISION = dict(image_size=32, patch_size=8, width=64, layers=2, head_width=16)
OC_VARIANTS = {
    "openai": dict(quick_gelu=True, vision_cfg=OC_VISION),
    "layer_scale": dict(quick_gelu=False, vision_cfg={**OC_VISION, "ls_init_value": 0.5}),
    "avg_pool_ln_after": dict(quick_gelu=False, vision_cfg={**OC_VISION, "pool_type": "avg",
                                                            "final_ln_after_pool": True}),
    "avg_pool": dict(quick_gelu=False, vision_cfg={**OC_VISION, "pool_type": "avg"}),
    "clipa": dict(quick_gelu=False, vision_cfg={**OC_VISION, "no_ln_pre": True, "pool_type": "avg",
                                                "final_ln_after_pool": True}),
}


def _open_clip(quick_gelu: bool, vision_cfg: dict, seed: int = 0, embed_dim: int = 24):
    from open_clip.model import CLIP

    return randomize(CLIP(embed_dim=embed_dim, vision_cfg=vision_cfg, text_cfg=OC_TEXT, quick_gelu=quick_gelu), seed)


def _open_clip_features(model, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(pooled image feature before the projection, encode_image), from open_clip's own forward."""
    with torch.no_grad():
        encoded = model.encode_image(x)
        proj, model.visual.proj = model.visual.proj, None
        pooled = model.visual(x)
        model.visual.proj = proj
    return pooled, encoded


@pytest.mark.parametrize("variant", list(OC_VARIANTS))
def test_open_clip_hub_folder(tmp_path, variant):
    """A Hub folder as open_clip publishes it: open_clip_pytorch_model.bin (the whole CLIP's state dict) beside
    open_clip_config.json (model_cfg + preprocess_cfg)."""
    cfg = OC_VARIANTS[variant]
    model = _open_clip(**cfg)
    torch.save(model.state_dict(), tmp_path / "open_clip_pytorch_model.bin")
    mean = [0.5, 0.4, 0.3]
    (tmp_path / "open_clip_config.json").write_text(json.dumps({
        "model_cfg": {"embed_dim": 24, "text_cfg": OC_TEXT, **cfg},
        "preprocess_cfg": {"mean": mean, "std": [0.2, 0.2, 0.2], "interpolation": "bicubic"}}))
    saved = saved_tensors(tmp_path / "open_clip_pytorch_model.bin")
    ckpt = load(tmp_path)
    assert ckpt.layout == "open_clip" and ckpt.metadata["timm_class"] == "VisionTransformer"
    assert ckpt.metadata["pretrained_cfg"]["mean"] == tuple(mean)
    assert_accounted(ckpt, saved)
    reasons = ckpt.unmapped_reasons
    assert {k for k in saved if not k.startswith("visual.")} | {"visual.proj"} == set(reasons)
    assert "text tower" in reasons["transformer.resblocks.0.attn.in_proj_weight"]
    assert "joint image-text space" in reasons["visual.proj"]
    arch = infer_architecture(ckpt)
    assert_spec_complete(ckpt, arch)
    assert (arch.embed_dim, arch.depth, arch.num_heads, arch.heads_source, arch.patch_size, arch.img_size) == (
        64, 2, 4, "config", 8, (32, 32))
    assert (arch.act, arch.norm_eps, arch.pre_norm, arch.patch_bias) == (
        "quick_gelu" if cfg["quick_gelu"] else "gelu", 1e-5, variant != "clipa", False)
    assert (arch.timm_class, arch.pos_embed, arch.mlp_type, arch.num_prefix_tokens) == (
        "VisionTransformer", "learned", "mlp", 1)
    assert arch.layer_scale == (variant == "layer_scale")
    assert arch.global_pool == {"tok": "token", "avg": "avg"}[cfg["vision_cfg"].get("pool_type", "tok")]
    assert arch.fc_norm == cfg["vision_cfg"].get("final_ln_after_pool", False)
    x = image(4)
    pooled, encoded = _open_clip_features(model, x)
    ours = _pooled(ckpt, arch, x)
    assert_same(ours, pooled, f"OpenCLIP[{variant}] pooled")
    assert_same(ours @ saved["visual.proj"], encoded, f"OpenCLIP[{variant}] encode_image")
    _sensitive(ckpt, arch, x, pooled)


def test_open_clip_training_checkpoint_without_config(tmp_path):
    """open_clip's training loop saves {'epoch', 'name', 'state_dict'} with DDP's `module.` and no model config:
    the head count comes from the usual head width, the activation is open_clip's default GELU, and a note says
    what was assumed."""
    model = _open_clip(False, {**OC_VISION, "width": 128, "head_width": 64}, seed=3)
    file = tmp_path / "epoch_3.pt"
    torch.save({"epoch": 3, "name": "run", "state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}},
               file)
    ckpt = load(file)
    assert ckpt.layout == "open_clip" and ckpt.wrappers == ["state_dict", "module"]
    assert_accounted(ckpt, saved_tensors(file), prefix="module.")
    notes = ckpt.metadata["mapping_notes"]
    assert any("no open_clip model config" in n for n in notes) and any("preprocess_cfg" in n for n in notes)
    assert ckpt.metadata["pretrained_cfg"]["mean"] == (0.48145466, 0.4578275, 0.40821073)  # open_clip's default
    arch = infer_architecture(ckpt)
    assert_spec_complete(ckpt, arch)
    assert (arch.embed_dim, arch.num_heads, arch.act) == (128, 2, "gelu") and arch.heads_source != "config"
    x = image(5)
    assert_same(_pooled(ckpt, arch, x), _open_clip_features(model, x)[0], "OpenCLIP training checkpoint, pooled")


def test_openai_state_dict_with_its_settings(tmp_path):
    """OpenAI's files carry input_resolution/context_length/vocab_size beside the weights: they say QuickGELU."""
    model = _open_clip(True, {**OC_VISION, "width": 128, "head_width": 64}, seed=4)
    sd = {**model.state_dict(), "input_resolution": torch.tensor(32), "context_length": torch.tensor(8),
          "vocab_size": torch.tensor(100)}
    torch.save(sd, tmp_path / "ViT-tiny.pt")
    ckpt = load(tmp_path / "ViT-tiny.pt")
    assert_accounted(ckpt, sd)
    assert "recorded settings" in ckpt.unmapped_reasons["input_resolution"]
    arch = infer_architecture(ckpt)
    assert_spec_complete(ckpt, arch)
    assert arch.act == "quick_gelu"
    x = image(6)
    assert_same(_pooled(ckpt, arch, x), _open_clip_features(model, x)[0], "OpenAI CLIP state dict, pooled")


def test_open_clip_timm_trunk(tmp_path, monkeypatch, request):
    """open_clip's SigLIP towers are timm models under `visual.trunk.` (attention pooling, no projection), named in
    the config: timm's definition of that name says the heads and the activation. (timm's named model is shrunk
    where open_clip creates it, so the test stays small; open_clip's own code path is unchanged.)"""
    import open_clip.timm_model
    import timm

    create = timm.create_model
    monkeypatch.setattr(open_clip.timm_model.timm, "create_model", lambda name, **kw: create(
        name, **kw, img_size=32, patch_size=8, depth=2, embed_dim=64, num_heads=4))
    clear_cache()  # timm's definitions are cached per name: read this one again, shrunk, and forget it after
    request.addfinalizer(clear_cache)
    cfg = dict(embed_dim=64, quick_gelu=False, vision_cfg=dict(
        image_size=32, timm_model_name="vit_base_patch16_siglip_224", timm_model_pretrained=False, timm_pool="map",
        timm_proj="none"))
    model = _open_clip(**{k: cfg[k] for k in ("quick_gelu", "vision_cfg")}, embed_dim=64, seed=5)
    torch.save(model.state_dict(), tmp_path / "open_clip_pytorch_model.bin")
    (tmp_path / "open_clip_config.json").write_text(json.dumps({"model_cfg": {**cfg, "text_cfg": OC_TEXT}}))
    saved = saved_tensors(tmp_path / "open_clip_pytorch_model.bin")
    ckpt = load(tmp_path)
    assert ckpt.layout == "open_clip" and ckpt.metadata["timm_model"] == "vit_base_patch16_siglip_224"
    assert_accounted(ckpt, saved)
    assert {k for k in saved if not k.startswith("visual.")} == set(ckpt.unmapped_reasons)
    assert ckpt.origins["attn_pool.latent"] == ["visual.trunk.attn_pool.latent"]  # the file's own names
    arch = infer_architecture(ckpt)
    assert_spec_complete(ckpt, arch)
    assert (arch.embed_dim, arch.num_heads, arch.global_pool, arch.has_class_token) == (64, 4, "map", False)
    x = image(7)
    with torch.no_grad():
        assert_same(build_model(ckpt, arch)(x), model.encode_image(x), "OpenCLIP timm trunk (SigLIP), encode_image")


# ---- Meta's Perception Encoder in its own names (the facebook/PE-* files) -----------------------------------------

def _pe_name(key: str, value: torch.Tensor) -> dict[str, torch.Tensor]:
    """timm's vit_pe_* key -> the name (and layout) Perception Encoder's own checkpoints use."""
    if key in ("cls_token", "pos_embed", "head.weight"):
        return {"visual." + {"cls_token": "class_embedding", "pos_embed": "positional_embedding",
                             "head.weight": "proj"}[key]: value.reshape(-1) if key == "cls_token" else
                value[0] if key == "pos_embed" else value.t()}
    for timm_name, theirs in (("patch_embed.proj", "conv1"), ("norm_pre", "ln_pre"),
                              ("blocks.", "transformer.resblocks."), ("norm1", "ln_1"), ("norm2", "ln_2"), ("attn.qkv.", "attn.in_proj_"),
                              ("attn.proj", "attn.out_proj"), ("mlp.fc1", "mlp.c_fc"), ("mlp.fc2", "mlp.c_proj"),
                              ("gamma_", "ls_"), ("attn_pool.latent", "attn_pool.probe"),
                              ("attn_pool.norm", "attn_pool.layernorm"), ("attn_pool.proj", "attn_pool.attn.out_proj")):
        key = key.replace(timm_name, theirs)
    key = "ln_post." + key[5:] if key.startswith("norm.") else key
    return {"visual." + key.replace(".ls_1", ".ls_1.gamma").replace(".ls_2", ".ls_2.gamma"): value}


@pytest.mark.parametrize("name,kwargs", [("vit_pe_core_tiny_patch16_384", {}),
                                         ("vit_pe_core_tiny_patch16_384", dict(init_values=0.1))])
def test_perception_encoders_own_names(tmp_path, name, kwargs):
    """PE's checkpoints are a CLIP tower's names with LayerScale and an attention pool (a learned probe, one packed
    in_proj): timm's checkpoint filter reads them back to its Eva, and so does vitdash, with the RoPE the family's
    layout gives; the model computes timm's pooled, projected feature."""
    import timm
    from timm.models.eva import checkpoint_filter_fn

    model = randomize(timm.create_model(name, pretrained=False, depth=2, **kwargs), seed=4)
    with torch.no_grad():
        model.head.bias.zero_()  # the projection has none: timm's conversion gives the head a zero bias
    sd = {k: v.detach() for k, v in model.state_dict().items()}
    theirs = {k: v.contiguous() for key, value in sd.items() if not key.startswith(("attn_pool.q.", "attn_pool.kv."))
              and key != "head.bias" for k, v in _pe_name(key, value).items()}
    for part in ("weight", "bias"):
        theirs[f"visual.attn_pool.attn.in_proj_{part}"] = torch.cat([sd[f"attn_pool.q.{part}"],
                                                                     sd[f"attn_pool.kv.{part}"]])
    back = checkpoint_filter_fn(theirs, model)
    assert back.keys() == sd.keys() and all(torch.equal(back[k], sd[k]) for k in sd)
    save_file(theirs, tmp_path / "pe.safetensors")
    ckpt = load(tmp_path / "pe.safetensors")
    assert ckpt.unmapped_keys == [] and ckpt.num_params == sum(v.numel() for v in theirs.values())
    arch = infer_architecture(ckpt)
    assert_spec_complete(ckpt, arch)
    assert (arch.timm_class, arch.pos_embed, arch.global_pool, arch.layer_scale) == (
        "Eva", "learned+rope", "map", bool(kwargs))
    assert any("Perception Encoder's, so its RoPE is assumed" in n for n in arch.notes)
    x = image(5, size=(384, 384))
    with torch.no_grad():
        assert_same(build_model(ckpt, arch)(x), model(x), "Perception Encoder's own names, pooled and projected")
