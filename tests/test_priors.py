"""Every prior against the library it describes: instantiate the modules at init and check the analytic
prior explains their values (KS below its bound, std within its standard error), so a library change
cannot silently make a prior wrong. Also: wrong priors must be rejected."""
from __future__ import annotations

import math

import pytest
import torch

from vitdash.trained import priors as P
from vitdash.trained.moments import moments_many
from vitdash.trained.roles import assign_roles, weight_of

torch.manual_seed(0)


def _check_scheme(sd: dict[str, torch.Tensor], scheme: str, canonical: bool, **kw) -> list[str]:
    """Names whose values the scheme's prior does not explain (empty = the prior is right)."""
    sd = {k: v.detach().float() for k, v in sd.items() if v.is_floating_point()}
    roles = assign_roles(list(sd), lambda n: tuple(sd[n].shape), canonical, lambda n: (lambda: sd[n]))
    bad = []
    for name, t in sd.items():
        r = roles[name]
        w = weight_of(name, roles)
        if r.role == "layerscale":
            if not bool((t == t.reshape(-1)[0]).all()):
                bad.append(f"{name}: LayerScale not constant")
            continue
        if r.role == "rope":  # mixed RoPE's frequencies: fixed magnitudes at random angles, no i.i.d. prior
            continue
        prior = P.scheme_prior(scheme, r.role, r.param, tuple(t.shape),
                               weight_shape=tuple(sd[w].shape) if w else None, block=r.block, **kw)
        if prior is None:
            bad.append(f"{name}: no {scheme} prior for role {r.role}/{r.param}")
            continue
        flat = t.reshape(-1).double()
        std, mean = float(flat.std(unbiased=False)), float(flat.mean())
        f = P.fit(prior, P.sample_sorted(flat), numel=flat.numel(), mean=mean, std=std,
                  constant=float(flat.min()) == float(flat.max()))
        if not f.matches:  # KS above its 0.1% bound, or std/mean off by > 4 standard errors
            bad.append(f"{name}: {prior.label} ks={f.ks:.3f} std_ratio={f.std_ratio:.3f} mean={mean:.3g}")
    return bad


def _timm_vit(weight_init: str = "", **kw):
    from timm.models.vision_transformer import VisionTransformer

    args = dict(img_size=32, patch_size=8, embed_dim=96, depth=2, num_heads=3, num_classes=100,
                weight_init=weight_init)
    args.update(kw)
    # A fixed draw, whatever ran before: torch's trunc_normal_ puts about one entry in 2**24 on its absolute
    # bound (erfinv(-1), clamped), 100 std out, which a std check on the whole tensor rightly rejects.
    torch.manual_seed(0)
    return VisionTransformer(**args)


@pytest.mark.parametrize("kw", [{}, {"reg_tokens": 2, "init_values": 1e-5}, {"embed_dim": 192, "num_heads": 3}])
def test_timm_default_init(kw):
    assert _check_scheme(_timm_vit("", **kw).state_dict(), "timm", canonical=True) == []


@pytest.mark.parametrize("kw", [{}, {"embed_dim": 192, "num_heads": 3}])
def test_timm_jax_init(kw):
    assert _check_scheme(_timm_vit("jax", **kw).state_dict(), "timm_jax", canonical=True) == []


def test_timm_distilled_dist_token():
    from timm.models.deit import VisionTransformerDistilled

    m = VisionTransformerDistilled(img_size=32, patch_size=8, embed_dim=96, depth=1, num_heads=3, num_classes=10)
    assert _check_scheme(m.state_dict(), "timm", canonical=True) == []


def test_torchvision_init():
    import torchvision

    from vitdash.load.sources import checkpoint_from_state_dict

    tv = torchvision.models.VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=64,
                                              mlp_dim=128, num_classes=10, representation_size=32)
    ckpt = checkpoint_from_state_dict(tv.state_dict())
    assert ckpt.canonical and "pre_logits.fc.weight" in ckpt.tensors
    assert _check_scheme(ckpt.tensors.materialize(), "torchvision", canonical=True) == []


@pytest.mark.parametrize("model", ["vit", "deit", "dinov2"])
def test_hugging_face_init(model):
    transformers = pytest.importorskip("transformers")
    common = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=32, patch_size=8,
                  initializer_range=0.03)
    if model == "vit":
        m = transformers.ViTModel(transformers.ViTConfig(intermediate_size=128, **common))
    elif model == "deit":
        m = transformers.DeiTModel(transformers.DeiTConfig(intermediate_size=128, **common))
    else:
        m = transformers.Dinov2Model(transformers.Dinov2Config(mlp_ratio=2, **common))
    # In its own names: exercises the generic role guesses as well as the prior.
    scheme = "hf_deit" if model == "deit" else "hf"
    assert _check_scheme(m.state_dict(), scheme, canonical=False, initializer_range=0.03) == []


