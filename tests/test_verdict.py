"""The model verdict: right on every real checkpoint (trained), on fresh inits made here (init), and
on mixtures made from the shared DINOv2 weights (partial with exactly the re-initialized part)."""
from __future__ import annotations

import io
import json
from contextlib import redirect_stdout

import pytest
import torch

from vitdash.load.checkpoint import Checkpoint, TensorStore
from vitdash.load.sources import checkpoint_from_state_dict, load
from vitdash.trained.roles import ROLES
from vitdash.trained.verdict import MODEL_VERDICTS, VERDICTS, audit

REAL = ["dinov2-small-hf", "fmnist_vit_custom.pth", "mnist_vit_torchvision_layout.pth",
        "mnist_vit_lucidrains_layout.pt"]


def _memory(sd: dict[str, torch.Tensor], canonical: bool = True) -> Checkpoint:
    return Checkpoint(tensors=TensorStore.from_tensors(sd), source="test", format="memory",
                      layout="timm" if canonical else "unknown", canonical=canonical, is_vit=canonical)


def _assert_random(result, sd_names) -> None:
    assert result.verdict == "init", result.summary
    assert result.confidence >= 0.9
    # every tensor of a fresh init is at init (and any the mapping left over, which the audit reads too)
    assert set(sd_names) <= set(result.at_init)
    assert all(t.verdict == "init" for t in result.tensors)


@pytest.fixture(scope="module")
def dino(shared_dir) -> dict[str, torch.Tensor]:
    ckpt = load(shared_dir / "checkpoints" / "dinov2-small-hf")
    return ckpt.tensors.materialize()


# ---- real checkpoints: all trained ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", REAL)
def test_real_checkpoints_are_trained(shared_dir, name):
    result = audit(load(shared_dir / "checkpoints" / name))
    assert result.verdict == "trained", (result.summary, result.at_init)
    assert result.at_init == [] and result.confidence >= 0.9
    assert sum(t.verdict == "trained" for t in result.tensors) >= 0.8 * len(result.tensors)


def test_real_checkpoint_in_its_own_names_is_trained(shared_dir):
    """Generic tensor set (layout not used): HF DINOv2 names, including the all-zero mask_token that
    inference never reads: it is at its init, and must not make the model partial."""
    from safetensors.torch import load_file

    sd = load_file(str(shared_dir / "checkpoints" / "dinov2-small-hf" / "model.safetensors"))
    result = audit(_memory(sd, canonical=False))
    assert result.verdict == "trained" and result.at_init == []
    mask = result.tensor("embeddings.mask_token")
    assert mask.role == "mask_token" and not mask.matters and mask.verdict == "init"
    assert result.tensor("encoder.layer.3.attention.attention.query.weight").block == 3


# ---- fresh inits: all random ---------------------------------------------------------------------------------

@pytest.mark.parametrize("weight_init", ["", "jax"])
@pytest.mark.parametrize("size,seed", [(dict(embed_dim=64, depth=2, num_heads=2), 0),
                                       (dict(embed_dim=192, depth=2, num_heads=3, reg_tokens=1,
                                             init_values=1e-5), 1)])
def test_timm_inits_are_random(weight_init, size, seed):
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(seed)
    m = VisionTransformer(img_size=32, patch_size=8, num_classes=10, weight_init=weight_init, **size)
    result = audit(_memory(m.state_dict()))
    _assert_random(result, m.state_dict())
    assert result.likely_init == ("timm_jax" if weight_init == "jax" else "timm")


def test_torchvision_init_is_random():
    import torchvision

    tv = torchvision.models.VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2,
                                              hidden_dim=64, mlp_dim=128)
    ckpt = checkpoint_from_state_dict(tv.state_dict())
    result = audit(ckpt)
    _assert_random(result, list(ckpt.tensors))
    assert result.likely_init == "torchvision"


@pytest.mark.parametrize("model", ["vit", "dinov2"])
def test_hugging_face_init_is_random(model):
    transformers = pytest.importorskip("transformers")
    common = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=32, patch_size=8)
    if model == "vit":
        m = transformers.ViTModel(transformers.ViTConfig(intermediate_size=128, **common))
    else:
        m = transformers.Dinov2Model(transformers.Dinov2Config(mlp_ratio=2, **common))
    sd = m.state_dict()
    result = audit(_memory(sd, canonical=False))  # its own names: the generic path
    assert result.verdict == "init", result.summary
    assert set(result.at_init) == {n for n in sd if "mask_token" not in n}
    assert result.likely_init == "hf"


