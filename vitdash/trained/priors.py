"""What each common init scheme draws for each ViT parameter role, and how well a tensor fits it.

A prior is an exact distribution (normal, truncated normal, uniform or a constant) with the scale the
scheme computes from the tensor's fans. `tests/test_priors.py` instantiates every library at init
and checks its tensors against these priors, so a change in a library cannot silently make one wrong.

Schemes (the library code each one mirrors):
- `timm`: `init_weights_vit_timm`: Linear trunc_normal(std .02) with zero bias; the patch Conv2d keeps
  PyTorch's default; pos_embed trunc_normal(.02); cls/reg tokens normal(1e-6); dist token trunc_normal(.02);
  the 'map' pool's latent queries `AttentionPoolLatent.init_weights`: trunc_normal_tf_(std=width ** -0.5),
  cut at 2 std (its Linears are Linears: trunc_normal(.02) here, xavier in `timm_jax`).
- `timm_jax`: `init_weights_vit_jax`: Linear xavier_uniform (mlp biases normal(1e-6), others 0), head
  zeros, patch Conv2d lecun_normal (a normal truncated at 2 std).
- `torchvision`: `VisionTransformer.__init__`: conv_proj trunc_normal(sqrt(1/fan_in)), class token 0,
  pos normal(.02), in_proj xavier_uniform over (3D, D), out_proj PyTorch default weight with zero bias,
  MLP xavier_uniform with normal(1e-6) bias, pre_logits lecun trunc_normal, head zeros.
- `hf`: `ViTPreTrainedModel/Dinov2PreTrainedModel._init_weights`: every Linear/Conv2d and the
  cls/position/register embeddings trunc_normal(initializer_range), biases 0, LayerScale constant.
- `hf_deit`: `DeiTPreTrainedModel._init_weights`: as `hf`, but cls, distillation and position
  embeddings start at zero (transformers 5).
- `pytorch`: `nn.Linear`/`nn.Conv2d` defaults, kaiming_uniform(a=sqrt(5)) = U(+-1/sqrt(fan_in)) for
  weight and bias; tokens from `torch.randn` (the usual hand-written ViT).
- `model_zoo_*`: ViT Model Zoo (`models/vit_s.py`): every Linear/Conv2d re-drawn with kaiming or
  xavier (uniform or normal), biases filled with 0.01; timm's token and position init left in place.
- `timm_fix_init`: `timm` with `fix_init_weight` (NaFlexVit's default, VisionTransformer's `fix_init=True`):
  the attention and MLP output projections of block i divided by sqrt(2 (i + 1)); a Linear patch
  embedding (NaFlexVit) is a Linear like the others.
- `timm_eva`: `Eva` and `Beit` (`_init_weights` + `fix_init_weight`): Linear trunc_normal(.02) with zero bias,
  the output projections of block i divided by sqrt(2 (i + 1)), q/v biases and relative position tables
  zero, the patch Conv2d PyTorch's default, pos/cls/register tokens trunc_normal(.02), the head scaled by
  `head_init_scale` 0.001, the 'map' pool's latent as timm's.
- `hf_siglip`: `SiglipPreTrainedModel._init_weights` (SigLIP and SigLIP 2): q/k/v/out and MLP xavier_uniform
  (each of q, k, v over its own square matrix), MLP biases normal(1e-6), the patch embedding lecun_normal
  (transformers' cuts at +-2 absolute, so it is a plain normal of std sqrt(1/fan_in) / 0.8796), position
  embedding normal(width ** -0.5); the pooling head's probe and packed in_proj xavier_uniform (the in_proj over
  (3 width, width)), its out_proj lecun_normal.
(transformers' DINOv3ViTModel and Aimv2VisionModel initialize exactly as `hf`: every Linear/Conv2d weight and
token normal(initializer_range), biases 0; the tests check them against it.)
Norms start at weight 1 / bias 0 and LayerScale at one constant in every scheme.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Any

import numpy as np
import torch
from scipy import stats
from torch.special import ndtr, ndtri

SCHEMES = ("timm", "timm_jax", "timm_fix_init", "timm_eva", "torchvision", "hf", "hf_deit", "hf_siglip", "pytorch",
           "model_zoo_kaiming_uniform", "model_zoo_kaiming_normal",
           "model_zoo_xavier_uniform", "model_zoo_xavier_normal")

# Std of a standard normal truncated to (-2, 2): timm's lecun_normal divides by it.
_TRUNC2_STD = float(stats.truncnorm.std(-2.0, 2.0))
# KS sample: 0.045 resolution (the std test uses the moments' larger sample); cheap for ~150 tensors x ~5 priors.
KS_SAMPLE = 2048
KS_ALPHA = 0.001  # a KS distance above this level's critical value rejects the prior


@dataclass(frozen=True)
class Prior:
    """One init distribution. `scale` is the std (normal, truncnormal before truncation), the bound
    (uniform, U(-scale, scale)) or the value (constant); truncnormal cuts at absolute `lo`, `hi`."""

    family: str  # 'normal' | 'truncnormal' | 'uniform' | 'constant'
    scale: float
    lo: float = -math.inf
    hi: float = math.inf
    schemes: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        s = f"{self.scale:.3g}"
        if self.family == "constant":
            return f"constant {s}"
        if self.family == "uniform":
            return f"U(+-{s})"
        if self.family == "truncnormal":
            return f"trunc_normal(std={s}, [{self.lo:.3g}, {self.hi:.3g}])"
        return f"normal(std={s})"

    @cached_property
    def dist(self) -> Any:
        """The frozen scipy.stats distribution (None for a constant)."""
        if self.family == "constant":
            return None
        if self.family == "uniform":
            return stats.uniform(-self.scale, 2 * self.scale)
        if self.family == "normal":
            return stats.norm(scale=self.scale)
        return stats.truncnorm(self.lo / self.scale, self.hi / self.scale, scale=self.scale)

    @cached_property
    def std(self) -> float:
        """The std the prior's samples have (truncation included)."""
        return 0.0 if self.dist is None else float(self.dist.std())

    @cached_property
    def excess_kurtosis(self) -> float:
        """Kurtosis of the prior, which sets how precisely a sample's std can be compared with it."""
        return 0.0 if self.dist is None else float(self.dist.stats(moments="k"))

    @cached_property
    def _mass(self) -> tuple[float, float]:
        """Standard normal CDF at a truncated normal's two bounds."""
        return float(stats.norm.cdf(self.lo / self.scale)), float(stats.norm.cdf(self.hi / self.scale))

    def cdf(self, x: torch.Tensor) -> torch.Tensor:
        """cdf and ppf in torch, not scipy: the fits call them on every sampled entry of every tensor, where
        scipy's per-call checks cost more than the arithmetic."""
        x = x.double()
        if self.family == "constant":
            return (x >= self.scale).double()
        return _cdf(self.family, x, *self._cdf_args)

    @cached_property
    def _cdf_args(self) -> tuple[float, ...]:
        """`_cdf`'s parameters: (scale,) for a uniform; (scale, lo, hi, mass below lo, mass below hi) for a normal,
        truncated or not (a plain normal's bounds are infinite, its masses 0 and 1: the same arithmetic, exactly)."""
        if self.family == "uniform":
            return (self.scale,)
        return (self.scale, self.lo, self.hi, *(self._mass if self.family == "truncnormal" else (0.0, 1.0)))

    def ppf(self, p: torch.Tensor) -> torch.Tensor:
        p = p.double()
        if self.family == "constant":
            return torch.full_like(p, self.scale)
        if self.family == "uniform":
            return (2 * p - 1) * self.scale
        if self.family == "normal":
            return self.scale * ndtri(p)
        pa, pb = self._mass
        return self.scale * ndtri((pa + p * (pb - pa)).clamp(1e-15, 1 - 1e-15))

    def pdf(self, x: np.ndarray) -> np.ndarray:
        """Density for plotting (numpy in, numpy out); a constant has none (drawn as a line instead)."""
        x = np.asarray(x, dtype=float)
        return np.zeros_like(x) if self.dist is None else self.dist.pdf(x)


