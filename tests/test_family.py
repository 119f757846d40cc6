"""The family table (checked against timm itself), analytic GFLOPs, matching, and published-weight lookup."""
from __future__ import annotations

import math

import pytest
import torch

from vitdash.identity.architecture import infer_architecture
from vitdash.identity.complexity import complexity, macs_by_component, spec_params
from vitdash.identity.family import describe, match, reference_top1, row_spec
from vitdash.identity.family_table import family_rows, heads_for_shape
from vitdash.load.checkpoint import Checkpoint, TensorStore
from vitdash.load.layouts import detect
from vitdash.load.sources import checkpoint_from_state_dict, load, load_timm

ROWS = family_rows()


def _meta_model(name: str, **kwargs):
    import timm

    with torch.device("meta"):
        return timm.create_model(name, **kwargs)


def _canonical(sd, metadata=None, source="test") -> Checkpoint:
    metadata = dict(metadata or {})
    found = detect(TensorStore.from_tensors(sd), metadata)
    return Checkpoint(tensors=found.tensors, source=source, format="memory", layout=found.layout, canonical=True,
                      metadata={**metadata, **found.metadata}, unmapped_keys=found.unmapped, is_vit=True)


def test_table_covers_the_family():
    names = {r["name"] for r in ROWS}
    for size in ("Ti/16", "S/8", "S/16", "S/32", "B/8", "B/16", "B/32", "L/16", "L/32", "H/14", "g/14", "G/14"):
        assert f"ViT-{size}" in names
    for size in ("Ti", "S", "B"):
        assert {f"DeiT-{size}/16", f"DeiT-{size}/16 distilled"} <= names
    assert {f"DeiT III-{s}" for s in ("S/16", "M/16", "B/16", "L/16", "H/14")} <= names
    for size in ("S", "B", "L", "g"):
        assert {f"DINOv2 ViT-{size}/14", f"DINOv2 ViT-{size}/14 reg4"} <= names
    assert {"CLIP ViT-B/32", "CLIP ViT-B/16", "CLIP ViT-L/14", "CLIP ViT-H/14"} <= names
    assert {f"CLIP ViT-{s} {who} tower" for s, who in (("B/32", "OpenAI"), ("B/16", "OpenAI"), ("L/14", "OpenAI"),
                                                        ("B/32", "LAION-2B"), ("B/16", "LAION-2B"),
                                                        ("L/14", "LAION-2B"), ("H/14", "LAION-2B"))} <= names
    assert {f"DINOv3 ViT-{s}/16" for s in ("S", "S+", "B", "L", "H+", "7B")} <= names
    assert {f"EVA-02-{s}/14" for s in ("Ti", "S", "B", "L")} <= names
    for family in ("SigLIP", "SigLIP 2"):
        assert {f"{family} {s}" for s in ("B/16", "L/16", "So400m/14")} <= names
    assert {"SigLIP 2 So400m/16", "SigLIP 2 g-opt/16", "SigLIP 2 B/32"} <= names
    assert {f"AIMv2-{s}/14" for s in ("L", "H", "1B", "3B")} <= names
    assert {"BEiT-B/16", "BEiT-L/16", "BEiT v2-B/16", "BEiT v2-L/16"} <= names
    assert {f"MAE ViT-{s}" for s in ("B/16", "L/16", "H/14")} <= names
    assert {f"PE-Core {s}" for s in ("T/16", "S/16", "B/16", "L/14", "G/14")} <= names
    assert {f"RoPE-{k} ViT-{s}/16" for k in ("Axial", "Mixed", "Axial + APE", "Mixed + APE") for s in "SBL"} <= names
    assert {r["patch"] for r in ROWS} == {8, 14, 16, 32}
    assert all(r["source"] for r in ROWS) and len({r["label"] + r["family"] for r in ROWS}) == len(ROWS)


def test_mlp_size_is_the_hidden_size_not_the_width():
    """The common summary table's 'MLP size' column (768/1024/1280) is the width D."""
    by_name = {r["name"]: r for r in ROWS}
    for name, width, mlp in (("ViT-B/16", 768, 3072), ("ViT-L/16", 1024, 4096), ("ViT-H/14", 1280, 5120)):
        assert (by_name[name]["width"], by_name[name]["mlp_size"]) == (width, mlp)