def _timm_shapes(seed: int = 0) -> dict[str, torch.Tensor]:
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(seed)
    m = VisionTransformer(img_size=32, patch_size=8, embed_dim=192, depth=2, num_heads=3, num_classes=10)
    return m.state_dict()


def test_iid_normal_entries_are_random():
    """N(0, 0.05) everywhere, norms included: no known init, yet nothing shows training."""
    g = torch.Generator().manual_seed(1)
    sd = {k: torch.randn(v.shape, generator=g) * 0.05 for k, v in _timm_shapes().items()}
    result = audit(_memory(sd))
    _assert_random(result, sd)
    assert result.likely_init is None


def test_orthogonal_init_is_random():
    sd = {}
    for k, v in _timm_shapes().items():
        v = v.clone()
        if v.ndim == 2:
            torch.nn.init.orthogonal_(v)
        sd[k] = v
    result = audit(_memory(sd))
    _assert_random(result, sd)
    assert "orthogonal" in result.tensor("blocks.0.mlp.fc1.weight").reason


# ---- mixtures made from the shared DINOv2 weights -----------------------------------------------------------

def test_fresh_head_is_partial_with_exactly_the_head(dino):
    sd = dict(dino)
    sd["head.weight"] = torch.nn.init.trunc_normal_(torch.empty(10, 384), std=0.02)
    sd["head.bias"] = torch.zeros(10)
    result = audit(_memory(sd))
    assert result.verdict == "partial", result.summary
    assert sorted(result.at_init) == ["head.bias", "head.weight"] and result.at_init_groups == ["head"]


def test_reinitialized_last_blocks_are_partial_with_exactly_those_blocks(dino):
    import timm

    fresh = timm.create_model("vit_small_patch14_dinov2", img_size=518, pretrained=False).state_dict()
    blocks = ("blocks.10.", "blocks.11.")
    sd = {k: (fresh[k].clone() if k.startswith(blocks) else v) for k, v in dino.items()}
    result = audit(_memory(sd))
    assert result.verdict == "partial", result.summary
    assert sorted(result.at_init) == sorted(k for k in sd if k.startswith(blocks))
    assert result.at_init_groups == ["blocks.10", "blocks.11"]


def test_shuffled_entries_are_random(dino):
    sd = {}
    for i, (k, v) in enumerate(dino.items()):
        perm = torch.randperm(v.numel(), generator=torch.Generator().manual_seed(i))
        sd[k] = v.reshape(-1)[perm].reshape(v.shape)
    result = audit(_memory(sd))
    assert result.verdict == "init", result.summary
    assert result.likely_init is None  # a shuffled trained histogram is no known init


# ---- result shape, progress, CLI ------------------------------------------------------------------------------

def test_result_is_json_with_the_documented_fields(tiny_vit_ckpt):
    calls = []
    result = audit(tiny_vit_ckpt, progress=lambda p: calls.append((p.done, p.total, p.message)))
    d = json.loads(json.dumps(result.to_dict(), allow_nan=False))  # strict JSON
    assert {"verdict", "confidence", "at_init", "tensors", "summary", "evidence"} <= set(d)
    t = d["tensors"][0]
    assert {"name", "role", "verdict", "reason", "stats"} <= set(t)
    assert d["verdict"] in MODEL_VERDICTS
    assert all(t["verdict"] in VERDICTS and t["role"] in ROLES and t["reason"] for t in d["tensors"])
    n = len(result.tensors)
    assert calls[0][:2] == (0, n) and [c[0] for c in calls] == list(range(n + 1))
    assert sorted(c[2] for c in calls[1:]) == sorted(t.name for t in result.tensors)


def test_cli_audit_json_and_text(shared_dir, capsys):
    from vitdash.cli import main

    path = str(shared_dir / "checkpoints" / "mnist_vit_torchvision_layout.pth")
    buf = io.StringIO()
    with redirect_stdout(buf):
        assert main(["audit", path, "--json"]) == 0
    d = json.loads(buf.getvalue())
    assert d["verdict"] == "trained" and d["at_init"] == [] and len(d["tensors"]) == 34
    buf = io.StringIO()
    with redirect_stdout(buf):
        assert main(["audit", path]) == 0
    assert buf.getvalue().startswith("mnist_vit_torchvision_layout.pth: TRAINED")