def _cdf(family: str, x: torch.Tensor, *args: Any) -> torch.Tensor:
    """The cdf of a uniform or (truncated) normal from `Prior._cdf_args`: floats, or (R, 1) columns that give each
    row of x its own prior (one evaluation for every prior of a group of tensors)."""
    if family == "uniform":
        (scale,) = args
        return ((x + scale) / (2 * scale)).clamp(0, 1)
    scale, lo, hi, pa, pb = args
    return ((ndtr(x.clamp(lo, hi) / scale) - pa) / (pb - pa)).clamp(0, 1)


# ---- the schemes -----------------------------------------------------------------------------------------------

def _normal(std: float) -> Prior:
    return Prior("normal", std)


def _trunc(std: float, lo: float = -2.0, hi: float = 2.0) -> Prior:
    """PyTorch/timm trunc_normal_ cuts at *absolute* bounds (default +-2), not at 2 std."""
    return Prior("truncnormal", std, lo, hi)


def _trunc_tf(std: float) -> Prior:
    """timm's trunc_normal_tf_ cuts a standard normal at +-2, then scales: bounds at 2 std."""
    return Prior("truncnormal", std, -2 * std, 2 * std)


def _lecun(fan_in: int) -> Prior:
    return _trunc_tf(math.sqrt(1.0 / fan_in) / _TRUNC2_STD)


