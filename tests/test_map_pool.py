"""SigLIP-style 'map' pooling (timm's AttentionPoolLatent, `attn_pool.*`) as a first-class part of the model:
canonical names, architecture, an exact rebuild, complexity, init priors and the audit's groups."""
from __future__ import annotations

import math
from functools import partial

import pytest
import torch
from torch import nn

from tests.test_priors import _check_scheme
from tests.test_signals import _planted
from vitdash.identity.architecture import infer_architecture
from vitdash.identity.complexity import complexity, macs_by_component, params_by_component, spec_params
from vitdash.identity.model import build_model, build_random_twin, timm_kwargs
from vitdash.load.checkpoint import Checkpoint, TensorStore
from vitdash.load.layouts import detect
from vitdash.load.sources import checkpoint_from_state_dict
from vitdash.trained.roles import assign_roles
from vitdash.trained.verdict import audit

POOL_KEYS = sorted(["attn_pool.latent", *(f"attn_pool.{m}.{p}" for m in ("q", "kv", "proj", "norm", "mlp.fc1",
                                                                          "mlp.fc2") for p in ("weight", "bias"))])


def _siglip(num_classes: int = 0, seed: int = 0, **kw) -> nn.Module:
    """vit_base_patch16_siglip_224's structure (no class token, 'map' pooling), tiny."""
    import timm

    torch.manual_seed(seed)
    args = dict(img_size=32, patch_size=8, depth=2, embed_dim=64, num_heads=4, num_classes=num_classes)
    args.update(kw)
    return timm.create_model("vit_base_patch16_siglip_224", **args).eval()


def _ckpt(sd: dict[str, torch.Tensor], heads: int | None = 4) -> Checkpoint:
    """Through the real layout mapping; the head count recorded the way load_timm records it (an init has no
    head structure for the weights to show), and nothing else."""
    return checkpoint_from_state_dict(sd, metadata={"num_heads": heads} if heads else None)


def _params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ---- canonical names and architecture ----------------------------------------------------------------------

def test_attn_pool_tensors_are_canonical():
    model = _siglip(num_classes=10)
    ckpt = _ckpt(model.state_dict())
    assert ckpt.canonical and ckpt.layout == "timm"
    assert ckpt.unmapped_keys == [] and not any("canonical" in w for w in ckpt.load_warnings)
    assert sorted(k for k in ckpt.tensors if k.startswith("attn_pool.")) == POOL_KEYS
    assert set(ckpt.tensors) == set(model.state_dict())


def test_architecture_reads_the_pool():
    arch = infer_architecture(_ckpt(_siglip().state_dict()))
    assert arch.global_pool == "map" and arch.pool_latent_len == 1 and arch.pool_mlp_hidden == 256
    assert (arch.num_heads, arch.has_class_token, arch.fc_norm, arch.final_norm, arch.num_classes) == (
        4, False, False, True, 0)
    assert arch.pooling.startswith("attention pooling (MAP)")
    assert not any("attn_pool" in n or "canonical" in n for n in arch.notes)
    # Without any metadata the heads are a marked inference; the pool is read all the same.
    bare = infer_architecture(_ckpt(_siglip().state_dict(), heads=None))
    assert bare.heads_inferred and 4 in bare.head_candidates and bare.global_pool == "map"


@pytest.mark.parametrize("name", ["vit_base_patch16_siglip_224", "vit_so400m_patch14_siglip_224",
                                  "vit_base_patch16_siglip_gap_224"])
def test_full_size_siglip_models_match_timm(name):
    """Real sizes on the meta device (shapes only): SO400M's MLP of 4304 = 1152 x 3.7362 included; the
    `gap` variant has no pool and must stay 'avg'."""
    import timm
    from timm.models.vision_transformer import VisionTransformer

    with torch.device("meta"):
        model = timm.create_model(name, weight_init="skip")
    sd = model.state_dict()
    found = detect(TensorStore.from_tensors(sd), {})
    ckpt = Checkpoint(tensors=found.tensors, source=name, format="memory", layout=found.layout, canonical=True,
                      metadata={"timm_model": name}, unmapped_keys=found.unmapped, is_vit=True)
    arch = infer_architecture(ckpt)
    assert found.unmapped == [] and arch.global_pool == model.global_pool
    if model.attn_pool is not None:
        assert arch.pool_latent_len == model.attn_pool.latent_len
        assert arch.pool_mlp_hidden == model.attn_pool.mlp.fc1.out_features
    assert sum(spec_params(arch).values()) == _params(model) == arch.num_params
    with torch.device("meta"):
        rebuilt = VisionTransformer(weight_init="skip", **timm_kwargs(arch)).state_dict()
    assert {k: v.shape for k, v in rebuilt.items()} == {k: v.shape for k, v in sd.items()}


# ---- the rebuilt model ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("kw", [{}, {"num_classes": 10}, {"num_classes": 10, "class_token": True}],
                         ids=["features", "classes", "class-token"])
