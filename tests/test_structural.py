"""The structural recognizer on implementations nobody here wrote (tests/implementations: their keys, shapes and
forward reproduced from the public code) and on the real files in ../shared.

For each ViT: the architecture read from the file matches the implementation's truth, and where the weights
cannot show something (norm placement, activation) the recognizer says so; where timm can compute the model,
vitdash's timm model gives the same output as the source implementation on its trained weights (with what the
weights cannot show supplied as metadata, the way a config would), and attention rollout runs on it. Non-ViTs
are named for what they look like.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from tests.demo_utils import demo_cache_dir
from tests.implementations import states as S
from vitdash.attention.explain import explain_images
from vitdash.errors import VitdashError
from vitdash.identity.architecture import infer_architecture
from vitdash.identity.model import build_model
from vitdash.load.sources import checkpoint_from_state_dict, load

VITS = [n for n in S.names() if S.module(n).EXPECTED["is_vit"]]
NEGATIVES = [n for n in S.names() if not S.module(n).EXPECTED["is_vit"]]
_IMAGE = Image.fromarray((np.random.default_rng(1).random((40, 40, 3)) * 255).astype("uint8"))
# What a config would say and the weights cannot: the norm placement and activation of every block.
_NOT_SHOWN = {"block": "norm placement", "act": "activation"}


@pytest.fixture(scope="session")
def impl_cache(request):
    folder = demo_cache_dir(request.config, "vitdash-implementation-states")
    S.ensure(folder)
    return folder


def _load(sd: dict[str, torch.Tensor], tmp_path, name: str):
    """The state dict as a user has it: a .pth file, loaded the way vitdash loads any file."""
    path = tmp_path / f"{name}.pth"
    torch.save(sd, path)
    return load(path)


def _truth(exp: dict) -> dict:
    return {"block": "pre_norm" if exp["pre_norm"] else "post_ln", "act": exp["activation"]}


def _hints(exp: dict, model: nn.Module) -> dict:
    """Metadata a config file would carry for the source: what the weights cannot show (the head count too, where
    one fused projection holds all heads)."""
    eps = next((m.eps for m in model.modules() if isinstance(getattr(m, "eps", None), float)), 1e-5)
    truth = _truth(exp)
    hints = {"block": truth["block"], "hidden_act": truth["act"], "layer_norm_eps": eps, "num_heads": exp["num_heads"]}
    if exp["activation"] == "quick_gelu":  # open_clip's own config file says it
        hints["open_clip_config"] = {"model_cfg": {"quick_gelu": True, "vision_cfg": {
            "head_width": exp["embed_dim"] // exp["num_heads"]}}}
    return hints


def _notes(ckpt) -> str:
    return " ".join(ckpt.metadata.get("mapping_notes", []))


@pytest.mark.parametrize("name", VITS)
def test_architecture_of_public_implementations(name, impl_cache, tmp_path):
    mod = S.module(name)
    exp = mod.EXPECTED
    ckpt = _load(S.states(name, impl_cache).trained, tmp_path, name)
    assert ckpt.is_vit and ckpt.canonical, ckpt.warnings
    arch = infer_architecture(ckpt)
    assert (arch.embed_dim, arch.depth, arch.patch_size, arch.in_chans, arch.mlp_hidden, arch.qkv_bias) == (
        exp["embed_dim"], exp["depth"], exp["patch_size"], exp["in_chans"], exp["mlp_hidden"], exp["qkv_bias"])
    assert (arch.has_class_token, arch.has_dist_token, arch.num_classes) == (
        exp["class_token"], exp["dist_token"], exp["num_classes"] if "visual.proj" not in ckpt.unmapped_keys else 0)
    assert arch.global_pool == {"cls": "token", "mean": "avg"}[exp["pooling"]]
    assert arch.final_norm == exp["final_norm"]
    assert arch.heads_inferred or arch.num_heads == exp["num_heads"]
    assert exp["num_heads"] in arch.head_candidates
    pos = {"learned": "learned", "sincos_buffer": "fixed", "sincos_unsaved": "none"}[exp["pos_embed"]]
    assert arch.pos_embed == pos
    if pos == "none":  # the image size lives in the position table; without one vitdash says so
        assert "no position tensor" in _notes(ckpt)
    else:
        assert arch.img_size == (exp["img_size"],) * 2
    ours = {"block": arch.block, "act": arch.act}
    for key, truth in _truth(exp).items():  # what the weights cannot show is either right or named as assumed
        if ours[key] != truth:
            assert any(_NOT_SHOWN[key] in n and ("cannot show" in n or "assumed" in n)
                       for n in ckpt.metadata.get("mapping_notes", [])), (key, ours[key], truth)
    # Parts timm cannot compute are named (a LayerNorm on raw patch pixels, one norm per block): no exact model.
    assert bool(arch.not_in_timm) == (name.startswith("lucidrains_") or name == "augustwester_tiny_vit")
    if arch.not_in_timm:
        with pytest.raises(VitdashError, match="cannot compute"):
            build_model(ckpt, arch)
    else:  # attention rollout runs on every one that maps to timm
        heat = np.asarray(explain_images(ckpt, [_IMAGE])[0].map)
        assert heat.shape == arch.grid_size and np.isfinite(heat).all()
    assert not [k for k in ckpt.unmapped_keys if k not in ckpt.unmapped_reasons and not k.startswith(
        ("decoder", "mask_token"))], ckpt.unmapped_keys


def _source_output(mod, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    if hasattr(model, "encode_image"):  # CLIP: the pooled image feature before the joint-space projection
        model.visual.proj = nn.Parameter(torch.eye(model.visual.proj.shape[0]))
        return model.encode_image(x)
    return model(x)


EXACT = [n for n in VITS if not n.startswith("lucidrains_") and n not in (
    "augustwester_tiny_vit",  # strided patches and a scale bug: no timm equivalent (named: one norm per block)
    "hyunwoongko_blocks_vit", "pulfer_vit")]  # their sin-cos tables are computed in code and never saved


@pytest.mark.parametrize("name", EXACT)
def test_same_output_as_the_source_implementation(name, impl_cache, tmp_path):
    mod = S.module(name)
    exp = mod.EXPECTED
    source = mod.build().eval()
    source.load_state_dict(S.states(name, impl_cache).trained)
    ckpt = checkpoint_from_state_dict(source.state_dict(), metadata=_hints(exp, source), name=name)
    model = build_model(ckpt)
    x = torch.randn(3, exp["in_chans"], exp["img_size"], exp["img_size"], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = _source_output(mod, source, x)
        ours = model(x).softmax(-1) if exp["output"] == "probs" else model(x)
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-4 * float(ref.abs().max()))
    result = explain_images(ckpt, [_IMAGE], model=model)[0]
    heat = np.asarray(result.map)
    assert heat.shape == tuple(int(g) for g in model.patch_embed.grid_size) and np.isfinite(heat).all()


@pytest.mark.parametrize("name", NEGATIVES)
def test_non_vits_say_what_they_look_like(name, impl_cache, tmp_path):
    looks = {"cnn": "a convolutional network", "language_model": "a language model (token embedding",
             "sequence_model": "a 1-D sequence model"}
    ckpt = _load(S.states(name, impl_cache).trained, tmp_path, name)
    assert not ckpt.is_vit and not ckpt.canonical
    want = looks[S.module(name).EXPECTED["looks_like"]]
    assert want in ckpt.looks_like, ckpt.looks_like
    assert any(w.startswith(f"not a ViT: it looks like {want}") and "page" not in w for w in ckpt.warnings)
    if "language" in want:
        assert "causal mask" in ckpt.looks_like and "LM head" in ckpt.looks_like


# ---- the real files in ../shared: independent re-implementations of their forward, from the README ----------------


class _TorchEncoderMNIST(nn.Module):
    """ustbChengzhao/vit-mnist: 4x4 conv to 16 channels, Linear(16, 16), cls + learned positions, 3 post-norm
    ReLU nn.TransformerEncoderLayers (2 heads, dim_feedforward 2048), head on the class token."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 16, 4, 4)
        self.patch_emb = nn.Linear(16, 16)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, 16))
        self.pos_emb = nn.Parameter(torch.zeros(1, 50, 16))
        layer = nn.TransformerEncoderLayer(16, 2, batch_first=True)
        self.transformer = nn.TransformerEncoder(layer, 3, enable_nested_tensor=False)
        self.cls_linear = nn.Linear(16, 10)

    def forward(self, x):
        x = self.patch_emb(self.conv(x).flatten(2).transpose(1, 2))
        x = torch.cat([self.cls_token.expand(len(x), -1, -1), x], 1) + self.pos_emb
        return self.cls_linear(self.transformer(x)[:, 0])


