"""The ViT families people download today, as timm defines them: every timm model of DINOv3, EVA-02, SigLIP and
SigLIP 2, AIMv2, BEiT and BEiT v2, MAE, CLIP, Perception Encoder and RoPE-ViT at init (built on the meta device:
shapes only, so the whole zoo takes seconds) is read as its own timm class with timm's configuration, rebuilt
tensor for tensor, counted exactly, and put on its own row of the family table. Small random-weight instances
then check that the rebuilt model computes what timm's own model computes, settings no shape shows included."""
from __future__ import annotations

import functools
import re

import pytest
import torch
from torch import nn

from vitdash.identity.architecture import infer_architecture
from vitdash.identity.complexity import params_by_component, spec_params
from vitdash.identity.family import _hint, identify_weights, match
from vitdash.identity.family_table import family_rows
from vitdash.identity.model import _instantiate, build_model
from vitdash.identity.timm_defs import rope_settings
from vitdash.load.checkpoint import Checkpoint, TensorStore
from vitdash.load.layouts import detect
from vitdash.load.sources import checkpoint_from_state_dict

# family -> the timm names that are its models
FAMILIES = {
    "DINOv3": r"_dinov3", "EVA-02": r"^eva02_", "SigLIP|SigLIP 2": r"^(vit|naflexvit)_.*_siglip", "AIMv2": r"^aimv2_",
    "BEiT": r"^beit_", "BEiT v2": r"^beitv2_", "CLIP": r"^vit_.*_clip_", "PE": r"^vit_pe_", "RoPE-ViT": r"_rope_",
}


def _names() -> list[tuple[str, str]]:
    import timm

    out = [(fam, n) for fam, pattern in FAMILIES.items() for n in timm.list_models() if re.search(pattern, n)]
    mae = ("vit_base_patch16_224", "vit_large_patch16_224", "vit_huge_patch14_224")  # its weights are these, tagged
    return out + [("MAE", f"{n}.mae") for n in mae]


NAMES = _names()


def _meta_model(name: str, **kwargs) -> nn.Module:
    import timm

    with torch.device("meta"):
        return timm.create_model(name, pretrained=False, **kwargs)


def _canonical(model: nn.Module, meta: dict) -> Checkpoint:
    found = detect(TensorStore.from_tensors(model.state_dict()), meta)
    assert found is not None and not found.unmapped, found and found.unmapped
    return Checkpoint(tensors=found.tensors, source="test", format="memory", layout=found.layout, canonical=True,
                      metadata={**meta, **found.metadata}, is_vit=True)


def _load_timm_meta(name: str, model: nn.Module) -> dict:
    """What load_timm records for a timm model at init."""
    cfg = dict(model.pretrained_cfg)
    if getattr(getattr(model, "patch_embed", None), "img_size", None):
        cfg["input_size"] = (3, *model.patch_embed.img_size)
    return {"timm_model": name, "pretrained": False, "pretrained_cfg": cfg}


def _pos_kind(model: nn.Module) -> str:
    parts = []
    pos = getattr(model, "pos_embed", None) if hasattr(model, "patch_embed") else None
    if pos is not None or getattr(getattr(model, "embeds", None), "pos_embed_type", "none") != "none":
        parts.append("learned")
    if getattr(model, "rope", None) is not None:
        parts.append("rope")
    if getattr(model, "rel_pos_bias", None) is not None or getattr(
            model.blocks[0].attn, "relative_position_bias_table", None) is not None:
        parts.append("relative")
    return "+".join(parts) or "none"


def _mlp_kind(model: nn.Module) -> str:
    kind = type(model.blocks[0].mlp).__name__
    return "GluMlp" if kind == "SwiGLUPacked" else kind


def _attn_bias(attn: nn.Module) -> str:
    if getattr(attn, "q_bias", None) is not None or getattr(getattr(attn, "q_proj", None), "bias", None) is not None:
        return "qv" if getattr(getattr(attn, "k_proj", None), "bias", None) is None else "qkv"
    return "qkv" if getattr(getattr(attn, "qkv", None), "bias", None) is not None else "none"