def test_rebuilt_model_equals_timm(kw):
    model = _siglip(**kw)
    rebuilt = build_model(_ckpt(model.state_dict()))
    assert isinstance(rebuilt.attn_pool, type(model.attn_pool))
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.allclose(rebuilt(x), model(x), atol=1e-5)
        pooled = rebuilt.forward_head(rebuilt.forward_features(x), pre_logits=True)
        assert torch.allclose(pooled, model.forward_head(model.forward_features(x), pre_logits=True), atol=1e-5)


def test_pool_with_its_own_sizes_is_rebuilt():
    """Two latent queries and a narrower pool MLP than the blocks': sizes timm's VisionTransformer does not make
    by itself, rebuilt with timm's own module, and its random twin initialized as timm initializes one."""
    from timm.layers import AttentionPoolLatent

    model = _siglip(num_classes=10)
    norm = partial(nn.LayerNorm, eps=1e-6)  # the model's own norm, as VisionTransformer passes it
    model.attn_pool = AttentionPoolLatent(64, num_heads=4, mlp_ratio=2.0, latent_len=2, norm_layer=norm)
    model.eval()
    ckpt = _ckpt(model.state_dict())
    arch = infer_architecture(ckpt)
    assert (arch.pool_latent_len, arch.pool_mlp_hidden, arch.mlp_hidden) == (2, 128, 256)
    assert sum(spec_params(arch).values()) == _params(model)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.allclose(build_model(ckpt, arch)(x), model(x), atol=1e-5)
    twin = build_random_twin(ckpt, arch).state_dict()
    assert {k: v.shape for k, v in twin.items()} == {k: v.shape for k, v in model.state_dict().items()}
    assert _check_scheme({k: v for k, v in twin.items() if k.startswith("attn_pool.")}, "timm", canonical=True) == []


def test_mlp_widths_that_float_ratios_round_down_are_rebuilt():
    """98 / 44 * 44 = 97.99999...: timm, which builds int(width * ratio) units, would make 97 of the 98 that the
    blocks' and the pool's MLPs hold, unless the ratio is chosen to come back exactly."""
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    model = VisionTransformer(img_size=32, patch_size=8, embed_dim=44, depth=1, num_heads=2, mlp_ratio=98.5 / 44,
                              class_token=False, global_pool="map", num_classes=3).eval()
    assert model.blocks[0].mlp.fc1.out_features == model.attn_pool.mlp.fc1.out_features == 98
    ckpt = _ckpt(model.state_dict(), heads=2)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(build_model(ckpt)(x), model(x), atol=1e-5)


# ---- complexity ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kw", [{"num_classes": 10}, {"num_classes": 0, "class_token": True}],
                         ids=["classes", "class-token"])
def test_complexity_counts_the_pool(kw):
    """Parameters: the model's own count, the pool as its own component. MACs: torch's FLOP counter (unfused
    attention, so that the score and mixing products are counted; 2 FLOPs per MAC) on the whole model and on the
    pool alone, which sees the patch tokens only."""
    from torch.utils.flop_counter import FlopCounterMode

    model = _siglip(**kw)
    ckpt = _ckpt(model.state_dict())
    arch = infer_architecture(ckpt)
    cx = complexity(ckpt, arch)
    assert cx.num_params == _params(model) and params_by_component(ckpt) == spec_params(arch)
    assert cx.params["attn_pool"] == _params(model.attn_pool)
    for module in model.modules():
        if hasattr(module, "fused_attn"):
            module.fused_attn = False
    x = torch.randn(1, 3, 32, 32)
    tokens = model.forward_features(x)[:, model.num_prefix_tokens:]
    with FlopCounterMode(display=False) as whole:  # (its module hooks need autograd on)
        model(x)
    with FlopCounterMode(display=False) as pool:
        model.attn_pool(tokens)
    macs = macs_by_component(arch)
    assert macs["attn_pool"] == pool.get_total_flops() // 2 > 0
    assert sum(macs.values()) == whole.get_total_flops() // 2


# ---- roles and priors ----------------------------------------------------------------------------------------

def test_pool_roles_form_one_group_that_matters():
    sd = _siglip().state_dict()
    roles = assign_roles(list(sd), lambda n: tuple(sd[n].shape), canonical=True)
    pool = {n: r for n, r in roles.items() if n.startswith("attn_pool.")}
    assert {r.group for r in pool.values()} == {"attn_pool"} and all(r.matters for r in pool.values())
    assert {n: r.role for n, r in pool.items() if n.endswith("weight") or n.endswith("latent")} == {
        "attn_pool.latent": "latent", "attn_pool.q.weight": "q", "attn_pool.kv.weight": "kv",
        "attn_pool.proj.weight": "attn_proj", "attn_pool.norm.weight": "norm",
        "attn_pool.mlp.fc1.weight": "fc1", "attn_pool.mlp.fc2.weight": "fc2"}