@pytest.mark.parametrize("row", ROWS, ids=[r["label"] for r in ROWS])
def test_row_equals_timm(row):
    """Every row is timm's model: shape, parameters (exactly) and the rounded columns."""
    model = _meta_model(row["timm_name"], num_classes=row["num_classes"])
    spec = row_spec(row)
    block = model.blocks[0]
    embed = getattr(model, "patch_embed", None) or model.embeds
    size = getattr(embed, "img_size", None) or (row["img_size"],)  # NaFlexVit has no fixed size
    assert (row["width"], row["layers"], row["heads"], row["mlp_size"], row["patch"], row["img_size"]) == (
        model.embed_dim, len(model.blocks), block.attn.num_heads, block.mlp.fc2.in_features, embed.patch_size[0],
        size[0])
    assert (row["num_classes"], spec.num_prefix_tokens) == (model.num_classes, model.num_prefix_tokens)
    assert row["timm_class"] == type(model).__name__
    count = sum(p.numel() for p in model.parameters())
    assert sum(spec_params(spec).values()) == count
    assert row["params_m"] == round(count / 1e6, 2)
    assert row["gflops"] == round(sum(macs_by_component(spec).values()) / 1e9, 2)
    # identical to what inference reads from the model's own state dict
    meta = {"timm_model": row["timm_name"], "pretrained_cfg": {"input_size": (3, *size)}}
    arch = infer_architecture(_canonical(model.state_dict(), meta))
    found = match(arch, hint=row["timm_name"])
    # SigLIP and SigLIP 2 weights share timm's models: those rows are named architecturally identical
    assert found.name == row["label"] or found.kind == "exact" and row["label"] in found.also_matches


def test_top1_columns_cite_real_timm_tags():
    import timm

    for r in ROWS:
        if not r["top1"]:
            assert not r["top1_source"]
            continue
        assert r["top1_source"] and r["top1_protocol"] in (
            "classifier", "linear probe on frozen features", "zero-shot", "attentive probe on frozen trunk")
        tags = {t.split(".", 1)[1] for t in timm.list_pretrained(r["timm_name"] + ".*")}
        assert set(r["top1"]) <= tags, r["timm_name"]
        assert all(50 < v < 100 for v in r["top1"].values())
        assert all(tag in tags for tag in r["hf_ids"].values())


# timm's own measured GMACs (results/benchmark-infer-amp-nchw-pt240-cu124-rtx4090.csv, column infer_gmacs,
# github.com/huggingface/pytorch-image-models): an independent check of the convention and the count.
TIMM_GMACS = {"vit_tiny_patch16_224": 1.26, "vit_small_patch16_224": 4.61, "vit_base_patch32_224": 4.41,
              "vit_small_patch32_384": 3.45, "vit_base_patch16_384": 55.54, "vit_large_patch16_224": 61.6,
              "vit_large_patch32_384": 45.31, "vit_small_patch14_dinov2": 46.76, "vit_small_patch8_224": 22.44,
              "deit_base_distilled_patch16_384": 55.65, "deit3_small_patch16_224": 4.61}


def test_gflops_follow_timm_published_gmacs():
    by_timm = {r["timm_name"]: r for r in ROWS}
    for name, gmacs in TIMM_GMACS.items():
        assert math.isclose(by_timm[name]["gflops"], gmacs, rel_tol=0.01), name