def _truth(model: nn.Module) -> dict:
    embed = getattr(model, "patch_embed", None) or model.embeds
    patch = embed.patch_size[0]
    size = getattr(embed, "img_size", None)
    blk = model.blocks[0]
    layer_scale = type(getattr(blk, "ls1", None)).__name__ == "LayerScale" or getattr(blk, "gamma_1", None) is not None
    reg = getattr(model, "reg_token", getattr(embed, "reg_token", None))
    return {"timm_class": type(model).__name__, "embed_dim": model.embed_dim, "depth": len(model.blocks),
            "num_heads": blk.attn.num_heads, "patch_size": patch,
            "num_prefix_tokens": model.num_prefix_tokens, "pos_embed": _pos_kind(model),
            "mlp_layer": _mlp_kind(model), "global_pool": model.global_pool, "num_classes": model.num_classes,
            "img_size": None if size is None else tuple(s // patch * patch for s in size),
            "norm_type": "rmsnorm" if "Rms" in type(blk.norm1).__name__ else "layernorm", "layer_scale": layer_scale,
            "attn_bias": _attn_bias(blk.attn), "num_reg_tokens": 0 if reg is None else reg.shape[1],
            "has_class_token": getattr(model, "cls_token", getattr(embed, "cls_token", None)) is not None}


@pytest.mark.parametrize("family,name", NAMES, ids=[n for _, n in NAMES])
def test_timm_family_model_is_read_rebuilt_counted_and_placed(family, name):
    model = _meta_model(name)
    ckpt = _canonical(model, _load_timm_meta(name, model))
    arch = infer_architecture(ckpt)
    truth = _truth(model)
    got = {k: getattr(arch, k) for k in truth}
    if truth["img_size"] is None:  # NaFlexVit has no fixed size
        got["img_size"] = None
    assert got == truth
    assert not arch.heads_inferred
    # the class rebuilt from the inferred arguments holds exactly these tensors: a strict load will succeed
    with torch.device("meta"):
        rebuilt = _instantiate(arch)
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}
    count = sum(p.numel() for p in model.parameters())
    assert arch.num_params == count == sum(spec_params(arch).values())
    assert "other" not in params_by_component(ckpt) or not params_by_component(ckpt)["other"]
    if arch.timm_class == "Eva":
        assert {k: arch.model_args[k] for k in rope_settings(model)} == rope_settings(model)
    # its place in the family table: its own row (or, for a name with several rows, one of them)
    found = match(arch, hint=name)
    assert re.fullmatch(family, found.family), (found.family, found.name)
    own = [r for r in family_rows() if r["timm_name"] == name.split(".")[0] and re.fullmatch(family, r["family"])]
    assert own and found.kind == "exact" and found.row["timm_name"] == name.split(".")[0], found.summary


# A bare state dict (no name, no config): shapes decide, and what they cannot show comes from the layout's family.
BARE = [n for _, n in NAMES if not n.startswith("vit_pe_") and "_rope_ape_" not in n]  # key-identical to CLIP, DeiT III


@pytest.mark.parametrize("name", BARE[::3], ids=BARE[::3])
def test_bare_state_dict_is_read_as_its_class_with_its_familys_settings(name):
    model = _meta_model(name)
    arch = infer_architecture(_canonical(model, {}))
    assert arch.timm_class == type(model).__name__
    assert arch.pos_embed == _pos_kind(model) or type(model).__name__ == "Eva" and "rope" in _pos_kind(model)
    with torch.device("meta"):
        rebuilt = _instantiate(arch)
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}


def test_perception_encoder_without_a_name_is_the_clip_layout_it_shares_its_keys_with():
    """PE's keys are a CLIP tower's (position table, pre-norm, biased fused q/k/v): without a name or config the
    RoPE cannot be seen, and the checkpoint is read as a VisionTransformer, which loads but loses RoPE."""
    model = _meta_model("vit_pe_core_base_patch16_224")
    assert infer_architecture(_canonical(model, {})).timm_class == "VisionTransformer"
    assert infer_architecture(_canonical(model, {"model_args": {}, "timm_class": "Eva"})).pos_embed == "learned+rope"


# One small model per class and family: timm's own at random (perturbed) weights against the model vitdash
# rebuilds from the tensors; settings no shape shows (RoPE, eps, pooling, activation) must come out right too.
FUNCTIONAL = ["vit_small_patch16_dinov3", "vit_small_plus_patch16_dinov3_qkvb", "eva02_tiny_patch14_224",
              "eva02_base_patch16_clip_224", "vit_base_patch16_siglip_224", "naflexvit_base_patch16_siglip",
              "aimv2_large_patch14_224", "beit_base_patch16_224", "beitv2_base_patch16_224",
              "vit_base_patch16_clip_quickgelu_224", "vit_pe_core_tiny_patch16_384", "vit_small_patch16_rope_224",
              "vit_small_patch16_rope_mixed_ape_224", "vit_medium_patch16_rope_reg1_gap_256"]


