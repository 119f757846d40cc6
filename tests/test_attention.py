"""Attention maps, rollout and gradient rollout against direct reference computations."""
from __future__ import annotations

from functools import partial

import numpy as np
import pytest
import timm
import torch
from timm.layers import use_fused_attn
from timm.utils import AttentionExtract

from vitdash.attention.capture import TokenLayout, attention_maps, pool_attention, token_layout
from vitdash.attention.explain import Prediction, anatomy, explain, explain_images, top_predictions
from vitdash.attention.rollout import HEAD_FUSIONS, discard_lowest, fuse_heads, rollout
from vitdash.data.labels import class_names
from vitdash.data.samples import ImageRef, default_picks, image_data_for, merge_samples
from vitdash.errors import VitdashError
from vitdash.load.checkpoint import Checkpoint, TensorStore

TINY = dict(img_size=32, patch_size=8, depth=2, embed_dim=48, num_heads=3)
MODELS = {
    "cls": ("vit_tiny_patch16_224", dict(TINY, num_classes=10)),
    "cls+dist": ("deit_tiny_distilled_patch16_224", dict(TINY, num_classes=10)),
    # DINOv2-style: class token, 4 registers, position embedding without prefix entries, LayerScale
    "cls+reg": ("vit_small_patch14_reg4_dinov2", dict(img_size=42, depth=2, embed_dim=48, num_heads=3)),
    "avg-pooled, 1 register": ("vit_medium_patch16_reg1_gap_256", dict(TINY, num_classes=10)),
    # SigLIP-style: no class token, the head reads an attention pool ('map')
    "map-pooled": ("vit_base_patch16_siglip_224", dict(TINY, num_classes=10)),
}


def make(kind: str, seed: int = 0, **extra) -> torch.nn.Module:
    name, kwargs = MODELS[kind]
    torch.manual_seed(seed)
    model = timm.create_model(name, pretrained=False, **kwargs, **extra).eval()
    # timm's init leaves some tensors at zero (biases, tokens); random values make the check meaningful
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def reference_maps(model, x: torch.Tensor) -> list[np.ndarray]:
    """softmax(Q K^T / sqrt(d)) in numpy from each block's input, walking the blocks by hand."""
    maps = []
    with torch.no_grad():
        h = model.norm_pre(model._pos_embed(model.patch_embed(x)))
        for blk in model.blocks:
            z = blk.norm1(h).double().numpy()
            attn = blk.attn
            qkv = z @ attn.qkv.weight.double().numpy().T + attn.qkv.bias.double().numpy()
            b, n, _ = qkv.shape
            qkv = qkv.reshape(b, n, 3, attn.num_heads, attn.head_dim).transpose(2, 0, 3, 1, 4)
            q, k = qkv[0], qkv[1]
            maps.append(softmax(q @ k.transpose(0, 1, 3, 2) / np.sqrt(attn.head_dim)))
            h = blk(h)
    return maps


@pytest.mark.parametrize("kind", list(MODELS))
def test_maps_equal_direct_reference_and_timm_attention_extract(kind):
    model = make(kind)
    size = model.patch_embed.img_size
    x = torch.randn(2, 3, *size)
    got = attention_maps(model, x)
    ref = reference_maps(model, x)
    assert len(got.attentions) == len(ref) == len(model.blocks)
    for g, r in zip(got.attentions, ref):
        np.testing.assert_allclose(g.numpy(), r, atol=1e-5)

    # timm's own tool on a separate instance with unfused attention gives the same maps
    other = make(kind)
    for blk in other.blocks:
        blk.attn.fused_attn = False
    extracted = list(AttentionExtract(other, method="fx")(x).values())
    for g, e in zip(got.attentions, extracted):
        torch.testing.assert_close(g, e, atol=1e-5, rtol=1e-4)
    # and the twin's prediction is the shared (fused) model's prediction
    with torch.no_grad():
        torch.testing.assert_close(got.output, model(x), atol=1e-5, rtol=1e-4)


