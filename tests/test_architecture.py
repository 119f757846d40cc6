"""Architecture inference: timm, torchvision and Hugging Face layouts against their own configs, and real files."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from vitdash.identity.architecture import infer_architecture
from vitdash.identity.complexity import params_by_component, spec_params
from vitdash.identity.heads import head_split_evidence
from vitdash.load.checkpoint import Checkpoint, TensorStore
from vitdash.load.layouts import detect
from vitdash.load.sources import checkpoint_from_state_dict, load, load_timm


def _canonical(sd: dict[str, torch.Tensor], metadata: dict | None = None, source: str = "test") -> Checkpoint:
    """Map a state dict with the real layout detection, without hashing (meta tensors have no bytes)."""
    metadata = dict(metadata or {})
    found = detect(TensorStore.from_tensors(sd), metadata)
    assert found is not None, "layout not recognized"
    return Checkpoint(tensors=found.tensors, source=source, format="memory", layout=found.layout, canonical=True,
                      metadata={**metadata, **found.metadata}, unmapped_keys=found.unmapped, is_vit=True)


def _meta_timm(name: str, **kwargs):
    import timm

    with torch.device("meta"):
        return timm.create_model(name, weight_init="skip", **kwargs)


# name, kwargs: patch 8/14/16/32, Ti to g, distilled, registers with and without class token, CLIP pre-norm,
# SwiGLU, average pooling with and without fc_norm, a changed head.
TIMM_MODELS = [
    ("vit_tiny_patch16_224", {}), ("vit_tiny_patch16_384", {}), ("vit_small_patch8_224", {}),
    ("vit_small_patch16_224", {}), ("vit_small_patch32_384", {}), ("vit_base_patch8_224", {}),
    ("vit_base_patch16_224", {}), ("vit_base_patch16_384", {}), ("vit_base_patch32_224", {}),
    ("vit_large_patch16_224", {}), ("vit_large_patch32_384", {}), ("vit_huge_patch14_224", {}),
    ("vit_giant_patch14_224", {}), ("deit_tiny_patch16_224", {}), ("deit_small_distilled_patch16_224", {}),
    ("deit_base_distilled_patch16_384", {}), ("deit3_small_patch16_224", {}), ("deit3_medium_patch16_224", {}),
    ("deit3_huge_patch14_224", {}), ("vit_small_patch14_dinov2", {}), ("vit_base_patch14_reg4_dinov2", {}),
    ("vit_giant_patch14_dinov2", {}), ("vit_base_patch16_clip_224", {}), ("vit_large_patch14_clip_336", {}),
    ("vit_medium_patch16_gap_256", {}), ("vit_betwixt_patch16_reg4_gap_256", {}),
    ("vit_small_patch16_224", {"global_pool": "avg"}), ("vit_base_patch16_224", {"num_classes": 10}),
]


def _timm_truth(model) -> dict:
    from timm.models.deit import VisionTransformerDistilled

    fc1 = model.blocks[0].mlp.fc1.out_features
    swiglu = fc1 == 2 * model.blocks[0].mlp.fc2.in_features
    return {
        "embed_dim": model.embed_dim, "depth": len(model.blocks), "num_heads": model.blocks[0].attn.num_heads,
        "patch_size": model.patch_embed.patch_size[0], "img_size": tuple(model.patch_embed.img_size),
        "num_prefix_tokens": model.num_prefix_tokens, "num_reg_tokens": model.num_reg_tokens,
        "has_dist_token": isinstance(model, VisionTransformerDistilled),
        "mlp_hidden": fc1 // 2 if swiglu else fc1, "num_classes": model.num_classes,
        "global_pool": model.global_pool, "fc_norm": not isinstance(model.fc_norm, nn.Identity),
        "pre_norm": not isinstance(model.norm_pre, nn.Identity),
        "layer_scale": not isinstance(model.blocks[0].ls1, nn.Identity),
        "num_params": sum(p.numel() for p in model.parameters()),
    }


@pytest.mark.parametrize("name,kwargs", TIMM_MODELS, ids=["-".join([n, *k]) for n, k in TIMM_MODELS])
def test_timm_models_match_timm_config(name, kwargs):
    model = _meta_timm(name, **kwargs)
    truth = _timm_truth(model)
    sd = model.state_dict()

    # As load_timm records it (timm names the model): every field equals timm's own configuration.
    arch = infer_architecture(_canonical(sd, {"timm_model": name, "pretrained": False}))
    got = {k: getattr(arch, k) for k in truth}
    assert got == truth
    assert not arch.heads_inferred and arch.heads_source == "config"
    assert sum(spec_params(arch).values()) == truth["num_params"]

    # A bare state dict (meta tensors: no values to test for head structure): heads become a marked guess,
    # taken from the family table where a member has this shape, and timm's count is among the candidates.
    bare = infer_architecture(_canonical(sd))
    assert bare.heads_inferred and bare.heads_source in ("family", "guess")
    assert truth["num_heads"] in bare.head_candidates
    shapes = {k: v for k, v in truth.items() if k != "num_heads"}
    assert {k: getattr(bare, k) for k in shapes} == shapes
    if bare.heads_source == "family":
        assert bare.num_heads == truth["num_heads"]


def test_timm_kwargs_rebuild_the_same_state_dict_shapes():
    """The spec is complete: model.timm_kwargs rebuilds each kind of timm ViT tensor for tensor (plain, distilled,
    LayerScale, registers, SwiGLU, CLIP pre-norm, no class token, registers without class token, fc_norm)."""
    from timm.models.deit import VisionTransformerDistilled
    from timm.models.vision_transformer import VisionTransformer

    from vitdash.identity.model import timm_kwargs

    structures = [TIMM_MODELS[i] for i in (0, 15, 16, 20, 21, 22, 24, 25, 26)]  # one of each kind
    for name, kwargs in structures:
        sd = _meta_timm(name, **kwargs).state_dict()
        arch = infer_architecture(_canonical(sd, {"timm_model": name}))
        cls = VisionTransformerDistilled if arch.has_dist_token else VisionTransformer
        with torch.device("meta"):
            rebuilt = cls(weight_init="skip", **timm_kwargs(arch)).state_dict()
        assert {k: tuple(v.shape) for k, v in rebuilt.items()} == {k: tuple(v.shape) for k, v in sd.items()}, name


def test_load_timm_end_to_end(tiny_vit_ckpt):
    arch = infer_architecture(tiny_vit_ckpt)
    assert (arch.embed_dim, arch.depth, arch.num_heads, arch.patch_size, arch.img_size) == (192, 2, 3, 8, (32, 32))
    assert not arch.heads_inferred
    # load_timm records the size the model was built at, so no config/grid mismatch is reported.
    assert not any("interpolated" in n for n in arch.notes)
    assert params_by_component(tiny_vit_ckpt) == spec_params(arch)


@pytest.mark.parametrize("builder", ["vit_b_16", "vit_b_32", "vit_l_16", "vit_h_14"])
def test_torchvision_family(builder):
    import torchvision

    with torch.device("meta"):
        model = getattr(torchvision.models, builder)()
    ckpt = _canonical(model.state_dict())
    assert ckpt.layout == "torchvision"
    arch = infer_architecture(ckpt)
    layer = model.encoder.layers[0]
    assert (arch.embed_dim, arch.depth, arch.patch_size, arch.img_size, arch.mlp_hidden, arch.num_classes) == (
        model.hidden_dim, len(model.encoder.layers), model.patch_size, (model.image_size,) * 2,
        model.mlp_dim, model.num_classes)
    assert arch.num_params == sum(p.numel() for p in model.parameters()) == sum(spec_params(arch).values())
    # torchvision stores no head count: a marked inference, here from the family table (same shape as ViT-x).
    assert arch.heads_inferred and layer.self_attention.num_heads in arch.head_candidates
    assert arch.num_heads == layer.self_attention.num_heads and arch.heads_source == "family"


def test_torchvision_with_values():
    """A real (not meta) torchvision ViT-S-shaped model through sources: its init weights show no head
    structure, so the heads come from the family member of that shape."""
    from torchvision.models import VisionTransformer

    torch.manual_seed(0)
    model = VisionTransformer(image_size=64, patch_size=16, num_layers=12, num_heads=6, hidden_dim=384, mlp_dim=1536)
    ckpt = checkpoint_from_state_dict(model.state_dict(), source="vit_s.pth")
    arch = infer_architecture(ckpt)
    assert (arch.embed_dim, arch.depth, arch.num_heads, arch.heads_source) == (384, 12, 6, "family")
    assert arch.num_params == sum(p.numel() for p in model.parameters())


def _hf_model(index: int):
    """(model, classes, prefix tokens, registers, distillation token) for small HF ViT, DeiT, DINOv2 configs."""
    import transformers as tf

    small = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, image_size=32, patch_size=8)
    dino = {**small, "image_size": 28, "patch_size": 14, "mlp_ratio": 2}
    build = [
        lambda: (tf.ViTModel(tf.ViTConfig(**small, intermediate_size=128)), 0, 1, 0, False),
        lambda: (tf.ViTForImageClassification(tf.ViTConfig(**small, intermediate_size=128, num_labels=7)), 7, 1, 0,
                 False),
        lambda: (tf.DeiTForImageClassificationWithTeacher(tf.DeiTConfig(**small, intermediate_size=128, num_labels=5)),
                 5, 2, 0, True),
        lambda: (tf.Dinov2Model(tf.Dinov2Config(**dino)), 0, 1, 0, False),
        lambda: (tf.Dinov2WithRegistersModel(tf.Dinov2WithRegistersConfig(**dino, num_register_tokens=4)), 0, 5, 4,
                 False),
    ]
    return build[index]()


@pytest.mark.parametrize("index", range(5), ids=["vit", "vit-classifier", "deit-distilled", "dinov2", "dinov2-reg"])
def test_hugging_face_layouts(tmp_path, index):
    model, classes, prefix, regs, dist = _hf_model(index)
    model.save_pretrained(tmp_path)
    ckpt = load(tmp_path)
    assert ckpt.layout == "hf"
    arch = infer_architecture(ckpt)
    cfg = model.config
    assert (arch.embed_dim, arch.depth, arch.num_heads, arch.patch_size, arch.img_size) == (
        cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads, cfg.patch_size, (cfg.image_size,) * 2)
    assert not arch.heads_inferred and arch.heads_source == "config"
    assert (arch.num_classes, arch.num_prefix_tokens, arch.num_reg_tokens, arch.has_dist_token) == (
        classes, prefix, regs, dist)
    assert arch.mlp_hidden == 128 and arch.layer_scale == ("dinov2" in cfg.model_type)
    assert arch.num_params == sum(spec_params(arch).values())


# ---- the real files ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fname,width,depth,heads,patch,mlp,attn_dim,classes", [
    ("fmnist_vit_custom.pth", 128, 6, 4, 4, 256, 128, 10),
    ("mnist_vit_torchvision_layout.pth", 64, 2, 2, 2, 256, 64, 10),
    ("mnist_vit_lucidrains_layout.pt", 64, 6, 4, 4, 128, 256, 10),
])
def test_shared_scratch_files(shared_dir, fname, width, depth, heads, patch, mlp, attn_dim, classes):
    """No config says the heads: the truth (README) is among the candidates, and the trained weights find it."""
    arch = infer_architecture(load(shared_dir / "checkpoints" / fname))
    assert (arch.embed_dim, arch.depth, arch.patch_size, arch.mlp_hidden, arch.attn_dim, arch.num_classes) == (
        width, depth, patch, mlp, attn_dim, classes)
    assert (arch.in_chans, arch.img_size, arch.num_prefix_tokens) == (1, (28, 28), 1)
    assert arch.heads_inferred and heads in arch.head_candidates
    assert (arch.num_heads, arch.heads_source) == (heads, "weights")
    assert arch.heads_evidence["z"] >= 8
    assert sum(spec_params(arch).values()) == arch.num_params


def test_shared_dinov2(shared_dir):
    arch = infer_architecture(load(shared_dir / "checkpoints" / "dinov2-small-hf"))
    assert (arch.embed_dim, arch.depth, arch.num_heads, arch.patch_size, arch.img_size, arch.grid_size) == (
        384, 12, 6, 14, (518, 518), (37, 37))
    assert not arch.heads_inferred and arch.layer_scale and arch.num_classes == 0
    assert arch.num_params == 22_056_192 == sum(spec_params(arch).values())


def test_weights_agree_with_the_config_of_dinov2(shared_dir):
    """The head-structure test, run where the config knows the answer (6 heads of 64)."""
    ckpt = load(shared_dir / "checkpoints" / "dinov2-small-hf")
    evidence = head_split_evidence(ckpt.tensors, 12, 384)
    assert evidence is not None and evidence.num_heads == 6


def test_weights_at_init_show_no_head_structure():
    """Balance is a trace of training; i.i.d. init (timm, PyTorch MultiheadAttention) must not produce it."""
    from torchvision.models import VisionTransformer

    timm_init = load_timm("vit_small_patch16_224", depth=2, img_size=32)
    assert head_split_evidence(timm_init.tensors, 2, 384) is None
    for seed in range(3):
        torch.manual_seed(seed)
        tv = VisionTransformer(image_size=28, patch_size=2, num_layers=2, num_heads=2, hidden_dim=64, mlp_dim=256)
        ckpt = checkpoint_from_state_dict(tv.state_dict())
        assert head_split_evidence(ckpt.tensors, 2, 64) is None
        arch = infer_architecture(ckpt)
        assert arch.heads_source == "guess" and arch.num_heads == 1 and 2 in arch.head_candidates
        assert any("guess" in n for n in arch.notes)


# ---- image size notes -------------------------------------------------------------------------------------------


def _vit_sd(img_size, **kwargs) -> dict[str, torch.Tensor]:
    return _meta_timm("vit_tiny_patch16_224", img_size=img_size, depth=1, **kwargs).state_dict()


def test_interpolated_grid_is_reported():
    arch = infer_architecture(_canonical(_vit_sd(384), {"config": {"image_size": 224}}))
    assert arch.img_size == (384, 384)
    assert any("interpolated" in n and "24x24" in n for n in arch.notes)
    arch = infer_architecture(_canonical(_vit_sd(384), {"timm_model": "vit_tiny_patch16_224"}))
    assert any("model name vit_tiny_patch16_224 says 224 px" in n for n in arch.notes)


def test_non_square_grid():
    sd = _vit_sd((224, 288))
    from_config = infer_architecture(_canonical(sd, {"config": {"image_size": [224, 288]}}))
    assert from_config.grid_size == (14, 18) and any("non-square" in n for n in from_config.notes)
    guessed = infer_architecture(_canonical(sd))
    assert guessed.grid_size == (14, 18) and any("not a square" in n for n in guessed.notes)


def test_contradicting_metadata_is_ignored_with_a_note():
    arch = infer_architecture(_canonical(_vit_sd(224), {"num_heads": 5}))
    assert arch.num_heads != 5 and any("does not divide" in n for n in arch.notes)