def test_cli_audit_bad_path_exits_2(tmp_path, capsys):
    from vitdash.cli import main

    assert main(["audit", str(tmp_path / "missing.pth")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_every_verdict_has_one_colour():
    from vitdash.figures.colors import HEX, VERDICT_COLORS, verdict_hex

    assert set(VERDICT_COLORS) == set(VERDICTS) | set(MODEL_VERDICTS)
    assert all(verdict_hex(v).startswith("#") and VERDICT_COLORS[v] in HEX for v in VERDICT_COLORS)


# ---- timm's other ViT classes: Eva (RoPE), Beit (relative bias), NaFlexVit, and transformers' towers -------------

# Small instances of each family at init, and the scheme whose draws they are.
FAMILY_INITS = [
    ("vit_small_patch16_dinov3", dict(img_size=64, embed_dim=96, num_heads=3), "timm_eva"),
    ("vit_small_plus_patch16_dinov3_qkvb", dict(img_size=64, embed_dim=96, num_heads=3), "timm_eva"),
    ("eva02_tiny_patch14_224", dict(img_size=56), "timm_eva"),
    ("vit_pe_core_tiny_patch16_384", dict(img_size=64), "timm_eva"),
    ("vit_small_patch16_rope_mixed_224", dict(img_size=64, embed_dim=96, num_heads=3), "timm_eva"),
    ("beit_base_patch16_224", dict(img_size=64, embed_dim=96, num_heads=3), "timm_eva"),
    ("aimv2_large_patch14_224", dict(img_size=56, embed_dim=96, num_heads=3), "timm"),
    ("vit_base_patch16_siglip_224", dict(img_size=64, embed_dim=96, num_heads=3), "timm"),
    ("vit_base_patch16_clip_quickgelu_224", dict(img_size=64, embed_dim=96, num_heads=3), "timm"),
    ("naflexvit_base_patch16_siglip", dict(embed_dim=96, num_heads=3), "timm_fix_init"),
]


@pytest.mark.parametrize("name,kw,scheme", FAMILY_INITS, ids=[n for n, _, _ in FAMILY_INITS])
def test_every_timm_family_at_init_is_random(name, kw, scheme):
    """No false evidence: RoPE tables are not stored, mixed RoPE's frequencies (structured by construction) are
    no matrix to read, relative bias tables start at zero, and each class's own init explains its tensors."""
    import timm

    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False, depth=2, **kw)
    ckpt = checkpoint_from_state_dict(model.state_dict(), metadata={"timm_model": name})
    result = audit(ckpt)
    _assert_random(result, list(ckpt.tensors))
    assert result.likely_init == scheme


@pytest.mark.parametrize("kind", ["DINOv3ViTModel", "Aimv2VisionModel", "Siglip2VisionModel"])
def test_hugging_face_towers_at_init_are_random(kind):
    import transformers

    common = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128)
    config = {"DINOv3ViTModel": lambda: transformers.DINOv3ViTConfig(image_size=32, patch_size=8, **common),
              "Aimv2VisionModel": lambda: transformers.Aimv2VisionConfig(image_size=32, patch_size=8, **common),
              "Siglip2VisionModel": lambda: transformers.Siglip2VisionConfig(patch_size=8, num_patches=16,
                                                                            **common)}[kind]()
    torch.manual_seed(0)
    model = getattr(transformers, kind)(config)
    ckpt = checkpoint_from_state_dict(model.state_dict(), metadata={"config": config.to_dict()})
    result = audit(ckpt)
    _assert_random(result, list(ckpt.tensors))
    assert result.likely_init == ("hf_siglip" if kind.startswith("Siglip") else "hf")


def test_rope_model_loses_no_evidence(dino):
    """The trained DINOv2-S as a RoPE model (no position table, LayerScale in Eva's names): every matrix keeps
    its evidence, and nothing speaks of a position embedding it does not have."""
    eva = {k.replace(".ls1.gamma", ".gamma_1").replace(".ls2.gamma", ".gamma_2"): v for k, v in dino.items()
           if k != "pos_embed"}
    ckpt = checkpoint_from_state_dict(eva)
    assert ckpt.metadata["timm_class"] == "Eva"
    rope, vit = audit(ckpt), audit(_memory(dino))
    assert rope.verdict == "trained" and rope.at_init == []
    structured = {t.name for t in vit.tensors if t.verdict == "trained" and t.role != "pos_embed"}
    assert {t.name.replace(".gamma_", ".ls").replace(".ls1", ".ls1.gamma").replace(".ls2", ".ls2.gamma")
            for t in rope.tensors if t.verdict == "trained"} == structured
    assert not any("Position embedding" in line for line in rope.evidence)