def test_shared_model_state_is_never_changed():
    model, other = make("cls"), make("cls", seed=1)
    fused_before = [blk.attn.fused_attn for blk in model.blocks]
    assert any(fused_before), "test needs a model with fused attention on"
    explain(model, torch.randn(1, 3, 32, 32), method="grad_rollout")
    explain(model, torch.randn(1, 3, 48, 40))  # another resolution must not make the model dynamic
    assert [blk.attn.fused_attn for blk in model.blocks] == fused_before
    assert all(blk.attn.fused_attn for blk in other.blocks)
    assert use_fused_attn() == fused_before[0]
    assert not model.dynamic_img_size and model.patch_embed.strict_img_size
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
    assert all(p.grad is None for p in model.parameters())
    with pytest.raises(AssertionError):  # the shared model still refuses other sizes itself
        model(torch.randn(1, 3, 48, 40))


def test_other_resolution_non_square_matches_timm_dynamic_model():
    model = make("cls+reg")
    x = torch.randn(1, 3, 56, 84)  # native grid 3x3, asked 4x6
    got = attention_maps(model, x)
    assert got.layout.grid == (4, 6)
    assert got.attentions[0].shape[-1] == 5 + 24
    # timm's dynamic_img_size model with the same weights interpolates the position embedding the same way
    name, kwargs = MODELS["cls+reg"]
    dynamic = timm.create_model(name, pretrained=False, dynamic_img_size=True, **kwargs).eval()
    dynamic.load_state_dict(model.state_dict())
    for g, r in zip(got.attentions, reference_maps(dynamic, x)):
        np.testing.assert_allclose(g.numpy(), r, atol=1e-5)
    res = explain(model, x)[0]
    assert res.map.shape == (4, 6) and res.source_attention.shape == (2, 3, 4, 6)


def test_input_must_be_whole_patches():
    with pytest.raises(VitdashError, match="multiple of the patch size"):
        explain(make("cls"), torch.randn(1, 3, 36, 32))
    with pytest.raises(VitdashError, match="shape"):
        explain(make("cls"), torch.randn(1, 1, 32, 32))


def test_token_layouts():
    assert token_layout(make("cls")) == TokenLayout(1, 0, None, (), (4, 4))
    assert token_layout(make("cls+dist")) == TokenLayout(2, 0, 1, (), (4, 4))
    assert token_layout(make("cls+reg")) == TokenLayout(5, 0, None, (1, 2, 3, 4), (3, 3))
    gap = token_layout(make("avg-pooled, 1 register"))
    assert gap == TokenLayout(1, None, None, (0,), (4, 4))
    assert gap.default_source == "patches" and gap.available_sources == ("registers", "patches")
    with pytest.raises(VitdashError, match="no dist token"):
        token_layout(make("cls")).source_rows("dist")


# ----------------------------------------------------------------------------- rollout math


def numpy_rollout(attn: list[np.ndarray], fusion: str, discard: float, start: int) -> np.ndarray:
    """Abnar & Zuidema written out per image: fuse heads, drop lowest entries, + I, renormalize, multiply."""
    b, _, n, _ = attn[0].shape
    out = np.zeros((b, n, n))
    for i in range(b):
        result = np.eye(n)
        for layer in attn[start:]:
            a = getattr(np, fusion)(layer[i], axis=0)
            flat = a.flatten()
            flat[np.argsort(flat, kind="stable")[: int(flat.size * discard)]] = 0
            a = flat.reshape(n, n) + np.eye(n)
            result = (a / a.sum(axis=1, keepdims=True)) @ result
        out[i] = result
    return out


