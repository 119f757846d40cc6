"""Every layout mapping is proven the same way: the canonical tensors, loaded strictly into the timm model
that vitdash builds, give the same output as the source library's own model on the same input."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from tests.layout_utils import randomize
from vitdash.identity.architecture import infer_architecture
from vitdash.identity.model import build_model
from vitdash.load.sources import checkpoint_from_state_dict, load

torch.manual_seed(0)


def _canonical_model(sd, **kw):
    ckpt = checkpoint_from_state_dict(sd, **kw)
    assert ckpt.canonical, ckpt.warnings
    return ckpt, build_model(ckpt)


@pytest.mark.parametrize("name,kwargs", [
    ("vit_tiny_patch16_224", dict(img_size=32, patch_size=8, depth=2)),
    ("deit_tiny_distilled_patch16_224", dict(img_size=32, patch_size=8, depth=2)),
    ("vit_small_patch14_reg4_dinov2", dict(img_size=28, depth=2)),
    ("vit_small_patch14_dinov2", dict(img_size=28, depth=2)),
    ("vit_base_patch16_224", dict(img_size=32, depth=1, global_pool="avg", fc_norm=True, embed_dim=64, num_heads=2)),
    ("vit_base_patch16_gap_224", dict(img_size=32, depth=1, embed_dim=64, num_heads=2)),
])
def test_timm_roundtrip(name, kwargs):
    import timm

    ref = randomize(timm.create_model(name, pretrained=False, **kwargs))
    ckpt, model = _canonical_model(ref.state_dict(), metadata={"num_heads": ref.blocks[0].attn.num_heads})
    assert ckpt.layout == "timm"
    x = torch.randn(2, 3, *ref.patch_embed.img_size)
    torch.testing.assert_close(model(x), ref(x), rtol=1e-4, atol=1e-5)


def test_model_zoo_prefix_and_ddp_wrapper():
    import timm

    ref = randomize(timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=8, depth=2))
    sd = {f"module.vit.{k}": v for k, v in ref.state_dict().items()}
    ckpt, model = _canonical_model(sd, metadata={"num_heads": 3})
    assert ckpt.layout == "model_zoo" and ckpt.wrappers == ["module", "vit"]
    x = torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(model(x), ref(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("representation_size", [None, 24])
def test_torchvision(representation_size):
    from torchvision.models import VisionTransformer

    ref = randomize(VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=4, hidden_dim=64,
                                       mlp_dim=128, num_classes=7, representation_size=representation_size))
    ckpt, model = _canonical_model(ref.state_dict(), metadata={"num_heads": 4})
    assert ckpt.layout == "torchvision" and not ckpt.unmapped_keys
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(model(x), ref(x), rtol=1e-4, atol=1e-5)


def _hub_names(sd: dict) -> dict:
    """transformers 5 names -> the names most files on the Hub still use (transformers 4)."""
    out = {}
    for k, v in sd.items():
        k = (k.replace("attention.q_proj", "attention.attention.query")
             .replace("attention.k_proj", "attention.attention.key")
             .replace("attention.v_proj", "attention.attention.value")
             .replace("attention.o_proj", "attention.output.dense"))
        out[k] = v
    return out


def _hf_models():
    from transformers import (
        DeiTConfig,
        DeiTForImageClassificationWithTeacher,
        Dinov2Config,
        Dinov2Model,
        Dinov2WithRegistersConfig,
        Dinov2WithRegistersModel,
        ViTConfig,
        ViTForImageClassification,
    )

    small = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128, image_size=32,
                 patch_size=8)
    return {
        "vit": ViTForImageClassification(ViTConfig(**small, num_labels=5)),
        "deit": DeiTForImageClassificationWithTeacher(DeiTConfig(**small, num_labels=5)),
        "dinov2": Dinov2Model(Dinov2Config(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, mlp_ratio=2,
                                           image_size=32, patch_size=8)),
        "dinov2_reg": Dinov2WithRegistersModel(Dinov2WithRegistersConfig(
            hidden_size=64, num_hidden_layers=2, num_attention_heads=4, mlp_ratio=2, image_size=32, patch_size=8,
            num_register_tokens=4)),
    }


def _hf_output(name, ref, x):
    with torch.no_grad():
        if name in ("vit", "deit"):
            return ref(pixel_values=x).logits
        return ref(pixel_values=x).pooler_output  # Dinov2: layernormed class token


@pytest.mark.parametrize("names", ["transformers5", "hub"])
@pytest.mark.parametrize("kind", ["vit", "deit", "dinov2", "dinov2_reg"])
def test_hugging_face(tmp_path, kind, names):
    ref = _hf_models()[kind]
    randomize(ref)
    ref.save_pretrained(tmp_path)  # config.json + model.safetensors, as on the Hub
    if names == "hub":
        from safetensors.torch import load_file, save_file

        f = tmp_path / "model.safetensors"
        save_file(_hub_names(load_file(f)), f, metadata={"format": "pt"})
    ckpt = load(tmp_path)
    assert ckpt.layout == "hf" and ckpt.canonical and ckpt.metadata["config"]["num_attention_heads"] == 4
    model = build_model(ckpt)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ours = model(x) if kind in ("vit", "deit") else model.forward_head(model.forward_features(x), pre_logits=True)
    # (DeiT: HF's teacher model averages its two heads, as timm's distilled model does in eval.)
    torch.testing.assert_close(ours, _hf_output(kind, ref, x), rtol=1e-4, atol=1e-4)


# ---- custom layouts: reference implementations written from the source repositories --------------------------


class _MHAViT(nn.Module):
    """The shape of the Fashion-MNIST ViT in ../shared: nn.MultiheadAttention, pre-norm, GELU MLP."""

    def __init__(self, dim=128, depth=6, heads=4, mlp=256, patch=4, img=28, chans=1, classes=10):
        super().__init__()
        self.patch_embedding = nn.Module()
        self.patch_embedding.patch_embed = nn.Conv2d(chans, dim, patch, patch)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, (img // patch) ** 2 + 1, dim))
        self.transformer_layers = nn.ModuleList()
        for _ in range(depth):
            layer = nn.Module()
            layer.layer_norm_1 = nn.LayerNorm(dim)
            layer.self_attention = nn.MultiheadAttention(dim, heads, batch_first=True)
            layer.layer_norm_2 = nn.LayerNorm(dim)
            layer.mlp = nn.Sequential(nn.Linear(dim, mlp), nn.GELU(), nn.Linear(mlp, dim))
            self.transformer_layers.append(layer)
        self.mlp_head = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, classes))

    def forward(self, x):
        x = self.patch_embedding.patch_embed(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(len(x), -1, -1), x], 1) + self.pos_embed
        for layer in self.transformer_layers:
            h = layer.layer_norm_1(x)
            x = x + layer.self_attention(h, h, h, need_weights=False)[0]
            x = x + layer.mlp(layer.layer_norm_2(x))
        return self.mlp_head(x[:, 0])


class _LucidrainsViT(nn.Module):
    """vit-pytorch's classic ViT (Rearrange + Linear patches, PreNorm, to_qkv without bias, LN+Linear head)."""

    def __init__(self, dim=64, depth=2, heads=4, dim_head=64, mlp=128, patch=4, img=28, chans=1, classes=10):
        super().__init__()
        self.patch, self.heads = patch, heads
        self.to_patch_embedding = nn.Sequential(nn.Identity(), nn.Linear(patch * patch * chans, dim))
        self.pos_embedding = nn.Parameter(torch.randn(1, (img // patch) ** 2 + 1, dim))
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim))
        inner = heads * dim_head
        self.transformer = nn.Module()
        self.transformer.layers = nn.ModuleList()
        for _ in range(depth):
            attn, ff = nn.Module(), nn.Module()
            attn.norm, attn.fn = nn.LayerNorm(dim), nn.Module()
            attn.fn.to_qkv = nn.Linear(dim, inner * 3, bias=False)
            attn.fn.to_out = nn.Sequential(nn.Linear(inner, dim), nn.Dropout(0.0))
            ff.norm, ff.fn = nn.LayerNorm(dim), nn.Module()
            ff.fn.net = nn.Sequential(nn.Linear(dim, mlp), nn.GELU(), nn.Dropout(0.0), nn.Linear(mlp, dim))
            self.transformer.layers.append(nn.ModuleList([attn, ff]))
        self.mlp_head = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, classes))

    def forward(self, img):
        b, c, hh, ww = img.shape
        p = self.patch
        # einops: 'b c (h p1) (w p2) -> b (h w) (p1 p2 c)'
        x = img.reshape(b, c, hh // p, p, ww // p, p).permute(0, 2, 4, 3, 5, 1).reshape(b, -1, p * p * c)
        x = self.to_patch_embedding(x)
        x = torch.cat([self.cls_token.expand(b, -1, -1), x], 1) + self.pos_embedding[:, : x.shape[1] + 1]
        for attn, ff in self.transformer.layers:
            h = attn.norm(x)
            q, k, v = attn.fn.to_qkv(h).chunk(3, dim=-1)
            q, k, v = (t.reshape(b, -1, self.heads, t.shape[-1] // self.heads).transpose(1, 2) for t in (q, k, v))
            a = (q @ k.transpose(-1, -2) * q.shape[-1] ** -0.5).softmax(-1)
            x = x + attn.fn.to_out((a @ v).transpose(1, 2).reshape(b, -1, q.shape[1] * q.shape[-1]))
            x = x + ff.fn.net(ff.norm(x))
        return self.mlp_head(x[:, 0])


class _SuperGradientsViT(nn.Module):
    """SuperGradients' ViT (classification_models/vit.py): conv patches, to_qkv + proj, pre_head_norm."""

    def __init__(self, dim=64, depth=2, heads=4, mlp=128, patch=8, img=32, classes=6):
        super().__init__()
        self.heads = heads
        self.patch_embedding = nn.Module()
        self.patch_embedding.proj = nn.Conv2d(3, dim, patch, patch)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim))
        self.pos_embedding = nn.Parameter(torch.randn(1, (img // patch) ** 2 + 1, dim))
        self.transformer = nn.Module()
        self.transformer.blocks = nn.ModuleList()
        for _ in range(depth):
            blk = nn.Module()
            blk.norm1, blk.norm2 = nn.LayerNorm(dim, eps=1e-6), nn.LayerNorm(dim, eps=1e-6)
            blk.attn = nn.Module()
            blk.attn.to_qkv, blk.attn.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
            blk.mlp = nn.Module()
            blk.mlp.fc1, blk.mlp.fc2 = nn.Linear(dim, mlp), nn.Linear(mlp, dim)
            self.transformer.blocks.append(blk)
        self.pre_head_norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, classes)

    def forward(self, img):
        x = self.patch_embedding.proj(img).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(len(x), -1, -1), x], 1) + self.pos_embedding
        for blk in self.transformer.blocks:
            B, N, C = x.shape
            qkv = blk.attn.to_qkv(blk.norm1(x)).reshape(B, N, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
            a = (qkv[0] @ qkv[1].transpose(-2, -1) * (C // self.heads) ** -0.5).softmax(-1)
            x = x + blk.attn.proj((a @ qkv[2]).transpose(1, 2).reshape(B, N, C))
            x = x + blk.mlp.fc2(nn.functional.gelu(blk.mlp.fc1(blk.norm2(x))))
        return self.head(self.pre_head_norm(x)[:, 0])


@pytest.mark.parametrize("ref_cls,heads,layout,layout_note", [
    (_MHAViT, 4, "structure", "MultiheadAttention"),
    (_LucidrainsViT, 4, "structure", "patch embedding"),
    (_SuperGradientsViT, 4, "supergradients", "SuperGradients"),
])
def test_custom_layouts(ref_cls, heads, layout, layout_note):
    ref = randomize(ref_cls())
    ckpt, model = _canonical_model(ref.state_dict(), metadata={"num_heads": heads})
    assert ckpt.layout == layout and not ckpt.unmapped_keys
    assert any(layout_note in n for n in ckpt.metadata["mapping_notes"])
    arch = infer_architecture(ckpt)
    x = torch.randn(2, arch.in_chans, *arch.img_size)
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref(x), rtol=1e-4, atol=1e-4)


# ---- the real files in ../shared --------------------------------------------------------------------------------


@pytest.mark.parametrize("fname,layout,ref_cls,kwargs", [
    ("fmnist_vit_custom.pth", "structure", _MHAViT, dict(heads=4)),
    ("mnist_vit_lucidrains_layout.pt", "structure", _LucidrainsViT, dict(depth=6, heads=4)),
])
def test_shared_custom_files_match_reference(shared_dir, fname, layout, ref_cls, kwargs):
    path = shared_dir / "checkpoints" / fname
    ckpt = load(path)
    assert ckpt.layout == layout and ckpt.canonical and not ckpt.unmapped_keys
    _assert_matches_reference(ckpt, ref_cls(**kwargs), path, kwargs["heads"])


def _assert_matches_reference(ckpt, ref: nn.Module, path, heads: int) -> None:
    """The shared file loaded into its reference implementation and into vitdash's timm model agree on MNIST-sized
    inputs; the head count, which no config states, is among the candidates the architecture lists."""
    ref.load_state_dict(torch.load(path, weights_only=True, map_location="cpu"))
    ref.eval()
    arch = infer_architecture(ckpt)
    assert arch.heads_inferred and heads in arch.head_candidates
    ckpt.metadata["num_heads"] = heads
    model = build_model(ckpt)
    x = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref(x), rtol=1e-4, atol=1e-4)


def test_shared_torchvision_file(shared_dir):
    from torchvision.models import VisionTransformer

    path = shared_dir / "checkpoints" / "mnist_vit_torchvision_layout.pth"
    ref = VisionTransformer(image_size=28, patch_size=2, num_layers=2, num_heads=2, hidden_dim=64, mlp_dim=256,
                            num_classes=10, representation_size=32)
    ref.conv_proj = nn.Conv2d(1, 64, 2, 2)
    ckpt = load(path)
    assert ckpt.layout == "torchvision"
    _assert_matches_reference(ckpt, ref, path, heads=2)


def test_shared_dinov2_matches_transformers(shared_dir):
    from transformers import Dinov2Model

    folder = shared_dir / "checkpoints" / "dinov2-small-hf"
    ckpt = load(folder)
    assert ckpt.layout == "hf" and ckpt.unmapped_keys == ["embeddings.mask_token"]
    arch = infer_architecture(ckpt)
    assert (arch.embed_dim, arch.depth, arch.num_heads, arch.patch_size, arch.grid_size) == (384, 12, 6, 14, (37, 37))
    ref = Dinov2Model.from_pretrained(folder).eval()
    model = build_model(ckpt)
    x = torch.randn(1, 3, 224, 224)  # other resolution: both interpolate the 37x37 position grid
    with torch.no_grad():
        ours = model.forward_head(model.forward_features(x), pre_logits=True)
        theirs = ref(pixel_values=x).pooler_output
    assert torch.nn.functional.cosine_similarity(ours, theirs).item() > 0.999
    assert math.isclose(ours.norm().item(), theirs.norm().item(), rel_tol=0.02)


def test_dino_teacher_backbone_beside_projection_head():
    """A DINO teacher keeps the ViT under `backbone.` and a projection head beside it: map the ViT,
    list the head as left over."""
    import timm

    ref = randomize(timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=8, depth=2, num_classes=0))
    sd = {f"backbone.{k}": v for k, v in ref.state_dict().items()}
    sd |= {"head.mlp.0.weight": torch.randn(16, 192), "head.last_layer.weight_g": torch.randn(32, 1)}
    ckpt, model = _canonical_model(sd, metadata={"num_heads": 3})
    assert ckpt.wrappers == ["backbone"]
    assert sorted(ckpt.unmapped_keys) == ["head.last_layer.weight_g", "head.mlp.0.weight"]
    x = torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(model(x), ref(x), rtol=1e-4, atol=1e-5)


def test_mapping_lists_the_files_own_keys_in_natural_order(shared_dir):
    """What the Overview's mapping table shows: each canonical tensor beside the file key(s) it came from."""
    ckpt = load(shared_dir / "checkpoints" / "dinov2-small-hf")
    rows = ckpt.mapping()
    assert len(rows) == len(ckpt.tensors)
    by_name = {r["canonical name"]: r for r in rows}
    assert by_name["blocks.0.attn.qkv.weight"]["original key"] == (
        "encoder.layer.0.attention.attention.query.weight + encoder.layer.0.attention.attention.key.weight + "
        "encoder.layer.0.attention.attention.value.weight")
    assert by_name["blocks.2.ls1.gamma"]["original key"] == "encoder.layer.2.layer_scale1.lambda1"
    keys = [r["original key"] for r in rows]
    assert keys.index("encoder.layer.2.mlp.fc1.bias") < keys.index("encoder.layer.10.mlp.fc1.bias")


def test_wrapped_keys_are_shown_with_their_wrapper():
    import timm

    ref = timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=8, depth=2, num_classes=0)
    ckpt, _ = _canonical_model({f"module.{k}": v for k, v in ref.state_dict().items()}, metadata={"num_heads": 3})
    assert {r["original key"] for r in ckpt.mapping()} == {f"module.{k}" for k in ref.state_dict()}