def _uniform(bound: float) -> Prior:
    return Prior("uniform", bound)


def _const(v: float) -> Prior:
    return Prior("constant", v)


def _torch_default(fan_in: int) -> Prior:
    """kaiming_uniform_(a=sqrt(5)) for weights and U(+-1/sqrt(fan_in)) for biases: the same bound."""
    return _uniform(1.0 / math.sqrt(fan_in))


def _xavier_uniform(fan_in: int, fan_out: int) -> Prior:
    return _uniform(math.sqrt(6.0 / (fan_in + fan_out)))


_LINEARS = ("qkv", "q", "k", "v", "kv", "attn_proj", "fc1", "fc2", "pre_logits", "linear", "head", "patch_embed",
            "conv")
_TOKENS = ("cls_token", "reg_token", "dist_token")


def _timm(role: str, param: str, fan_in: int, fan_out: int, width: int = 1, ndim: int = 2, **_: Any) -> Prior | None:
    if role == "latent":
        return _trunc_tf(width ** -0.5)
    if role == "patch_embed" and ndim == 4:  # init_weights_vit_timm leaves the Conv2d as PyTorch made it
        return _torch_default(fan_in)
    if role in _LINEARS:
        return _trunc(0.02) if param == "weight" else _const(0.0)
    if role == "pos_embed" or role == "dist_token":
        return _trunc(0.02)
    if role in ("cls_token", "reg_token"):
        return _normal(1e-6)
    return None


def _timm_jax(role: str, param: str, fan_in: int, fan_out: int, **kw: Any) -> Prior | None:
    if role == "patch_embed":
        return _lecun(fan_in) if param == "weight" else _const(0.0)
    if role == "head":
        return _const(0.0)  # weight zeros; bias head_bias (0 unless 'jax_nlhb')
    if role in _LINEARS:
        if param == "weight":
            return _xavier_uniform(fan_in, fan_out)
        return _normal(1e-6) if role in ("fc1", "fc2") else _const(0.0)  # 'mlp' in the module name
    return _timm(role, param, fan_in, fan_out, **kw)


def _depth_scaled(role: str, block: int | None) -> float:
    """fix_init_weight: the output projections of block i (attention's and the MLP's) divided by sqrt(2 (i + 1))."""
    return 1.0 / math.sqrt(2 * (block + 1)) if role in ("attn_proj", "fc2") and block is not None else 1.0


def _timm_fix_init(role: str, param: str, fan_in: int, fan_out: int, block: int | None = None,
                   **kw: Any) -> Prior | None:
    p = _timm(role, param, fan_in, fan_out, **kw)
    if p is not None and param == "weight" and role in _LINEARS and _depth_scaled(role, block) != 1.0:
        return _trunc(0.02 * _depth_scaled(role, block))
    return p


def _timm_eva(role: str, param: str, fan_in: int, fan_out: int, width: int = 1, ndim: int = 2,
              block: int | None = None, **_: Any) -> Prior | None:
    if role == "latent":
        return _trunc_tf(width ** -0.5)
    if role == "patch_embed" and ndim == 4:
        return _torch_default(fan_in)
    if role == "head":  # trunc_normal(.02) cut at +-2, then times head_init_scale 0.001
        return Prior("truncnormal", 2e-5, -2e-3, 2e-3) if param == "weight" else _const(0.0)
    if role in _LINEARS:
        return _trunc(0.02 * _depth_scaled(role, block)) if param == "weight" else _const(0.0)
    if role in ("pos_embed", "cls_token", "reg_token"):
        return _trunc(0.02)
    if role == "rel_pos":
        return _const(0.0)
    return None