# timm's Eva in the layouts of EVA-02 (unfused q/k/v, SwiGLU with its norm, position table and RoPE), DINOv3 /
# Perception Encoder (RoPE attention with a full q/k/v bias, packed SwiGLU, LayerScale, registers, pre-norm,
# attention pool) and RoPE-Mixed (q/v biases, GELU MLP, learned RoPE frequencies), and Beit (per-block relative
# bias with LayerScale; shared relative bias with SwiGLU and its norm).
EVA = [dict(qkv_fused=False, swiglu_mlp=True, scale_mlp=True, mlp_ratio=8 / 3, use_rot_pos_emb=True),
       dict(attn_type="rope", swiglu_mlp=True, init_values=1e-5, num_reg_tokens=4, use_pre_transformer_norm=True,
            global_pool="map", use_rot_pos_emb=True),
       dict(init_values=0.1, use_rot_pos_emb=True, rope_type="mixed", use_abs_pos_emb=False)]
BEIT = [dict(use_rel_pos_bias=True, init_values=0.1), dict(use_shared_rel_pos_bias=True, use_abs_pos_emb=False,
                                                           swiglu_mlp=True, scale_mlp=True, init_values=1e-5)]


@pytest.mark.parametrize("kw", EVA, ids=["eva02", "dinov3-pe", "rope-mixed"])
def test_timm_eva_init(kw):
    """Every Linear trunc_normal(.02) and the output projections of block i divided by sqrt(2 (i + 1))."""
    from timm.models.eva import Eva

    torch.manual_seed(0)
    m = Eva(img_size=32, patch_size=8, embed_dim=96, depth=4, num_heads=3, num_classes=100, **kw)
    assert _check_scheme(m.state_dict(), "timm_eva", canonical=True) == []
    assert _check_scheme(m.state_dict(), "timm", canonical=True) != []  # the depth scaling is what tells them


@pytest.mark.parametrize("kw", BEIT, ids=["beit", "beit-shared-swiglu"])
def test_timm_beit_init(kw):
    from timm.models.beit import Beit

    torch.manual_seed(0)
    m = Beit(img_size=32, patch_size=8, embed_dim=96, depth=4, num_heads=3, num_classes=100, **kw)
    assert _check_scheme(m.state_dict(), "timm_eva", canonical=True) == []


def test_timm_naflexvit_init_scales_output_projections_by_depth():
    from timm.models.naflexvit import NaFlexVit, NaFlexVitCfg

    torch.manual_seed(0)
    m = NaFlexVit(NaFlexVitCfg(patch_size=8, embed_dim=96, depth=4, num_heads=3, reg_tokens=2, init_values=1e-5,
                               global_pool="avg"), num_classes=10)
    assert _check_scheme(m.state_dict(), "timm_fix_init", canonical=True) == []
    assert _check_scheme(m.state_dict(), "timm", canonical=True) != []
    assert _check_scheme(_timm_vit("", fix_init=True).state_dict(), "timm_fix_init", canonical=True) == []


def _hf_canonical(model, config) -> dict[str, torch.Tensor]:
    """A transformers model at init through vitdash's layout for it: the canonical tensors are what get audited."""
    from vitdash.load.sources import checkpoint_from_state_dict

    ckpt = checkpoint_from_state_dict({k: v.detach() for k, v in model.state_dict().items()},
                                      metadata={"config": config.to_dict()})
    assert ckpt.canonical, ckpt.load_warnings
    return ckpt.tensors.materialize()


def test_hugging_face_dinov3_init():
    from transformers import DINOv3ViTConfig, DINOv3ViTModel

    for extra in ({}, {"use_gated_mlp": True, "hidden_act": "silu"}):
        config = DINOv3ViTConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                                 image_size=32, patch_size=8, num_register_tokens=4, initializer_range=0.03, **extra)
        torch.manual_seed(0)
        sd = _hf_canonical(DINOv3ViTModel(config), config)
        assert "blocks.0.gamma_1" in sd and ("blocks.0.mlp.fc1_g.weight" in sd) == bool(extra)
        assert _check_scheme(sd, "hf", canonical=True, initializer_range=0.03) == []