def _small(name: str) -> nn.Module:
    import timm

    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False, depth=2).eval()
    with torch.no_grad():
        for p in model.parameters():  # no zero biases or unit norms for a wrong mapping to hide behind
            p.add_(torch.randn_like(p) * 0.02)
    return model


# What a bare state dict cannot show (issue 14's research notes): these need a name or a config, and without one
# the architecture says what it assumed, naming the family it could also be.
UNKNOWABLE = {"naflexvit_base_patch16_siglip": "SigLIP's tanh GELU has the same shapes",
              "vit_base_patch16_clip_quickgelu_224": "OpenAI CLIP's QuickGELU",
              "vit_pe_core_tiny_patch16_384": "no RoPE assumed: read as a CLIP tower, but a Perception Encoder"}


@pytest.mark.parametrize("named", [True, False], ids=["named", "unnamed"])
@pytest.mark.parametrize("name", FUNCTIONAL)
def test_rebuilt_model_computes_what_timms_model_computes(name, named):
    model = _small(name)
    # unnamed: no model name or config, only the head count (which shapes cannot show: tested elsewhere)
    meta = _load_timm_meta(name, model) if named else {"num_heads": model.blocks[0].attn.num_heads}
    ckpt = checkpoint_from_state_dict({k: v.detach() for k, v in model.state_dict().items()}, metadata=meta)
    if not named and name in UNKNOWABLE:  # a limit of the shapes: said to the user, not computed
        assert any(UNKNOWABLE[name] in note for note in infer_architecture(ckpt).notes)
        return
    arch = infer_architecture(ckpt)
    assert not (named and any("would say which" in note for note in arch.notes)), arch.notes  # a name settles it
    rebuilt = build_model(ckpt, arch)
    size = getattr(getattr(model, "patch_embed", None), "img_size", None) or arch.img_size  # RoPE-only: no size
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        want = model.forward_head(model.forward_features(x), pre_logits=True)
        got = rebuilt.forward_head(rebuilt.forward_features(x), pre_logits=True)
    assert torch.allclose(got, want, atol=1e-5, rtol=1e-4), (got - want).abs().max()


# timm's VisionTransformer options these families use, on their own: no position table (RoPE-less registers-only
# models), registers with or without their own position, SwiGLU with separate gate and value, RMSNorm, a patch norm
# and an attention pool. The rebuilt model computes what the original computes.
VIT_OPTIONS = {
    "no-pos-table": dict(pos_embed="none"),
    "no-pos-registers-avg": dict(pos_embed="none", reg_tokens=4, global_pool="avg", class_token=False, fc_norm=True),
    "registers-outside-the-table": dict(reg_tokens=2, no_embed_class=True),
    "swiglu-rmsnorm-patch-norm-map": dict(pos_embed="none", mlp_layer="swiglu", norm_layer="rmsnorm",
                                          embed_norm_layer="rmsnorm", global_pool="map", class_token=False,
                                          act_layer="silu"),  # AIMv2's (a gated MLP's activation is SiLU)
}


@pytest.mark.parametrize("kind", list(VIT_OPTIONS))
def test_vision_transformer_options_are_read_and_rebuilt(kind):
    from timm.layers import RmsNorm, SwiGLU
    from timm.models.vision_transformer import VisionTransformer

    kw = {k: {"swiglu": SwiGLU, "rmsnorm": RmsNorm}.get(v, v) if isinstance(v, str) and k.endswith("layer") else v
          for k, v in VIT_OPTIONS[kind].items()}
    torch.manual_seed(0)
    model = VisionTransformer(img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=4, num_classes=10, **kw)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    meta = {"num_heads": 4, "config": {"image_size": 32}, "norm_eps": 1e-6}
    ckpt = checkpoint_from_state_dict({k: v.detach() for k, v in model.eval().state_dict().items()}, metadata=meta)
    arch = infer_architecture(ckpt)
    assert (arch.timm_class, arch.pos_embed, arch.num_prefix_tokens, arch.global_pool) == (
        "VisionTransformer", "learned" if "pos_embed" in model.state_dict() else "none", model.num_prefix_tokens,
        model.global_pool)
    assert (arch.mlp_layer, arch.norm_type, arch.patch_norm) == (
        type(model.blocks[0].mlp).__name__, "rmsnorm" if "norm_layer" in kw else "layernorm", "embed_norm_layer" in kw)
    assert arch.num_params == sum(p.numel() for p in model.parameters())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(build_model(ckpt, arch)(x), model(x), atol=1e-5, rtol=1e-4)