def test_roles_of_eva_beit_and_naflexvit_tensors():
    from vitdash.trained.roles import canonical_role

    def role(name, shape=(8,)):
        r = canonical_role(name, shape)
        return r.role, r.param, r.block, r.group

    assert role("blocks.3.attn.q_bias") == ("q", "bias", 3, "blocks.3")
    assert role("blocks.3.attn.v_bias") == ("v", "bias", 3, "blocks.3")
    assert role("blocks.3.gamma_2") == ("layerscale", "weight", 3, "blocks.3")
    assert role("blocks.3.attn.relative_position_bias_table", (732, 12)) == ("rel_pos", "value", 3, "blocks.3")
    assert role("rel_pos_bias.relative_position_bias_table", (732, 12))[:2] == ("rel_pos", "value")
    assert role("blocks.3.mlp.fc1_g.weight", (16, 8))[:2] == role("blocks.3.mlp.fc1_x.weight", (16, 8))[:2] == (
        "fc1", "weight")
    assert role("blocks.3.attn.q_proj.weight", (8, 8))[0] == "q"
    assert role("rope.freqs", (2, 12, 6, 16))[:2] == ("rope", "value")
    assert role("embeds.proj.weight", (96, 768))[0] == "patch_embed"
    assert role("embeds.pos_embed", (1, 16, 16, 96))[0] == "pos_embed"
    assert role("embeds.reg_token", (1, 4, 96))[0] == "reg_token"


def _sincos_table(grid: int, dim: int) -> torch.Tensor:
    """MAE's saved position table: a 2-D sin-cos table with a zero row for the class token."""
    from timm.layers import build_sincos2d_pos_embed

    table = build_sincos2d_pos_embed([grid, grid], dim=dim)
    return torch.cat([torch.zeros(1, dim), table])[None]


def test_saved_sin_cos_tables_are_no_evidence_either_way(dino):
    """MAE's encoder and decoder tables are computed, never trained: at MAE's own init the checkpoint reads init
    with both left out; in a trained model such a table is left out too, and the rest keeps its evidence."""
    from tests.test_mae_layout import _MaskedAutoencoderViT

    torch.manual_seed(0)
    mae = _MaskedAutoencoderViT(img_size=64, embed_dim=48, decoder_embed_dim=32)
    with torch.no_grad():
        for module in mae.modules():  # models_mae.initialize_weights: xavier Linear and patch projection
            if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)):
                torch.nn.init.xavier_uniform_(module.weight.view(module.weight.shape[0], -1))
                torch.nn.init.zeros_(module.bias)
        torch.nn.init.normal_(mae.cls_token, std=0.02)
        torch.nn.init.normal_(mae.mask_token, std=0.02)
        mae.pos_embed.copy_(_sincos_table(8, 48))
        mae.decoder_pos_embed.copy_(_sincos_table(8, 32))
    ckpt = checkpoint_from_state_dict(mae.state_dict())
    assert ckpt.layout == "mae" and ckpt.metadata["pos_embed"] == "fixed"
    result = audit(ckpt)
    assert result.verdict == "init", result.summary
    assert {b.name: b.kind for b in result.buffers} == {"pos_embed": "sincos", "decoder_pos_embed": "sincos"}
    assert not {"pos_embed", "decoder_pos_embed"} & {t.name for t in result.tensors}

    grid = int((dino["pos_embed"].shape[1] - 1) ** 0.5)
    fixed = audit(_memory({**dino, "pos_embed": _sincos_table(grid, dino["pos_embed"].shape[2])}))
    learned = audit(_memory(dino))
    assert fixed.verdict == "trained" and [b.name for b in fixed.buffers] == ["pos_embed"]
    assert {t.name for t in fixed.tensors if t.verdict == "trained"} == {
        t.name for t in learned.tensors if t.verdict == "trained" and t.name != "pos_embed"}
    assert not any("Position embedding" in line for line in fixed.evidence)


def test_aimv2_native_tower_audits_only_the_files_tensors():
    """A 'native' AIMv2 tower's table is made by vitdash from the config (transformers computes it at run time):
    nothing learned, so not audited."""
    import transformers

    config = transformers.Aimv2VisionConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                            intermediate_size=128, image_size=32, patch_size=8, is_native=True)
    torch.manual_seed(0)
    model = transformers.Aimv2VisionModel(config)
    ckpt = checkpoint_from_state_dict(model.state_dict(), metadata={"config": config.to_dict()})
    assert ckpt.derived == ["pos_embed"]
    result = audit(ckpt)
    _assert_random(result, [n for n in ckpt.tensors if n != "pos_embed"])
    assert "pos_embed" not in {t.name for t in result.tensors} | set(result.at_init)