def test_hugging_face_aimv2_init():
    from transformers import Aimv2VisionConfig, Aimv2VisionModel

    config = Aimv2VisionConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=176,
                               image_size=32, patch_size=8, initializer_range=0.03)
    torch.manual_seed(0)
    sd = _hf_canonical(Aimv2VisionModel(config), config)
    assert "blocks.0.mlp.fc1_x.weight" in sd and "patch_embed.norm.weight" in sd
    assert _check_scheme(sd, "hf", canonical=True, initializer_range=0.03) == []


def test_hugging_face_siglip2_init():
    """SigLIP's own init (xavier q/k/v/out and MLP, lecun patch embedding, N(0, 1/width) positions, a pooling head
    whose probe and packed in_proj are xavier), read on the canonical tensors vitdash maps the tower to."""
    from transformers import Siglip2VisionConfig, Siglip2VisionModel

    config = Siglip2VisionConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                                 patch_size=8, num_patches=16)
    torch.manual_seed(0)
    sd = _hf_canonical(Siglip2VisionModel(config), config)
    assert "attn_pool.kv.weight" in sd
    assert _check_scheme(sd, "hf_siglip", canonical=True) == []
    assert _check_scheme(sd, "timm_jax", canonical=True) != []  # xavier too, but not its positions or patches


def test_pytorch_default_linear_and_conv():
    lin, conv = torch.nn.Linear(300, 200), torch.nn.Conv2d(3, 128, 8, stride=8)
    sd = {"fc.weight": lin.weight, "fc.bias": lin.bias, "patch_embed.proj.weight": conv.weight,
          "patch_embed.proj.bias": conv.bias, "pos_embedding": torch.randn(1, 17, 128)}
    assert _check_scheme(sd, "pytorch", canonical=False) == []


@pytest.mark.parametrize("kind", ["kaiming_uniform", "kaiming_normal", "xavier_uniform", "xavier_normal"])
def test_vit_model_zoo_init(kind):
    """The Model Zoo's `init_single`: every Linear/Conv2d re-drawn with torch.nn.init, biases 0.01."""
    m = _timm_vit("")
    for mod in m.modules():
        if type(mod) in (torch.nn.Linear, torch.nn.Conv2d):
            getattr(torch.nn.init, f"{kind}_")(mod.weight)
            if mod.bias is not None:
                mod.bias.data.fill_(0.01)
    assert _check_scheme(m.state_dict(), f"model_zoo_{kind}", canonical=True) == []


def test_wrong_priors_are_rejected():
    sd = _timm_vit("").state_dict()
    bad = _check_scheme(sd, "timm_jax", canonical=True)  # xavier/lecun/zero-head priors on timm's init
    assert any("blocks.0.mlp.fc1.weight" in b for b in bad) and any("head.weight" in b for b in bad)
    scaled = {k: v * 1.05 if v.ndim == 2 else v for k, v in sd.items()}  # 5% off in scale only
    assert any("attn.qkv.weight" in b for b in _check_scheme(scaled, "timm", canonical=True))


def test_prior_moments_and_quantiles():
    tn = P._lecun(100)
    assert math.isclose(tn.std, 0.1, rel_tol=1e-6)  # lecun_normal's correction makes std exactly 1/sqrt(fan_in)
    x = tn.ppf(torch.tensor([0.0, 0.5, 1.0]))
    assert float(x[1]) == pytest.approx(0.0, abs=1e-9) and float(x[2]) <= tn.hi + 1e-9
    u = P._uniform(0.5)
    assert u.cdf(torch.tensor([-1.0, 0.0, 1.0])).tolist() == [0.0, 0.5, 1.0]
    assert u.std == pytest.approx(0.5 / math.sqrt(3))
    labels = {p.label for p in P.priors_for("qkv", "weight", (192, 64))}
    assert "trunc_normal(std=0.02, [-2, 2])" in labels and len(labels) >= 5


def test_entries_the_init_clamped_onto_a_far_bound_are_left_out():
    """torch's trunc_normal_ clamps erfinv(-1) = -inf onto its bound (about one entry in 2**24): at timm's
    absolute -2 for std 0.02 that entry is 100 std out, and must not make timm's own init miss its prior."""

    x = torch.randn(2, 32768, generator=torch.Generator().manual_seed(0)) * 0.02
    x[0, 123] = -2.0  # trunc_normal_(std=.02) when its uniform draw is exactly -1
    prior = P.Prior("truncnormal", 0.02, -2.0, 2.0)
    moms = moments_many(list(x), x)
    kw = dict(numel=[m.sampled for m in moms], mean=[m.mean for m in moms], std=[m.std for m in moms],
              constant=[m.constant for m in moms])
    samples = P.sample_sorted(x)
    assert [f.matches for f in P.fit_many(prior, samples, **kw)] == [False, True]  # the std is 15% off
    assert [f.matches for f in P.fit_many(prior, samples, **kw, entries=x)] == [True, True]
    wide = P.Prior("normal", 0.02)  # not truncated: nothing is left out
    assert [f.matches for f in P.fit_many(wide, samples, **kw, entries=x)] == [False, True]
    # Each row's (min, max), as the audit passes them, only spare the pass over the entries where no row reaches
    # a bound: the row on it is still left out.
    bounds = [(m.min, m.max) for m in moms]
    assert [f.matches for f in P.fit_many(prior, samples, **kw, entries=x, bounds=bounds)] == [True, True]