def random_attention(b=3, h=4, n=7, layers=3, seed=0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [softmax(rng.normal(size=(b, h, n, n)) * 2) for _ in range(layers)]


@pytest.mark.parametrize("fusion", HEAD_FUSIONS)
@pytest.mark.parametrize("discard", [0.0, 0.3, 0.9])
@pytest.mark.parametrize("start", [0, 1])
def test_rollout_matches_numpy(fusion, discard, start):
    attn = random_attention()
    fused = [fuse_heads(torch.from_numpy(a), fusion) for a in attn[start:]]
    got = rollout(fused, discard).numpy()
    np.testing.assert_allclose(got, numpy_rollout(attn, fusion, discard, start), atol=1e-6)
    np.testing.assert_allclose(got.sum(axis=-1), 1.0, atol=1e-6)
    # only some rows, multiplied from the last layer down: the same numbers
    query = torch.eye(7)[[4, 0]].expand(3, 2, 7)
    np.testing.assert_allclose(rollout(fused, discard, query).numpy(), got[:, [4, 0]], atol=1e-6)


def test_identity_attention_gives_identity_rollout():
    eye = torch.eye(6).expand(2, 6, 6)
    for discard in (0.0, 0.5):
        torch.testing.assert_close(rollout([eye, eye, eye], discard), torch.eye(6).expand(2, 6, 6))


def test_discard_is_per_image():
    attn = torch.from_numpy(random_attention(b=2, layers=1)[0]).mean(dim=1)
    both = discard_lowest(attn, 0.5)
    for i in range(2):
        torch.testing.assert_close(both[i:i + 1], discard_lowest(attn[i:i + 1], 0.5))
        assert (both[i] == 0).sum() == int(attn[i].numel() * 0.5)


def test_concurrent_calls_on_one_model_are_independent():
    """Two Streamlit sessions may explain on the same cached model at once."""
    from concurrent.futures import ThreadPoolExecutor

    model = make("cls")
    xs = [torch.randn(1, 3, 32, 32) for _ in range(6)]
    methods = ["rollout", "grad_rollout"] * 3
    alone = [explain(model, x, method=m)[0].map for x, m in zip(xs, methods)]
    with ThreadPoolExecutor(3) as pool:
        together = list(pool.map(lambda xm: explain(model, xm[0], method=xm[1])[0].map, zip(xs, methods)))
    for a, t in zip(alone, together):
        np.testing.assert_allclose(a, t, atol=1e-6)


def test_explain_batch_equals_images_one_by_one():
    model = make("cls")
    x = torch.randn(3, 3, 32, 32)
    batch = explain(model, x, discard_ratio=0.8, head_fusion="max", start_layer=1)
    for i, res in enumerate(batch):
        alone = explain(model, x[i:i + 1], discard_ratio=0.8, head_fusion="max", start_layer=1)[0]
        np.testing.assert_allclose(res.map, alone.map, atol=1e-6)
        assert res.map.sum() + res.prefix_share == pytest.approx(1.0, abs=1e-5)


def test_explain_map_is_rollout_row_of_source():
    model = make("cls+reg")
    x = torch.randn(1, 3, 42, 42)
    ref = reference_maps(model, x)
    expected = numpy_rollout(ref, "mean", 0.0, 0)[0]
    for source, rows in (("cls", [0]), ("registers", [1, 2, 3, 4]), ("patches", list(range(5, 14)))):
        res = explain(model, x, source=source)[0]
        row = expected[rows].mean(axis=0)
        np.testing.assert_allclose(res.map, row[5:].reshape(3, 3), atol=1e-5)
        assert res.prefix_share == pytest.approx(row[:5].sum(), abs=1e-5)
        raw = np.stack([r[0][:, rows].mean(axis=1)[:, 5:].reshape(3, 3, 3) for r in ref])
        np.testing.assert_allclose(res.source_attention, raw, atol=1e-5)
    res = explain(model, x)[0]
    np.testing.assert_allclose(res.raw(1), res.source_attention[1].mean(axis=0))
    np.testing.assert_allclose(res.raw(1, 2), res.source_attention[1, 2])
    with pytest.raises(VitdashError, match="head must be"):
        res.raw(0, 3)


def test_distillation_token_source():
    model = make("cls+dist")
    x = torch.randn(1, 3, 32, 32)
    ref = numpy_rollout(reference_maps(model, x), "mean", 0.0, 0)[0]
    res = explain(model, x, source="dist")[0]
    np.testing.assert_allclose(res.map, ref[1, 2:].reshape(4, 4), atol=1e-5)
    assert res.to_dict()["tokens"]["dist_index"] == 1


def test_grad_rollout_matches_gradient_through_fused_attention():
    """dL/dA = dL/dO_h V_h^T, taken on the shared model's own fused forward (no softmax materialized)."""
    model = make("cls")
    x = torch.randn(1, 3, 32, 32)
    res = explain(model, x, method="grad_rollout", target_class=3)[0]
    assert res.target_class == 3 and res.head_fusion == "grad_mean"

    ref = reference_maps(model, x)
    values, outputs = [], []

    def keep_v(attn, _module, _inp, qkv):
        values.append(qkv.reshape(*qkv.shape[:2], 3, attn.num_heads, attn.head_dim)[:, :, 2].transpose(1, 2))

    def keep_output(_module, inp):  # attn.norm's input is the heads' output A @ V, (B, N, heads * hd)
        inp[0].retain_grad()
        outputs.append(inp[0])

    hooks = []
    for blk in model.blocks:
        hooks.append(blk.attn.qkv.register_forward_hook(partial(keep_v, blk.attn)))
        hooks.append(blk.attn.norm.register_forward_pre_hook(keep_output))
    model(x)[0, 3].backward()
    for h in hooks:
        h.remove()
    model.zero_grad(set_to_none=True)
    weighted = []
    for a, v, o in zip(ref, values, outputs):
        b, n, _ = o.shape
        g = o.grad.reshape(b, n, v.shape[1], -1).transpose(1, 2)  # (B, heads, N, hd)
        da = (g @ v.detach().transpose(-1, -2)).double().numpy()
        weighted.append(np.clip(da * a, 0, None).mean(axis=1))
    assert all(w.max() > 0 for w in weighted)
    expected = rollout([torch.from_numpy(w) for w in weighted]).numpy()[0]
    assert np.ptp(expected[0, 1:]) > 1e-4  # a map with structure, not the identity's zeros
    np.testing.assert_allclose(res.map, expected[0, 1:].reshape(4, 4), atol=1e-5)
    plain = explain(model, x)[0]
    assert not np.allclose(plain.map, res.map, atol=1e-4)


def test_grad_rollout_defaults_to_top1_and_needs_a_head():
    model = make("cls").requires_grad_(False)  # a frozen inference model still gives gradients
    x = torch.randn(2, 3, 32, 32)
    res = explain(model, x, method="grad_rollout")
    with torch.no_grad():
        assert [r.target_class for r in res] == model(x).argmax(dim=1).tolist()
    with pytest.raises(VitdashError, match="one index"):
        explain(model, x, method="grad_rollout", target_class=10)
    with pytest.raises(VitdashError, match="classification head"):
        explain(make("cls+reg"), torch.randn(1, 3, 42, 42), method="grad_rollout")


@pytest.mark.parametrize("kwargs, message", [
    (dict(discard_ratio=1.0), "discard ratio"),
    (dict(head_fusion="median"), "head fusion"),
    (dict(start_layer=2), "start layer"),
    (dict(method="saliency"), "method"),
    (dict(source="dist"), "no dist token"),
])
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(VitdashError, match=message):
        explain(make("cls"), torch.randn(1, 3, 32, 32), **kwargs)


def test_not_a_vit_is_refused():
    with pytest.raises(VitdashError, match="VisionTransformer"):
        attention_maps(torch.nn.Linear(2, 2), torch.randn(1, 2))


def test_class_names_and_top5():
    assert class_names(3, {"id2label": {"0": "cat", "1": "dog", "2": "eel"}}) == ["cat", "dog", "eel"]
    assert class_names(2, {"config": {"id2label": {0: "a", 1: "b"}}}) == ["a", "b"]
    assert class_names(2, {"class_to_idx": {"b": 1, "a": 0}}) == ["a", "b"]
    assert class_names(2, {"id2label": {"0": "a", "2": "c"}}) is None  # gaps: not this head's names
    assert class_names(2, {"class_to_idx": {"a": "x", "b": 1}}) is None
    assert class_names(10) is None
    names = class_names(1000)
    assert names[0].startswith("tench") and len(names) == 1000
    top = top_predictions(torch.tensor([0.0, 3.0, 1.0, 2.0, -1.0, 0.5]), list("abcdef"))
    assert [p.label for p in top] == ["b", "d", "c", "f", "a"]
    assert sum(p.probability for p in top) < 1.0 and top[0].to_dict()["index"] == 1


def test_explain_images_end_to_end_on_a_checkpoint():
    from vitdash.data.samples import sklearn_samples
    from vitdash.load.sources import load_timm

    ckpt = load_timm("vit_tiny_patch16_224", img_size=32, patch_size=8, depth=2, embed_dim=48, num_heads=3,
                     num_classes=1000)
    images = [ref.load() for ref in sklearn_samples()]
    results = explain_images(ckpt, images, img_size=(40, 30), head_fusion="min", discard_ratio=0.5)
    assert len(results) == 2
    d = results[0].to_dict()
    assert d["grid"] == [5, 3] and d["input_size"] == [40, 24] and d["num_prefix_tokens"] == 1
    assert results[0].image.size == (24, 40)
    assert len(d["map"]) == 5 and len(d["map"][0]) == 3
    assert len(d["top5"]) == 5 and d["top5"][0]["label"]
    import json

    json.dumps(d)


# ----------------------------------------------------------------------------- overlay, figures, CLI


def test_overlay_blend_and_png():
    from PIL import Image

    from vitdash.attention import overlay as O

    lut = O.colormap_lut("Viridis")
    assert lut.shape == (256, 3) and tuple(lut[0]) == (68, 1, 84) and tuple(lut[-1]) == (253, 231, 37)
    with pytest.raises(VitdashError, match="unknown colormap"):
        O.colormap_lut("NoSuchScale")
    image = Image.new("RGB", (40, 20), (10, 20, 30))
    values = np.array([[0.0, 1.0], [2.0, 3.0]])
    assert O.blend(image, values, opacity=0.0).tobytes() == image.tobytes()
    full = np.asarray(O.blend(image, values, "Viridis", opacity=1.0))
    assert tuple(full[0, 0]) == (68, 1, 84) and tuple(full[-1, -1]) == (253, 231, 37)  # low top-left, high bottom-right
    np.testing.assert_allclose(O.normalize(values), values / 3)
    np.testing.assert_allclose(O.normalize(np.array([[0.0, 1.0], [1.0, 100.0]]), clip=0.5), [[0, 1], [1, 1]])
    assert not O.normalize(np.ones((2, 2))).any()
    with pytest.raises(VitdashError, match="NaN"):
        O.normalize(np.array([[np.nan, 1.0]]))
    with pytest.raises(VitdashError, match="opacity"):
        O.blend(image, values, opacity=1.5)
    row = O.side_by_side([image, O.upscale(image, 60)])
    assert row.size == (40 + 4 + 120, 60)
    assert Image.open(__import__("io").BytesIO(O.to_png(row))).size == row.size


def test_figures():
    from vitdash.figures.attention import heads_figure, map_figure, top5_figure

    maps = np.random.default_rng(0).random((5, 3, 4))
    fig = heads_figure(maps, layer=2)
    assert len(fig.data) == 5 and [a.text for a in fig.layout.annotations] == [f"head {i}" for i in range(5)]
    assert map_figure(maps[0], "x").data[0].z.shape == (3, 4)
    bars = top5_figure([Prediction(3, 0.5, "cat"), Prediction(1, 0.2, None)])
    assert list(bars.data[0].y) == ["cat (3)", "class 1"]  # the name first, where the head has names
    assert bars.layout.yaxis.type == "category"  # unnamed classes ("0", "8") are rows, not a number line


def test_cli_rollout_json_and_png(tmp_path, capsys):
    import json

    from PIL import Image
    from safetensors.torch import save_file

    from vitdash.cli import main

    model = make("cls+reg")
    ckpt = tmp_path / "m.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(ckpt))
    image = tmp_path / "i.png"
    Image.new("RGB", (50, 40), (90, 120, 200)).save(image)
    out = tmp_path / "o.png"
    assert main(["rollout", str(ckpt), str(image), "-o", str(out), "--head-fusion", "max", "--discard-ratio", "0.9",
                 "--source", "registers", "--img-size", "28x56", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["grid"] == [2, 4] and d["num_prefix_tokens"] == 5 and d["source"] == "registers"
    assert np.asarray(d["map"]).shape == (2, 4) and d["top5"] is None and d["head_fusion"] == "max"
    w, h = Image.open(out).size  # short side upscaled to >= 224 px, whole factors, then the colour bar on the
    assert w > 56 * 8 + 14 and h > 28 * 8  # right and the file names and settings under it

    assert main(["rollout", str(ckpt), str(ckpt)]) == 2
    assert "not an image" in capsys.readouterr().err
    assert main(["rollout", str(ckpt), str(image), "--method", "grad_rollout"]) == 2
    assert "classification head" in capsys.readouterr().err


def test_real_dinov2_checkpoint_maps_match_reference(shared_dir):
    """The canonical model built from real weights (HF layout, LayerScale, 37x37 position grid)."""
    from vitdash.identity.model import build_model
    from vitdash.load.sources import load

    ckpt = load(shared_dir / "checkpoints" / "dinov2-small-hf")
    model = build_model(ckpt)
    torch.manual_seed(0)
    x = torch.randn(1, 3, 56, 98)  # 4x7 patches of 14 px: position embeddings resampled from 37x37
    got = attention_maps(model, x)
    assert got.layout == TokenLayout(1, 0, None, (), (4, 7))
    for g, r in zip(got.attentions, reference_maps(model, x)):
        np.testing.assert_allclose(g.numpy(), r, atol=2e-5)
    with torch.no_grad():
        torch.testing.assert_close(got.output, model(x), atol=1e-4, rtol=1e-4)
    res = explain(model, x, discard_ratio=0.5)[0]
    assert res.map.shape == (4, 7) and res.top5 is None


# ----------------------------------------------------------------------------- attention-pooled models


def test_map_pooled_model_is_seen_from_its_pools_query():
    """SigLIP-style models: the map is the rollout rows weighted by the pool's attention over the final
    tokens, which `pool_attention` recomputes exactly (it rebuilds the pool's output)."""
    model = make("map-pooled")
    layout = token_layout(model)
    assert layout.pool_start == 0 and layout.default_source == "pool"
    assert layout.available_sources == ("pool", "patches")
    x = torch.randn(2, 3, 32, 32)
    seen = {}
    handle = model.attn_pool.register_forward_pre_hook(lambda _m, args: seen.setdefault("x", args[0]))
    with torch.no_grad():
        features = model.forward_head(model.forward_features(x), pre_logits=True)
    handle.remove()
    pool, tokens = model.attn_pool, seen["x"]
    b, n, c = tokens.shape
    with torch.no_grad():
        attn = pool_attention(pool, tokens)  # (B, heads, 1, N)
        v = pool.kv(tokens).reshape(b, n, 2, pool.num_heads, pool.head_dim)[:, :, 1].transpose(1, 2)
        out = pool.proj((attn @ v).transpose(1, 2).reshape(b, 1, c))
        out = out + pool.mlp(pool.norm(out))
    torch.testing.assert_close(out[:, 0], features, atol=1e-5, rtol=1e-5)

    results = explain(model, x)
    weights = attn.mean(dim=1)[:, 0].double().numpy()  # heads fused by their mean, like the blocks'
    maps = reference_maps(model, x)
    flow = np.einsum("bn,bnm->bm", weights, numpy_rollout(maps, "mean", 0.0, 0))
    for i, res in enumerate(results):
        assert res.source == "pool" and res.prefix_share == 0.0
        np.testing.assert_allclose(res.map.ravel(), flow[i], atol=1e-5)
        assert abs(res.map.sum() - 1) < 1e-5
        raw_layer1 = np.einsum("n,hnm->hm", weights[i], maps[1][i]).reshape(-1, *res.grid)
        np.testing.assert_allclose(res.source_attention[1], raw_layer1, atol=1e-5)
    # the pool's view differs from the plain mean of the patches, and gradient rollout reads it too
    patches = explain(model, x, source="patches")[0]
    assert not np.allclose(patches.map, results[0].map, atol=1e-4)
    grad = explain(model, x, method="grad_rollout")[0]
    assert grad.source == "pool" and abs(grad.map.sum() + grad.prefix_share - 1) < 1e-5


def test_anatomy_reads_layers_heads_patch_and_tokens():
    named = Checkpoint(TensorStore.from_tensors({}), "x.pth", "torch", metadata={"id2label": {str(i): f"c{i}"
                                                                                          for i in range(10)}})
    a = anatomy(make("cls+dist"), named)
    assert (a.depth, a.num_heads, a.patch, a.in_chans, a.num_classes) == (2, 3, (8, 8), 3, 10)
    assert a.class_names == [f"c{i}" for i in range(10)]
    assert a.describe() == ("2 layers x 3 heads, patch 8x8, native grid 4x4 (32x32 px); prefix tokens: class, "
                            "distillation")
    b = anatomy(make("cls+reg", num_classes=0))
    assert b.num_classes == 0 and b.class_names is None and b.describe().endswith("class, 4 register")


def test_image_choices_merge_and_default_to_labelled_photographs():
    a, b, c = (ImageRef(n, o, f"/x/{n}", lab) for n, o, lab in (("a", "sklearn", None), ("b", "folder", "dog"),
                                                              ("c", "data", "cat")))
    assert merge_samples([a, b], [b, c]) == [a, b, c]
    assert default_picks([a, b, c]) == [b] and default_picks([a, c]) == [a, c]
    assert image_data_for(3) == "" and image_data_for(1) == "digits"
    assert b.title == "b (sample folder) - dog"
    assert ImageRef("n1_dog", "folder", "/p", "dog").title == "n1_dog (sample folder)"


# ----------------------------------------------------------------------------- outlier patches and artifact tokens


def test_hot_patches_are_found_saturated_and_marked():
    from vitdash.attention.artifacts import find_artifacts, treat

    rng = np.random.default_rng(0)
    flat = rng.random((20, 20)) + 1.0  # a readable map: no patch stands out of its 98% quantile by 4x
    assert not find_artifacts(flat).found and find_artifacts(flat).describe() == ""
    hot = flat.copy()
    hot[3, 4], hot[10, 11] = 400.0, 90.0
    found = find_artifacts(hot)
    assert found.hot == [(3, 4), (10, 11)] and found.share > 0.4 and found.peak_ratio > 100
    capped = treat(hot, found.hot, "saturate")
    assert capped[3, 4] == capped[10, 11] == flat.max() and np.array_equal(capped[0], hot[0])
    assert treat(hot, found.hot, "leave out")[3, 4] == flat.min()
    assert np.array_equal(treat(hot, found.hot, "show"), hot)
    with pytest.raises(VitdashError, match="unknown treatment"):
        treat(hot, found.hot, "blur")


def test_high_norm_tokens_in_the_last_blocks():
    from vitdash.attention.artifacts import find_artifacts

    norms = np.full((4, 6, 6), 50.0)
    norms[-1, 2, 5] = 400.0  # Darcet et al.'s signature: a patch token whose norm explodes in a late block
    found = find_artifacts(np.ones((6, 6)), norms)
    assert found.high_norm == [(2, 5)] and found.norm_ratio == pytest.approx(8.0)
    assert "high-norm token" in found.describe() and "Vision Transformers Need Registers" in found.describe()


def test_results_carry_token_norms_and_pictures_carry_their_settings(shared_dir):
    from PIL import Image

    from vitdash.data.samples import samples
    from vitdash.load.sources import load

    ckpt = load(shared_dir / "checkpoints" / "dinov2-small-hf")
    result = explain_images(ckpt, [samples()[0].load()], img_size=224)[0]
    assert result.token_norms.shape == (4, 16, 16) and (result.token_norms > 0).all()
    found = result.artifacts()
    assert found.hot  # the shared DINOv2's rollout: a few patches soak up the class token's attention
    assert "their token norms are ordinary" in found.describe()  # ViT-S: no high-norm tokens (Darcet et al.)
    plain, _ = result.picture(artifacts="show")
    picture, again = result.picture(caption=["dinov2-small-hf: china", "rollout, mean heads"])
    assert again == found and picture.width > plain.width - 1 and picture.height > plain.height  # caption rows
    assert [tuple(p) for p in result.to_dict()["artifacts"]["hot"]] == found.hot
    assert isinstance(picture, Image.Image)


def test_overlay_picture_has_a_colour_bar_marks_and_a_caption():
    from PIL import Image

    from vitdash.attention import overlay as O

    image = Image.new("RGB", (80, 80), (0, 0, 0))
    values = np.arange(16, dtype=float).reshape(4, 4)
    bare = O.blend(image, values, "Greys", 1.0)
    pic = O.overlay_picture(image, values, colormap="Greys", opacity=1.0, marked=[(0, 0)], caption=["a.png", "x"])
    assert pic.width > 80 + 14 and pic.height >= 80 + 2 * 16  # bar and labels on the right, two caption lines
    px = np.asarray(pic)
    assert tuple(px[1, 1]) != tuple(np.asarray(bare)[1, 1])  # patch (0, 0) outlined
    assert tuple(px[2, 80 + 8 + 3]) != tuple(px[78, 80 + 8 + 3])  # the bar runs from high (top) to low


# ----------------------------------------------------------------------------- every timm ViT class

# Eva with RoPE (DINOv3: class token + 4 registers, rotate-half RoPE; EVA-02: unfused q/k/v, q/v biases, EVA RoPE
# with a position table; RoPE-Mixed: learned frequencies per block; Perception Encoder: attention pool), Beit
# (relative position bias), NaFlexVit (SigLIP 2) and an AIMv2-style VisionTransformer (RMSNorm, SwiGLU, no class
# token). RoPE and relative biases act inside the attention module, so only the module's own probabilities say
# where the model looks.
CLASSES = {
    "dinov3": ("vit_small_patch16_dinov3", dict(img_size=64, depth=2, embed_dim=48, num_heads=3)),
    "eva02": ("eva02_tiny_patch14_224", dict(img_size=56, depth=2)),
    "rope-mixed": ("vit_small_patch16_rope_mixed_224", dict(img_size=64, depth=2, embed_dim=48, num_heads=3)),
    "pe": ("vit_pe_core_tiny_patch16_384", dict(img_size=64, depth=2)),
    "beit": ("beit_base_patch16_224", dict(img_size=64, depth=2, embed_dim=48, num_heads=3)),
    "naflexvit": ("naflexvit_base_patch16_siglip", dict(depth=2, embed_dim=48, num_heads=3)),
    "aimv2": ("aimv2_large_patch14_224", dict(img_size=56, depth=2, embed_dim=64, num_heads=4)),
    "rope-reg-gap": ("vit_medium_patch16_rope_reg1_gap_256", dict(img_size=64, depth=2, embed_dim=48, num_heads=3)),
}


def make_class(kind: str, seed: int = 0) -> torch.nn.Module:
    name, kwargs = CLASSES[kind]
    torch.manual_seed(seed)
    model = timm.create_model(name, pretrained=False, **kwargs).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model


@pytest.mark.parametrize("kind", list(CLASSES))
def test_every_timm_class_maps_equal_timm_attention_extract(kind):
    model = make_class(kind)
    x = torch.randn(2, 3, 64, 64) if kind == "naflexvit" else torch.randn(2, 3, *model.patch_embed.img_size)
    got = attention_maps(model, x)
    # timm's AttentionExtract traces the softmax node of a separate unfused instance: RoPE and biases applied
    other = make_class(kind)
    for blk in other.blocks:
        blk.attn.fused_attn = False
    extracted = list(AttentionExtract(other, method="fx")(x).values())
    assert len(extracted) == len(got.attentions) == len(model.blocks)
    for g, e in zip(got.attentions, extracted):
        torch.testing.assert_close(g, e, atol=1e-5, rtol=1e-4)
    with torch.no_grad():
        torch.testing.assert_close(got.output, model(x), atol=1e-5, rtol=1e-4)
    # rollout and the per-head views cover the patch grid only: registers are prefix tokens, not map cells
    res = explain(model, x[:1])[0]
    layout = got.layout
    assert res.map.shape == layout.grid and res.source_attention.shape == (2, model.blocks[0].attn.num_heads,
                                                                          *layout.grid)
    assert abs(res.map.sum() + res.prefix_share - 1) < 1e-4
    embed = getattr(model, "patch_embed", None) or model.embeds
    reg = getattr(model, "reg_token", getattr(embed, "reg_token", None))
    assert layout.grid == (x.shape[2] // embed.patch_size[0], x.shape[3] // embed.patch_size[1])
    assert len(layout.reg_indices) == (0 if reg is None else reg.shape[1])
    assert layout.num_tokens == model.num_prefix_tokens + layout.grid[0] * layout.grid[1]
    if kind == "dinov3":
        assert layout.reg_indices == (1, 2, 3, 4) and layout.num_tokens == 5 + 16 and res.prefix_share > 0


def test_relative_position_bias_pins_beit_to_its_grid():
    with pytest.raises(VitdashError, match="relative position tables"):
        explain(make_class("beit"), torch.randn(1, 3, 80, 64))