@pytest.mark.parametrize("name,kwargs", [
    ("vit_tiny_patch16_224", dict(img_size=32, patch_size=8, depth=2)),
    ("deit_tiny_distilled_patch16_224", dict(img_size=48, depth=1)),
    ("vit_small_patch14_reg4_dinov2", dict(img_size=28, depth=1, num_classes=7)),
    ("vit_giant_patch14_dinov2", dict(img_size=28, depth=1, embed_dim=96, num_heads=4)),
    # timm's other classes: Eva with RoPE and registers, with unfused q/k/v and SwiGLU + norm, with an attention
    # pool; Beit with relative bias; NaFlexVit (RoPE, relative bias and gating are not matrix products)
    ("vit_small_patch16_dinov3", dict(img_size=64, depth=1, embed_dim=96, num_heads=3)),
    ("eva02_tiny_patch14_224", dict(img_size=56, depth=1)),
    ("vit_pe_core_tiny_patch16_384", dict(img_size=64, depth=1)),
    ("beit_base_patch16_224", dict(img_size=64, depth=1, embed_dim=96, num_heads=3)),
    ("naflexvit_base_patch16_siglip", dict(depth=1, embed_dim=96, num_heads=3)),
])
def test_macs_equal_torch_flop_counter(name, kwargs):
    """Analytic count = half of what torch's FlopCounterMode measures on a real forward (it counts 2 per MAC)."""
    from torch.utils.flop_counter import FlopCounterMode

    ckpt = load_timm(name, **kwargs)
    import timm

    model = timm.create_model(name, **kwargs).eval().requires_grad_(False)  # (torch's module tracker and a pool)
    for attn in [block.attn for block in model.blocks] + [getattr(model, "attn_pool", None)]:
        if attn is not None:
            attn.fused_attn = False  # the counter sees explicit matmuls, not CPU fused attention
    arch = infer_architecture(ckpt)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.randn(1, 3, *arch.img_size))
    assert counter.get_total_flops() == 2 * sum(complexity(ckpt, arch).macs.values())


def test_heads_for_shape():
    assert heads_for_shape(1280, 32, 5120)[0] == 16  # ViT-H: 16 heads of 80, not 1280 / 64
    assert heads_for_shape(768, 12, 3072)[0] == 12
    assert heads_for_shape(100, 3, 400) is None


# ---- matching --------------------------------------------------------------------------------------------------


def test_exact_match_prefers_the_named_member():
    sd = _meta_model("deit_base_patch16_224").state_dict()
    arch = infer_architecture(_canonical(sd, {"timm_model": "deit_base_patch16_224"}))
    found = match(arch, hint="deit_base_patch16_224")
    assert (found.kind, found.exact, found.name, found.differences) == ("exact", True, "DeiT-B/16 @224", [])
    assert "ViT-B/16 @224" in found.also_matches
    assert match(arch).name == "ViT-B/16 @224"  # no hint: table order


def test_changed_head_and_resolution_is_a_variant():
    sd = _meta_model("vit_base_patch16_224", num_classes=10, img_size=256).state_dict()
    found = match(infer_architecture(_canonical(sd, {"timm_model": "vit_base_patch16_224"})))
    assert found.kind == "variant" and not found.exact and found.name.startswith("ViT-B/16")
    assert any(d.startswith("classes in the head: 10 here, 1000") for d in found.differences)
    assert any(d.startswith("image size: 256x256 px here") for d in found.differences)


def test_distilled_and_registers_are_told_apart():
    dist = infer_architecture(_canonical(_meta_model("deit_small_distilled_patch16_224").state_dict()))
    assert match(dist).name == "DeiT-S/16 distilled @224"
    reg = infer_architecture(_canonical(_meta_model("vit_large_patch14_reg4_dinov2").state_dict()))
    found = match(reg)
    assert (found.name, found.kind) == ("DINOv2 ViT-L/14 reg4 @518", "exact")


def test_custom_model_lists_every_difference(shared_dir):
    arch = infer_architecture(load(shared_dir / "checkpoints" / "fmnist_vit_custom.pth"))
    found = match(arch)
    assert found.kind == "custom" and found.name == "ViT-Ti/16 @224"
    for words in ("width: 128 here, 192", "depth: 6 here, 12", "heads: 4 here, 3", "MLP hidden size: 256 here, 768",
                  "patch size: 4 here, 16", "input channels: 1 here, 3", "image size: 28x28 px here",
                  "classes in the head: 10 here, 1000"):
        assert any(d.startswith(words) for d in found.differences), words


def test_shared_dinov2_is_dinov2_small(shared_dir):
    out = describe(load(shared_dir / "checkpoints" / "dinov2-small-hf"))
    assert out["family"]["name"] == "DINOv2 ViT-S/14 @518" and out["family"]["exact"]
    assert out["family"]["reference_top1"] is None  # not identified as published weights (and no head)
    assert out["architecture"]["num_params"] == 22_056_192
    assert math.isclose(out["architecture"]["gflops"], 46.70, rel_tol=1e-3)


# ---- published weights -----------------------------------------------------------------------------------------


def _tiny_sd():
    return _meta_model("vit_tiny_patch16_224").state_dict()