def _hf_siglip(role: str, param: str, fan_in: int, fan_out: int, width: int = 1, block: int | None = None,
               **_: Any) -> Prior | None:
    lecun = _trunc(math.sqrt(1.0 / fan_in) / _TRUNC2_STD)  # transformers' lecun_normal_: a +-2 absolute cut
    if role == "patch_embed":
        return lecun if param == "weight" else _const(0.0)
    if role == "pos_embed":
        return _normal(width ** -0.5)
    if role == "latent":
        return _xavier_uniform(width, width)
    if param == "bias":
        return _normal(1e-6) if role in ("fc1", "fc2") else _const(0.0) if role in _LINEARS else None
    if role in ("q", "kv") and block is None:  # the pool's in_proj: one xavier over (3 width, width)
        return _xavier_uniform(fan_in, 3 * fan_in)
    if role == "attn_proj" and block is None:  # the pool's out_proj
        return lecun
    if role in ("qkv", "q", "k", "v", "attn_proj"):  # q, k and v are square matrices of their own
        return _xavier_uniform(fan_in, fan_in)
    if role in ("fc1", "fc2"):
        return _xavier_uniform(fan_in, fan_out)
    return None


def _torchvision(role: str, param: str, fan_in: int, fan_out: int, **_: Any) -> Prior | None:
    if role == "patch_embed":
        return _trunc(math.sqrt(1.0 / fan_in)) if param == "weight" else _const(0.0)
    if role == "cls_token":
        return _const(0.0)
    if role == "pos_embed":
        return _normal(0.02)
    if role == "qkv":
        return _xavier_uniform(fan_in, fan_out) if param == "weight" else _const(0.0)
    if role == "attn_proj":
        return _torch_default(fan_in) if param == "weight" else _const(0.0)
    if role in ("fc1", "fc2"):
        return _xavier_uniform(fan_in, fan_out) if param == "weight" else _normal(1e-6)
    if role == "pre_logits":
        return _trunc(math.sqrt(1.0 / fan_in)) if param == "weight" else _const(0.0)
    if role == "head":
        return _const(0.0)
    return None


def _hf(role: str, param: str, fan_in: int, fan_out: int, initializer_range: float = 0.02, **_: Any) -> Prior | None:
    if role in _LINEARS:
        return _trunc(initializer_range) if param == "weight" else _const(0.0)
    if role in ("pos_embed", "cls_token", "reg_token", "dist_token"):
        return _trunc(initializer_range)
    if role == "mask_token":
        return _const(0.0)
    return None


def _hf_deit(role: str, param: str, fan_in: int, fan_out: int, initializer_range: float = 0.02,
             **_: Any) -> Prior | None:
    if role in ("pos_embed", "cls_token", "dist_token"):
        return _const(0.0)
    return _hf(role, param, fan_in, fan_out, initializer_range=initializer_range)


def _pytorch(role: str, param: str, fan_in: int, fan_out: int, **_: Any) -> Prior | None:
    if role in _LINEARS:
        return _torch_default(fan_in)
    if role in ("pos_embed",) + _TOKENS:
        return _normal(1.0)
    return None


def _model_zoo(kind: str):
    def scheme(role: str, param: str, fan_in: int, fan_out: int, **kw: Any) -> Prior | None:
        if role in _LINEARS:
            if param != "weight":
                return _const(0.01)
            if kind == "kaiming_uniform":
                return _uniform(math.sqrt(6.0 / fan_in))
            if kind == "kaiming_normal":
                return _normal(math.sqrt(2.0 / fan_in))
            if kind == "xavier_uniform":
                return _xavier_uniform(fan_in, fan_out)
            return _normal(math.sqrt(2.0 / (fan_in + fan_out)))
        return _timm(role, param, fan_in, fan_out, **kw)
    return scheme


_SCHEME_FNS = {
    "timm": _timm, "timm_jax": _timm_jax, "timm_fix_init": _timm_fix_init, "timm_eva": _timm_eva,
    "torchvision": _torchvision, "hf": _hf, "hf_deit": _hf_deit, "hf_siglip": _hf_siglip, "pytorch": _pytorch,
    "model_zoo_kaiming_uniform": _model_zoo("kaiming_uniform"),
    "model_zoo_kaiming_normal": _model_zoo("kaiming_normal"),
    "model_zoo_xavier_uniform": _model_zoo("xavier_uniform"),
    "model_zoo_xavier_normal": _model_zoo("xavier_normal"),
}