# ---- Hugging Face towers laid out onto these classes: vitdash's own model (architecture inferred from the tensors
# and the layout's metadata, strict load) computes what transformers computes ------------------------------------

HF_TOWERS = {
    "dinov3": ("DINOv3ViTModel", dict(num_register_tokens=4)),
    "dinov3-swiglu": ("DINOv3ViTModel", dict(use_gated_mlp=True, hidden_act="silu", intermediate_size=96,
                                             query_bias=False, value_bias=False, rope_theta=50.0)),
    "dinov3-key-bias": ("DINOv3ViTModel", dict(key_bias=True, num_register_tokens=4)),
    "beit": ("BeitModel", dict(use_relative_position_bias=True, layer_scale_init_value=0.1, use_mean_pooling=True)),
    "beit-shared": ("BeitModel", dict(use_shared_relative_position_bias=True, use_absolute_position_embeddings=True,
                                      use_mean_pooling=False)),
    "aimv2": ("Aimv2VisionModel", dict(intermediate_size=176, qkv_bias=True, mlp_bias=True)),
}


@pytest.mark.parametrize("kind", list(HF_TOWERS))
def test_hugging_face_towers_rebuilt_by_vitdash_compute_transformers_features(tmp_path, kind):
    import transformers

    from tests.layout_utils import assert_same, image, randomize
    from vitdash.load.sources import load

    cls, extra = HF_TOWERS[kind]
    config_cls = getattr(transformers, cls.replace("Model", "Config"))
    config = config_cls(**{**dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                                  image_size=32, patch_size=8), **extra})
    model = randomize(getattr(transformers, cls)(config))
    model.save_pretrained(tmp_path)
    ckpt = load(tmp_path)
    arch = infer_architecture(ckpt)
    rebuilt = build_model(ckpt, arch)
    sizes = [(32, 32), (48, 40)] if cls.startswith("DINOv3") else [(32, 32)]  # RoPE follows any grid
    for size in sizes:
        x = image(size=size)
        with torch.no_grad():
            theirs = model(pixel_values=x)
            features = rebuilt.forward_features(x)
            assert_same(features, theirs.last_hidden_state, f"{kind} {size} tokens (vitdash's model)")
            if getattr(theirs, "pooler_output", None) is not None and not cls.startswith("Aimv2"):
                assert_same(rebuilt.forward_head(features, pre_logits=True), theirs.pooler_output,
                            f"{kind} {size} pooled (vitdash's model)")


# ---- published weights: timm names one network by several weights, and the tag says whose they are ----------------

def _shared_names() -> list[str]:
    """Every tagged timm name of a model that is several rows of the table (SigLIP and SigLIP 2, OpenAI and LAION
    CLIP towers, MAE and ViT), and every SigLIP one."""
    import timm

    counts: dict[str, int] = {}
    for r in family_rows():
        counts[r["timm_name"]] = counts.get(r["timm_name"], 0) + 1
    return [n for n in timm.list_pretrained() if counts.get(n.split(".")[0], 0) > 1 or "_siglip" in n]


@functools.lru_cache(maxsize=64)
def _meta_arch(name: str, num_classes: int):
    return infer_architecture(_canonical(_meta_model(name, num_classes=num_classes), {}))


@pytest.mark.parametrize("full", _shared_names())
def test_published_weights_land_on_the_row_that_published_their_tag(full):
    import timm

    name, _, tag = full.partition(".")
    cfg = timm.get_pretrained_cfg(full).to_dict()
    arch = _meta_arch(name, cfg["num_classes"])
    ckpt = Checkpoint(tensors=TensorStore.from_tensors({}), source="test", format="memory", layout="timm",
                      canonical=True, is_vit=True,
                      metadata={"timm_model": full, "pretrained": True, "pretrained_cfg": {**cfg, "tag": tag}})
    found = match(arch, hint=_hint(ckpt))
    same = [r for r in family_rows() if r["label"] in (found.name, *found.also_matches)]
    if any(tag in r["top1"] for r in same):  # a row of this network published these weights: that row
        assert tag in found.row["top1"], (found.name, [r["label"] for r in same])
    if "_siglip" in name:  # timm tags SigLIP 2's weights v2_webli; webli, webli_i18n, pali... are SigLIP's
        assert found.family == ("SigLIP 2" if tag.startswith("v2_") else "SigLIP"), found.name
    # the weights are identified on a row the architecture matches, so no "the architecture differs" is said
    weights = identify_weights(ckpt, among=(found.name, *found.also_matches))
    assert weights is not None and weights[1] == tag
    assert not found.exact or weights[0]["label"] in (found.name, *found.also_matches)