def test_reference_top1_from_pretrained_cfg():
    meta = {"pretrained_cfg": {"architecture": "vit_tiny_patch16_224", "tag": "augreg_in21k_ft_in1k"}}
    assert reference_top1(_canonical(_tiny_sd(), meta)) == 75.454
    meta["pretrained"] = False  # a timm model at init carries the same cfg but not the weights
    assert reference_top1(_canonical(_tiny_sd(), meta)) is None
    assert reference_top1(load_timm("vit_tiny_patch16_224", img_size=32, depth=1)) is None


def test_reference_top1_needs_the_exact_architecture():
    sd = _meta_model("vit_tiny_patch16_224", num_classes=10).state_dict()
    meta = {"pretrained_cfg": {"architecture": "vit_tiny_patch16_224", "tag": "augreg_in21k_ft_in1k"}}
    ckpt = _canonical(sd, meta)
    assert reference_top1(ckpt) is None
    assert "does not apply" in " ".join(describe(ckpt)["family"]["notes"])


def test_reference_top1_from_hugging_face_cache_folder():
    sd = _meta_model("deit_tiny_patch16_224").state_dict()
    source = "/cache/huggingface/hub/models--facebook--deit-tiny-patch16-224/snapshots/0123abcd"
    ckpt = _canonical(sd, source=source)
    assert reference_top1(ckpt) == 72.172
    out = describe(ckpt)["family"]
    assert (out["name"], out["weight_tag"]) == ("DeiT-Ti/16 @224", "fb_in1k")  # the folder also picks the member


def test_linear_probe_numbers_are_not_a_checkpoint_top1():
    sd = _meta_model("vit_small_patch14_dinov2").state_dict()
    ckpt = _canonical(sd, {"config": {"_name_or_path": "facebook/dinov2-small", "num_attention_heads": 6}})
    assert reference_top1(ckpt) is None
    out = describe(ckpt)["family"]
    assert out["weight_tag"] == "lvd142m" and "linear probe" in " ".join(out["notes"])


def test_describe_is_json_ready_and_says_when_not_a_vit():
    import json

    out = describe(load_timm("vit_tiny_patch16_224", img_size=32, patch_size=8, depth=2))
    arch = out["architecture"]
    for key in ("embed_dim", "depth", "num_heads", "heads_inferred", "patch_size", "img_size", "in_chans",
                "num_prefix_tokens", "num_reg_tokens", "has_dist_token", "mlp_hidden", "num_classes", "num_params",
                "gflops", "params_by_component"):
        assert key in arch
    assert sum(arch["params_by_component"].values()) == arch["num_params"]
    assert {"name", "exact", "differences", "kind", "reference_top1"} <= set(out["family"])
    json.dumps(out)
    cnn = checkpoint_from_state_dict({"layer1.0.conv1.weight": torch.zeros(8, 3, 3, 3),
                                      "fc.weight": torch.zeros(10, 8)})
    out = describe(cnn)
    assert reference_top1(cnn) is None
    assert out["architecture"] is None and out["family"] is None and "recognized ViT" in out["architecture_error"]


def test_breakdown_shows_parameters_and_compute_on_the_same_components(shared_dir):
    from vitdash.figures.identity import breakdown_figure, family_scatter

    cx = complexity(load(shared_dir / "checkpoints" / "dinov2-small-hf"))
    fig = breakdown_figure(cx.params, {k: v / 1e9 for k, v in cx.macs.items()})
    params, compute = fig.data
    assert list(params.y) == list(compute.y) and "attention (q/k/v, out; scores)" in params.y
    assert not any("N^2" in label or "projections" in label for label in params.y)  # merged into attention
    shares = dict(zip(compute.y, compute.x))
    total = sum(cx.macs.values())
    assert shares["attention (q/k/v, out; scores)"] == pytest.approx(
        (cx.macs["attention_proj"] + cx.macs["attention_matrix"]) / total)
    scatter = family_scatter(family_rows(), 22, 4.6, "x")
    assert scatter.layout.yaxis.title.text == "GFLOPs" and scatter.layout.yaxis.tickformat == "~g"  # not "100µ"
    families = [t for t in scatter.data if t.name not in ("x",) and not t.name.startswith("nearest")]
    looks = {(t.marker.color, t.marker.symbol) for t in families}
    assert len(families) > 12 and len(looks) == len(families)  # every family told apart in the legend