def fans(role: str, shape: tuple[int, ...]) -> tuple[int, int]:
    """PyTorch's fan_in/fan_out for a weight of this shape (Linear (out, in); Conv (out, in, kh, kw))."""
    if len(shape) >= 2:
        receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
        return shape[1] * receptive, shape[0] * receptive
    n = shape[0] if shape else 1
    return n, n


def scheme_prior(scheme: str, role: str, param: str, shape: tuple[int, ...], *,
                 weight_shape: tuple[int, ...] | None = None, initializer_range: float = 0.02,
                 block: int | None = None) -> Prior | None:
    """The prior one scheme gives a tensor; biases take their fans from their weight's shape, token-like
    tensors (the pool's latent queries) their scale from their width, depth-scaled inits their block."""
    if role in ("norm",):
        return _const(1.0) if param == "weight" else _const(0.0)
    if role == "layerscale":
        return None  # a constant, but its value (init_values / layerscale_value) is per model
    like = tuple(weight_shape) if weight_shape is not None else tuple(shape)
    fan_in, fan_out = fans(role, like)
    p = _SCHEME_FNS[scheme](role, param, fan_in, fan_out, initializer_range=initializer_range,
                            width=shape[-1] if shape else 1, ndim=len(like), block=block)
    return None if p is None else Prior(p.family, p.scale, p.lo, p.hi, (scheme,))


@lru_cache(maxsize=4096)
def priors_for(role: str, param: str, shape: tuple[int, ...], *, weight_shape: tuple[int, ...] | None = None,
               initializer_range: float = 0.02, block: int | None = None) -> tuple[Prior, ...]:
    """Every distinct prior the known schemes give this tensor, each with the schemes that use it
    (cached: a ViT repeats a few shapes many times)."""
    merged: dict[tuple, list[str]] = {}
    for scheme in SCHEMES:
        p = scheme_prior(scheme, role, param, shape, weight_shape=weight_shape,
                         initializer_range=initializer_range, block=block)
        if p is not None:
            key = (p.family, round(p.scale, 12), p.lo, p.hi)
            merged.setdefault(key, []).append(scheme)
    return tuple(Prior(f, s, lo, hi, tuple(schemes)) for (f, s, lo, hi), schemes in merged.items())


# ---- fitting -----------------------------------------------------------------------------------------------------

@dataclass
class PriorFit:
    """How a tensor sits against one prior: distances and whether the prior explains it."""

    prior: Prior
    ks: float
    wasserstein: float
    std_ratio: float
    matches: bool
    # Every value inside the prior's support (a uniform's bound, a truncated normal's cut): one value outside rules
    # the prior out, however well the rest fits.
    in_support: bool = True
    # The std within 3 standard errors of the prior's for this tensor's size (`matches` allows 4): what a small
    # tensor needs before it is called "at init" by this prior.
    exact: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"prior": self.prior.label, "schemes": list(self.prior.schemes), "ks": self.ks,
                "wasserstein": self.wasserstein, "std_ratio": self.std_ratio, "matches": self.matches,
                "in_support": self.in_support, "exact": self.exact}


def sample_sorted(values: torch.Tensor, n: int = KS_SAMPLE, seed: int = 0) -> torch.Tensor:
    """A deterministic random subsample of the last dim, sorted (float64): KS and Wasserstein need order
    statistics. Leading dims are a batch (a stack of same-sized tensors), sampled at the same places."""
    x = values.detach()
    if x.shape[-1] > n:
        g = torch.Generator().manual_seed(seed)
        x = x.index_select(-1, torch.randint(x.shape[-1], (n,), generator=g))
    x = x if x.dtype == torch.float64 else x.float()  # (exact for every narrower float)
    return torch.from_numpy(np.sort(x.numpy(), axis=-1)).double()  # numpy's SIMD sort: ~30x torch's on CPU


@lru_cache(maxsize=256)
def _quantiles(prior: Prior, n: int) -> torch.Tensor:
    """The prior's n midpoint quantiles, cached: a ViT fits the same (prior, sample size) many times."""
    return prior.ppf((torch.arange(n, dtype=torch.float64) + 0.5) / n)