class _PostNormLinearPatch(nn.Module):
    """agentzz1/transformer_poc: 7x7 patches unfolded into Linear(49, 32), positions, one post-norm block
    (nn.MultiheadAttention, 1 head; MLP 32-64-32 GELU), final norm, mean over tokens, classifier."""

    def __init__(self):
        super().__init__()
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Linear(49, 32)
        self.pos_embed = nn.Parameter(torch.zeros(1, 16, 32))
        block = nn.Module()
        block.attn = nn.MultiheadAttention(32, 1, batch_first=True)
        block.ffn = nn.Module()
        block.ffn.fc1, block.ffn.fc2 = nn.Linear(32, 64), nn.Linear(64, 32)
        block.norm1, block.norm2 = nn.LayerNorm(32), nn.LayerNorm(32)
        self.encoder = nn.ModuleList([block])
        self.norm = nn.LayerNorm(32)
        self.classifier = nn.Linear(32, 10)

    def forward(self, x):
        p = x.unfold(2, 7, 7).unfold(3, 7, 7).reshape(len(x), 16, 49)
        x = self.patch_embed.proj(p) + self.pos_embed
        for b in self.encoder:
            x = b.norm1(x + b.attn(x, x, x, need_weights=False)[0])
            x = b.norm2(x + b.ffn.fc2(nn.functional.gelu(b.ffn.fc1(x))))
        return self.classifier(self.norm(x).mean(1))