@pytest.mark.parametrize("embed_dim,heads", [(96, 3), (192, 3)])
@pytest.mark.parametrize("weight_init,scheme", [("", "timm"), ("jax", "timm_jax")])
def test_pool_priors_match_timm_init(embed_dim, heads, weight_init, scheme):
    """As tests/test_priors.py checks every role: the pool's latent (trunc_normal_tf_, std width^-1/2) and
    its Linears (the model's init) against the analytic priors, KS within its bound."""
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    model = VisionTransformer(img_size=32, patch_size=8, embed_dim=embed_dim, depth=1, num_heads=heads,
                              num_classes=10, class_token=False, global_pool="map", weight_init=weight_init)
    sd = model.state_dict()
    assert sorted(k for k in sd if k.startswith("attn_pool.")) == POOL_KEYS
    assert _check_scheme(sd, scheme, canonical=True) == []


def test_wrong_latent_scale_is_rejected():
    sd = {k: v for k, v in _siglip(embed_dim=192, num_heads=3).state_dict().items() if k.startswith("attn_pool.")}
    assert _check_scheme(sd, "timm", canonical=True) == []
    sd["attn_pool.latent"] = sd["attn_pool.latent"] * 1.5
    assert [b.split(":")[0] for b in _check_scheme(sd, "timm", canonical=True)] == ["attn_pool.latent"]


# ---- the audit -----------------------------------------------------------------------------------------------

def test_siglip_at_init_is_random():
    sd = _siglip(img_size=64).state_dict()
    result = audit(_ckpt(sd))
    assert result.verdict == "init", result.summary
    assert set(result.at_init) == set(sd) and all(t.verdict == "init" for t in result.tensors)
    assert result.tensor("attn_pool.latent").role == "latent"


def _smooth(shape: tuple[int, ...], g: torch.Generator) -> torch.Tensor:
    """Fields that vary slowly over the last two dims: what training leaves in position embeddings and
    patch filters (random 3x3 fields, interpolated)."""
    coarse = torch.randn(math.prod(shape[:-2]), 1, 3, 3, generator=g)
    return nn.functional.interpolate(coarse, size=shape[-2:], mode="bilinear", align_corners=True).reshape(shape)


def _structured(sd: dict[str, torch.Tensor], keep: tuple[str, ...], seed: int = 1) -> dict[str, torch.Tensor]:
    """Every tensor not under `keep` replaced by what training leaves: low-rank-plus-noise matrices at timm's
    scale, a position embedding and patch filters smooth on the grid, norms and biases off their constants."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for i, (k, v) in enumerate(sd.items()):
        noise = torch.randn(v.shape, generator=g)
        if k.startswith(keep):
            out[k] = v
        elif k == "pos_embed":
            d, side = v.shape[-1], math.isqrt(v.shape[1])
            out[k] = 0.02 * _smooth((d, side, side), g).reshape(d, -1).T[None] + 0.002 * noise
        elif k == "patch_embed.proj.weight":
            out[k] = 0.02 * _smooth(tuple(v.shape), g) + 0.002 * noise
        elif v.ndim == 2:
            out[k] = 0.02 * _planted(*v.shape, strength=3.0, seed=seed + i)
        else:
            out[k] = v + 0.05 * noise
    return out


def test_fresh_pool_on_structured_blocks_is_partial_with_exactly_the_pool():
    """A tiny model whose every other part shows training (planted low-rank structure, smooth position
    embedding and filters, moved norms) and whose pool is timm's init: the pool is what is at init."""
    sd = _structured(_siglip(img_size=64).state_dict(), keep=("attn_pool.",))
    result = audit(_ckpt(sd))
    assert result.verdict == "partial", result.summary
    assert result.at_init_groups == ["attn_pool"] and sorted(result.at_init) == POOL_KEYS


def test_structured_pool_is_not_at_init():
    sd = _structured(_siglip(img_size=64).state_dict(), keep=())
    result = audit(_ckpt(sd))
    assert result.verdict == "trained", (result.summary, result.at_init)
    assert all(result.tensor(k).verdict != "init" for k in POOL_KEYS)


def test_fresh_pool_on_dinov2_is_partial(shared_dir):
    """Real trained blocks (the shared DINOv2-S) with a freshly attached MAP head, initialized as timm's
    VisionTransformer initializes its own: partial, with exactly the pool at init."""
    from timm.layers import AttentionPoolLatent
    from timm.models import named_apply
    from timm.models.vision_transformer import init_weights_vit_timm

    from vitdash.load.sources import load

    dino = load(shared_dir / "checkpoints" / "dinov2-small-hf").tensors.materialize()
    torch.manual_seed(0)
    pool = AttentionPoolLatent(384, num_heads=6, norm_layer=nn.LayerNorm)
    named_apply(init_weights_vit_timm, pool, include_root=True)
    sd = {**dino, **{f"attn_pool.{k}": v.detach() for k, v in pool.state_dict().items()}}
    result = audit(Checkpoint(tensors=TensorStore.from_tensors(sd), source="test", format="memory", layout="timm",
                              canonical=True, is_vit=True))
    assert result.verdict == "partial", result.summary
    assert result.at_init_groups == ["attn_pool"] and sorted(result.at_init) == POOL_KEYS