@lru_cache(maxsize=256)
def _ks_critical(n: int) -> float:
    """KS_ALPHA's critical value for n draws (exact finite-n distribution), plus 0.01 of slack."""
    return float(stats.kstwo.isf(KS_ALPHA, n)) + 0.01


def fit(prior: Prior, sample: torch.Tensor, *, numel: int, mean: float, std: float,
        constant: bool) -> PriorFit:
    """`fit_many` for one tensor."""
    return fit_many(prior, sample[None], numel=[numel], mean=[mean], std=[std], constant=[constant])[0]


def fit_many(prior: Prior, samples: torch.Tensor, *, numel: Sequence[int], mean: Sequence[float],
             std: Sequence[float], constant: Sequence[bool], entries: torch.Tensor | None = None,
             bounds: Sequence[tuple[float, float]] | None = None) -> list[PriorFit]:
    """`fit_each` of one prior to every row."""
    return fit_each([(prior, range(samples.shape[0]))], samples, numel=numel, mean=mean, std=std,
                    constant=constant, entries=entries, bounds=bounds)[0]


@lru_cache(maxsize=256)
def _stored_bounds(lo: float, hi: float, dtype: torch.dtype) -> tuple[float, float]:
    """The innermost of a truncation's bounds as `dtype` stores them and as float32 rounds those."""
    stored = torch.tensor([lo, hi], dtype=dtype)
    (low, high), (low32, high32) = stored.tolist(), stored.float().tolist()
    return max(low, low32), min(high, high32)


def _may_reach(prior: Prior, dtype: torch.dtype, bounds: Sequence[tuple[float, float]]) -> bool:
    """Whether any row's (min, max) allows an entry equal to a bound of the prior as `dtype` stores it. The
    moments may hold min and max rounded to float32: rounding is monotonic, so a row whose min lies above both
    roundings of the bound has no entry on it."""
    low, high = _stored_bounds(prior.lo, prior.hi, dtype)
    return any(mn <= low or mx >= high for mn, mx in bounds)


def _rows(x: torch.Tensor, rows: list[int]) -> torch.Tensor:
    """Those rows of x: x itself when they are all of them, in order (most priors: no copy)."""
    return x if rows == list(range(x.shape[0])) else x[rows]


def _without_clamped(prior: Prior, entries: torch.Tensor, rows: list[int], mean: list[float], std: list[float],
                     bounds: Sequence[tuple[float, float]] | None = None) -> tuple[list[float], list[float]]:
    """Mean and std of each of those `rows` of `entries` leaving out values exactly on a truncated normal's far
    bounds: torch's trunc_normal_ puts about one entry in 2**24 there (erfinv(-1) clamped to the bound),
    which at timm's absolute +-2 for std 0.02 is 100 std out and alone would move the std by percents.
    `bounds`, each row's (min, max) where known, spare the pass over the entries when no row reaches a bound."""
    if prior.family != "truncnormal" or min(-prior.lo, prior.hi) < 6 * prior.scale:
        return mean, std
    if bounds is not None and not _may_reach(prior, entries.dtype, bounds):
        return mean, std
    entries = _rows(entries, rows)
    clamped = (entries == prior.lo) | (entries == prior.hi)  # (the bound in the entries' own precision)
    hits = clamped.any(-1).tolist()
    mean, std = list(mean), list(std)
    for i in (i for i, hit in enumerate(hits) if hit):
        kept = entries[i][~clamped[i]].double()
        mean[i], std[i] = float(kept.mean()), float(kept.std(correction=0))
    return mean, std


def _in_support(prior: Prior, lo: float, hi: float) -> bool:
    """Whether values from `lo` to `hi` can come from the prior (a relative 1e-3 slack for fp16/bf16 rounding)."""
    if prior.family == "uniform":
        low, high = -prior.scale, prior.scale
    elif prior.family == "truncnormal":
        low, high = prior.lo, prior.hi
    else:
        return True
    slack = 1e-3 * max(abs(low), abs(high)) if math.isfinite(low) and math.isfinite(high) else 0.0
    return low - slack <= lo and hi <= high + slack