@pytest.mark.parametrize("fname,ref_cls,truth", [
    ("mnist_vit_nn_transformer_encoder.pth", _TorchEncoderMNIST,
     dict(embed_dim=16, depth=3, patch_size=4, img_size=(28, 28), block="post_ln", act="relu", global_pool="token",
          final_norm=False, mlp_hidden=2048, heads=2)),
    ("mnist_vit_postnorm_linear_patch.pth", _PostNormLinearPatch,
     dict(embed_dim=32, depth=1, patch_size=7, img_size=(28, 28), block="post_ln", act="gelu", global_pool="avg",
          final_norm=True, mlp_hidden=64, heads=1)),
])
def test_shared_files_by_structure(shared_dir, fname, ref_cls, truth):
    path = shared_dir / "checkpoints" / fname
    ckpt = load(path)
    assert ckpt.is_vit and ckpt.layout == "structure" and not ckpt.unmapped_keys
    assert any(n.startswith("recognized by structure") for n in ckpt.metadata["mapping_notes"])
    arch = infer_architecture(ckpt)
    ours = dict(embed_dim=arch.embed_dim, depth=arch.depth, patch_size=arch.patch_size, img_size=arch.img_size,
                block=arch.block, act=arch.act, global_pool=arch.global_pool, final_norm=arch.final_norm,
                mlp_hidden=arch.mlp_hidden, heads=truth["heads"] if arch.heads_inferred else arch.num_heads)
    assert ours == truth and truth["heads"] in arch.head_candidates
    ref = ref_cls()
    ref.load_state_dict(torch.load(path, weights_only=True, map_location="cpu"))
    ckpt.metadata["num_heads"] = truth["heads"]
    model = build_model(ckpt)
    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref.eval()(x), rtol=1e-4, atol=1e-4)


# ---- timm's own ViT in someone else's names: every option the recognizer maps onto timm ---------------------------

_DISGUISE = [  # (timm name pattern, a hand-written ViT's name); order as the modules are defined in timm
    (r"^cls_token$", "class_token"), (r"^reg_token$", "register_tokens"), (r"^pos_embed$", "position"),
    (r"^patch_embed\.proj\.", "embed.conv."), (r"^patch_embed\.norm\.", "embed.ln."),
    (r"^blocks\.(\d+)\.norm1\.", r"transformer.layer.\1.ln_attn."),
    (r"^blocks\.(\d+)\.attn\.qkv\.", r"transformer.layer.\1.attention.qkv_proj."),
    (r"^blocks\.(\d+)\.attn\.proj\.", r"transformer.layer.\1.attention.out."),
    (r"^blocks\.(\d+)\.norm2\.", r"transformer.layer.\1.ln_ffn."),
    (r"^blocks\.(\d+)\.mlp\.fc1\.", r"transformer.layer.\1.ffn.expand."),
    (r"^blocks\.(\d+)\.mlp\.fc2\.", r"transformer.layer.\1.ffn.contract."),
    (r"^norm\.", "final_ln."), (r"^fc_norm\.", "pool_norm."), (r"^head\.", "classifier."),
]


@pytest.mark.parametrize("kwargs", [
    dict(),
    dict(class_token=False, global_pool="avg", fc_norm=True),
    dict(no_embed_class=True, reg_tokens=2, qkv_bias=False),
    dict(embed_norm_layer="layernorm", class_token=False, global_pool="avg", fc_norm=False),
])
def test_timm_vit_in_other_names(kwargs):
    import re

    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    ref = VisionTransformer(img_size=32, patch_size=8, in_chans=3, num_classes=7, embed_dim=48, depth=2,
                            num_heads=4, **kwargs).eval()
    with torch.no_grad():
        for p in ref.parameters():
            p.add_(0.05 * torch.randn_like(p))

    def rename(k: str) -> str:
        return next((re.sub(pat, rep, k) for pat, rep in _DISGUISE if re.match(pat, k)), k)

    sd = {rename(k): v for k, v in ref.state_dict().items()}
    ckpt = checkpoint_from_state_dict(sd, metadata={"layer_norm_eps": 1e-6, "num_heads": 4})
    assert ckpt.layout == "structure" and not ckpt.unmapped_keys, ckpt.unmapped_keys
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(build_model(ckpt)(x), ref(x), rtol=1e-4, atol=1e-5)