def test_a_bfloat16_entry_on_a_bound_is_found_from_the_rounded_bound():
    """A bfloat16 checkpoint stores a truncation bound rounded (timm's Eva head cut at +-2e-3 reads -0.0020008...):
    the moments' min equals that rounding, not the bound, and the entry on it must still be left out."""
    prior = P.Prior("truncnormal", 2e-5, -2e-3, 2e-3)
    x = (torch.randn(1, 32768, generator=torch.Generator().manual_seed(1)) * 2e-5).bfloat16()
    x[0, 7] = -2e-3
    assert float(x[0, 7]) != -2e-3  # (rounded)
    moms = moments_many(list(x), x)
    kw = dict(numel=[m.sampled for m in moms], mean=[m.mean for m in moms], std=[m.std for m in moms],
              constant=[m.constant for m in moms])
    samples = P.sample_sorted(x)
    kept = P.fit_many(prior, samples, **kw, entries=x)[0]
    checked = P.fit_many(prior, samples, **kw, entries=x, bounds=[(moms[0].min, moms[0].max)])[0]
    assert kept.std_ratio == checked.std_ratio != P.fit_many(prior, samples, **kw)[0].std_ratio


def test_fitting_many_priors_at_once_equals_fitting_each_alone():
    """`fit_each` reads every prior of a group in one evaluation, each on its own rows (timm's Eva scales each
    block's output projection by its depth): every fit equals the prior fitted alone to those rows."""
    g = torch.Generator().manual_seed(2)
    x = torch.cat([torch.randn(3, 32768, generator=g) * 0.02, torch.rand(2, 32768, generator=g) * 0.2 - 0.1])
    x[4] = 0.01  # a constant row
    moms = moments_many(list(x), x)
    per_row = dict(numel=[m.sampled for m in moms], mean=[m.mean for m in moms], std=[m.std for m in moms],
                   constant=[m.constant for m in moms])
    bounds = [(m.min, m.max) for m in moms]
    samples = P.sample_sorted(x)
    assignments = [(P.Prior("truncnormal", 0.02, -2.0, 2.0), [0, 1, 2, 3, 4]), (P.Prior("normal", 0.01), [1]),
                   (P.Prior("uniform", 0.1), [3, 0]), (P.Prior("constant", 0.01), [4, 2]),
                   (P.Prior("truncnormal", 0.02 / math.sqrt(6), -2.0, 2.0), [2])]
    together = P.fit_each(assignments, samples, **per_row, entries=x, bounds=bounds)
    for (prior, rows), fits in zip(assignments, together):
        alone = P.fit_many(prior, samples[rows], **{k: [v[j] for j in rows] for k, v in per_row.items()},
                           entries=x[rows], bounds=[bounds[j] for j in rows])
        assert fits == alone
    # (row 3 is uniform, row 0 a normal; row 4 the constant, which no distribution matches)
    assert together[0][0].matches and together[2][0].matches and together[3][0].matches
    assert not together[2][1].matches and not together[0][4].matches and not together[3][1].matches


def test_a_value_outside_a_uniform_bound_rules_the_prior_out():
    """A trained 10-class head that kept its U(+-1/sqrt(fan_in)) histogram but reached past the bound is not at
    init: no draw from that prior lies outside it."""
    torch.manual_seed(0)
    x = torch.nn.Linear(64, 10).weight.detach().reshape(-1).double()
    prior = P.scheme_prior("pytorch", "head", "weight", (10, 64))

    def fit(v):
        return P.fit_many(prior, P.sample_sorted(v[None]), numel=[v.numel()], mean=[float(v.mean())],
                          std=[float(v.std(unbiased=False))], constant=[False],
                          bounds=[(float(v.min()), float(v.max()))])[0]

    assert fit(x).matches and fit(x).in_support
    x[0] = 2.5 * prior.scale
    moved = fit(x)
    assert not moved.in_support and not moved.matches and moved.to_dict()["in_support"] is False