def _distances(assignments: Sequence[tuple[Prior, Sequence[int]]], samples: torch.Tensor
               ) -> dict[int, tuple[list[float], list[float]]]:
    """KS and Wasserstein-1 distances of the assigned rows of `samples` (sorted) from their priors, by
    assignment: the uniform priors' rows in one evaluation, the normal ones' in another."""
    n = samples.shape[-1]
    i = torch.arange(1, n + 1, dtype=torch.float64)
    out: dict[int, tuple[list[float], list[float]]] = {}
    for families in (("uniform",), ("normal", "truncnormal")):
        batch = [(k, p, list(rows)) for k, (p, rows) in enumerate(assignments) if p.family in families and rows]
        if not batch:
            continue
        x = samples.index_select(0, torch.tensor([j for _, _, rows in batch for j in rows]))
        args = torch.tensor([p._cdf_args for _, p, rows in batch for _ in rows], dtype=torch.float64)
        cdf = _cdf(families[0], x, *args.T.unsqueeze(-1).unbind(0))
        kss = torch.maximum(i / n - cdf, cdf - (i - 1) / n).amax(-1).tolist()
        q = torch.cat([_quantiles(p, n).expand(len(rows), n) for _, p, rows in batch])
        w1s = (x - q).abs().mean(-1).tolist()
        at = 0
        for k, _, rows in batch:
            out[k] = kss[at:at + len(rows)], w1s[at:at + len(rows)]
            at += len(rows)
    return out


def fit_each(assignments: Sequence[tuple[Prior, Sequence[int]]], samples: torch.Tensor, *, numel: Sequence[int],
             mean: Sequence[float], std: Sequence[float], constant: Sequence[bool],
             entries: torch.Tensor | None = None,
             bounds: Sequence[tuple[float, float]] | None = None) -> list[list[PriorFit]]:
    """Per (prior, rows) assignment, that prior's fit to each of those rows of `samples` (B, n), sorted rows:
    KS and Wasserstein-1 against the prior. Per row, the tensor's `std` and `mean` come from `numel` entries
    (all of them, or the larger sample the moments use). A whole group of same-shaped tensors (the blocks' qkv
    weights, ...) takes one CDF evaluation for all its priors: per-prior or per-tensor calls would be mostly
    per-op overhead.

    A match needs all three: a KS distance below its 0.1% critical value, a std within 4 standard
    errors of the prior's (the error of a std estimate from `numel` draws of this prior), and a mean
    within 4 standard errors of 0 (or, for a constant prior, all entries equal to the constant); and, for a
    bounded prior, every value inside its support: `bounds` gives each tensor's (min, max).
    `entries` (B, numel), the values `mean` and `std` come from: against a truncated normal, values
    clamped onto its bounds by the init itself are left out of both.
    """
    distances = _distances(assignments, samples)
    ks_critical = _ks_critical(samples.shape[-1])
    out = []
    for k, (prior, rows) in enumerate(assignments):
        rows = list(rows)
        if prior.family == "constant":
            tol = 1e-3 * abs(prior.scale) + 1e-12  # fp16/bf16 checkpoints round init constants
            dists = (_rows(samples, rows) - prior.scale).abs().mean(-1).tolist()
            hits = [constant[j] and abs(mean[j] - prior.scale) <= tol for j in rows]
            out.append([PriorFit(prior, 0.0 if hit else 1.0, d, math.nan, hit) for hit, d in zip(hits, dists)])
            continue
        kss, w1s = distances.get(k, ([], []))
        ms, ss = [mean[j] for j in rows], [std[j] for j in rows]
        if entries is not None:
            ms, ss = _without_clamped(prior, entries, rows, ms, ss, None if bounds is None else
                                      [bounds[j] for j in rows])
        pstd = prior.std
        fits = []
        for j, ks, w1, m, s in zip(rows, kss, w1s, ms, ss):
            ratio = s / pstd if pstd > 0 else math.inf
            se = math.sqrt((prior.excess_kurtosis + 2.0) / (4.0 * max(numel[j], 1)))
            ok_std = abs(ratio - 1.0) <= 4 * se + 0.005
            ok_mean = abs(m) <= 4 * pstd / math.sqrt(max(numel[j], 1)) + 1e-3 * pstd
            support = bounds is None or _in_support(prior, *bounds[j])
            matches = bool(ok_std and ok_mean and ks <= ks_critical and not constant[j] and support)
            fits.append(PriorFit(prior, ks, w1, ratio, matches, support,
                                 matches and abs(ratio - 1.0) <= 3 * se + 0.005))
        out.append(fits)
    return out
