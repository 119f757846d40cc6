"""What each tensor is for: its role (qkv, fc1, norm, ...), its block, and the unit it is initialized with.

Canonical (timm) names give the role exactly. Any other tensor set gets a best-effort role from its
name and shape (a 2-D matrix is a 'linear' weight, a 1-D '*weight' near 1 is a norm, a (1, N, D)
parameter with N-1 square is a position embedding...), so the audit also works on unknown layouts.
"""
from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

import torch

from vitdash.load.checkpoint import Checkpoint, TensorStore

ROLES = ("patch_embed", "pos_embed", "cls_token", "dist_token", "reg_token", "mask_token", "latent",
         "rel_pos", "rope", "qkv", "q", "k", "v", "kv", "attn_proj", "fc1", "fc2", "norm", "layerscale",
         "pre_logits", "head", "linear", "conv", "other")
# Roles whose values can show structure no i.i.d. init has (spectra, spatial similarity, smoothness).
MATRIX_ROLES = ("patch_embed", "qkv", "q", "k", "v", "kv", "attn_proj", "fc1", "fc2", "pre_logits", "head",
                "linear", "conv")
TOKEN_ROLES = ("cls_token", "dist_token", "reg_token", "mask_token", "pos_embed")


@dataclass(frozen=True)
class TensorRole:
    """`slot` is the name inside its block ('attn.qkv.weight') and names the heatmap's column; `group`
    is what gets (re)initialized as one unit ('blocks.3', 'head', 'pos_embed'); `matters` is false for
    tensors inference never reads (a masked-image-modelling mask token)."""

    name: str
    role: str
    param: str  # 'weight' | 'bias' | 'value'
    block: int | None
    slot: str
    group: str
    matters: bool = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---- canonical timm names --------------------------------------------------------------------------------

_BLOCK_SLOTS = [
    (r"norm1|norm2|attn\.q_norm|attn\.k_norm|attn\.norm|mlp\.norm|norm", "norm"),
    (r"attn\.qkv", "qkv"),
    (r"attn\.q_proj|attn\.q", "q"),
    (r"attn\.k_proj|attn\.k", "k"),
    (r"attn\.v_proj|attn\.v", "v"),
    (r"attn\.proj", "attn_proj"),
    (r"mlp\.fc1(?:_g|_x)?", "fc1"),
    (r"mlp\.fc2", "fc2"),
    (r"ls1|ls2", "layerscale"),
]
_TOP = [
    # The 'map' pooling head (timm's AttentionPoolLatent): one group, read like a block without its own index.
    (r"attn_pool\.q", "q"),
    (r"attn_pool\.kv", "kv"),
    (r"attn_pool\.proj", "attn_proj"),
    (r"attn_pool\.norm", "norm"),
    (r"attn_pool\.mlp\.fc1", "fc1"),
    (r"attn_pool\.mlp\.fc2", "fc2"),
    (r"patch_embed\.proj|embeds\.proj", "patch_embed"),
    (r"patch_embed\.norm|embeds\.norm|embeds\.norm_input|norm_pre|norm|fc_norm", "norm"),
    (r"pre_logits\.fc", "pre_logits"),
    (r"head|head_dist", "head"),
]


# Tensors of timm's Eva and Beit that are not a module's weight or bias: q and v biases (the key's is a fixed
# zero), LayerScale `gamma_N`, BEiT's relative position bias tables (per block or shared), and the learned
# frequencies of mixed RoPE (the only RoPE tensor a checkpoint holds).
_EVA_PARAMS = [
    (r"blocks\.(\d+)\.attn\.(q|v)_bias", lambda m: (m.group(2), "bias")),
    (r"blocks\.(\d+)\.gamma_[12]", lambda m: ("layerscale", "weight")),
    (r"blocks\.(\d+)\.attn\.relative_position_bias_table", lambda m: ("rel_pos", "value")),
]


def canonical_role(name: str, shape: tuple[int, ...]) -> TensorRole:
    """Role of a tensor named as in the state dict of timm's VisionTransformer, Eva, Beit or NaFlexVit."""
    token = name.removeprefix("embeds.")  # NaFlexVit keeps its tokens and position table in `embeds`
    if token in ("cls_token", "dist_token", "reg_token", "pos_embed", "mask_token", "pos_embed_x", "pos_embed_y"):
        role = "pos_embed" if token.startswith("pos_embed") else token
        return TensorRole(name, role, "value", None, name, name, matters=token != "mask_token")
    if name == "attn_pool.latent":  # the pool's learned queries: a token, initialized as one
        return TensorRole(name, "latent", "value", None, name, "attn_pool")
    if name == "rel_pos_bias.relative_position_bias_table":
        return TensorRole(name, "rel_pos", "value", None, name, "rel_pos_bias")
    if name == "rope.freqs":
        return TensorRole(name, "rope", "value", None, name, "rope")
    for pattern, role_of in _EVA_PARAMS:
        if m := re.fullmatch(pattern, name):
            block = int(m.group(1))
            role, param = role_of(m)
            return TensorRole(name, role, param, block, name.split(".", 2)[2], f"blocks.{block}")
    m = re.fullmatch(r"blocks\.(\d+)\.(.+)\.(weight|bias|gamma)", name)
    if m:
        block, module, param = int(m.group(1)), m.group(2), m.group(3)
        role = next((r for pat, r in _BLOCK_SLOTS if re.fullmatch(pat, module)), "other")
        if param == "gamma":
            role, param = "layerscale", "weight"
        return TensorRole(name, role, param, block, f"{module}.{m.group(3)}", f"blocks.{block}")
    m = re.fullmatch(r"(.+)\.(weight|bias)", name)
    if m:
        module, param = m.group(1), m.group(2)
        role = next((r for pat, r in _TOP if re.fullmatch(pat, module)), None)
        if role is not None:
            return TensorRole(name, role, param, None, name, module.split(".")[0])
    return guess_role(name, shape)


# ---- generic tensor sets ---------------------------------------------------------------------------------------

_NAME_HINTS = [  # (regex on the lower-cased name, role) - first match wins
    (r"mask_token", "mask_token"),
    (r"dist(?:illation)?_token", "dist_token"),
    (r"reg(?:ister)?_tokens?", "reg_token"),
    (r"cls_token|class_token|cls_emb", "cls_token"),
    (r"pos(?:ition)?(?:al)?_?emb", "pos_embed"),
    (r"patch_emb|to_patch_embedding|conv_proj|patch_embeddings", "patch_embed"),
    (r"layer_?scale|(?:^|\.)ls\d|lambda1|(?:^|\.)gamma(?:_\d)?$", "layerscale"),
    (r"norm|(?:^|\.)ln_?\d*\.|(?:^|\.)ln_|layernorm|layer_norm", "norm"),
    (r"qkv|in_proj|to_qkv|c_attn", "qkv"),
    (r"(?:^|\.)(?:query|q_proj|q)\.", "q"),
    (r"(?:^|\.)(?:key|k_proj|k)\.", "k"),
    (r"(?:^|\.)(?:value|v_proj|v)\.", "v"),
    (r"out_proj|to_out|attn\.proj|attention\.output\.dense|o_proj|c_proj", "attn_proj"),
    (r"fc1|intermediate\.dense|mlp\.0\.|net\.0\.|(?:^|\.)w1\.|lin1|c_fc", "fc1"),
    (r"fc2|(?:^|\.)output\.dense|mlp\.[23]\.|net\.3\.|(?:^|\.)w2\.|lin2", "fc2"),
    (r"pre_logits", "pre_logits"),
    (r"head|classifier|logits", "head"),
]


def _param_of(name: str) -> str:
    last = name.rsplit(".", 1)[-1].lower()
    if last in ("bias", "b") or last.endswith("_bias"):
        return "bias"
    if last in ("weight", "w", "gamma", "scale", "lambda1") or last.endswith("_weight"):
        return "weight"
    return "value"


def _is_square(n: int) -> bool:
    r = math.isqrt(n)
    return n > 0 and r * r == n


def guess_role(name: str, shape: tuple[int, ...], values: Callable[[], torch.Tensor] | None = None) -> TensorRole:
    """Best-effort role from a name and a shape; `values` (a loader) settles 1-D tensors by their values."""
    low = name.lower()
    param = _param_of(name)
    role = next((r for pat, r in _NAME_HINTS if re.search(pat, low)), None)
    ndim = len(shape)
    if role in ("cls_token", "dist_token", "reg_token", "mask_token", "pos_embed") and param == "bias":
        role = None
    if role is None:
        if ndim == 4:
            role = "patch_embed" if shape[1] <= 4 else "conv"
        elif ndim == 3 and shape[0] == 1:
            n = shape[1]
            role = "cls_token" if n == 1 else ("pos_embed" if _is_square(n) or _is_square(n - 1) else "reg_token")
        elif ndim == 2:
            role = "linear"
        elif ndim == 1 and values is not None:
            role = _role_from_values(values())
        else:
            role = "other"
    elif role in ("norm", "layerscale") and ndim >= 2:
        role = "linear" if ndim == 2 else "other"
    elif role in MATRIX_ROLES and ndim == 1 and param == "weight":
        role = "norm" if values is None else _role_from_values(values())
    return TensorRole(name, role, "value" if role in TOKEN_ROLES else param, None, name,
                      name if role in TOKEN_ROLES else name.rsplit(".", 1)[0], matters=role != "mask_token")


def _role_from_values(t: torch.Tensor) -> str:
    """A 1-D vector near 1 is a norm gain; one near a small common value is a LayerScale."""
    t = t.detach().float()
    if t.numel() == 0:
        return "other"
    med = float(t.median())
    if 0.3 <= med <= 3.0:
        return "norm"
    if 0 < abs(med) < 0.3 and bool(((t > 0) == (med > 0)).float().mean() > 0.9):
        return "layerscale"
    return "other"


# ---- blocks in arbitrary names -----------------------------------------------------------------------------------

_INDEXED = re.compile(r"^(.*?)(\d+)$")


def _block_of(name: str, containers: set[str]) -> tuple[str, int] | None:
    parts = name.split(".")
    for i, part in enumerate(parts[:-1]):
        m = _INDEXED.match(part)
        if m is None:
            continue
        key = ".".join(parts[:i] + [m.group(1)])
        if key in containers:
            return ".".join(parts[: i + 1]), int(m.group(2))
    return None


def _find_containers(names: Iterable[str]) -> set[str]:
    """Prefixes followed by an index, with >= 2 indices holding >= 3 tensors each (a stack of blocks)."""
    per: dict[str, Counter] = defaultdict(Counter)
    for name in names:
        parts = name.split(".")
        for i, part in enumerate(parts[:-1]):
            m = _INDEXED.match(part)
            if m is not None:
                per[".".join(parts[:i] + [m.group(1)])][int(m.group(2))] += 1
                break
    return {k for k, c in per.items() if len(c) >= 2 and min(c.values()) >= 3}


def assign_roles(names: list[str], shape: Callable[[str], tuple[int, ...]], canonical: bool,
                 loader: Callable[[str], Callable[[], torch.Tensor]] | None = None) -> dict[str, TensorRole]:
    """Roles for every tensor; for generic sets, blocks are found as repeated indexed prefixes."""
    if canonical:
        return {n: canonical_role(n, shape(n)) for n in names}
    containers = _find_containers(names)
    out = {}
    for n in names:
        shp = shape(n)
        r = guess_role(n, shp, loader(n) if (loader is not None and len(shp) == 1) else None)
        blk = _block_of(n, containers)
        if blk is not None:
            prefix, idx = blk
            r = TensorRole(n, r.role, r.param, idx, n[len(prefix) + 1:], prefix, r.matters)
        out[n] = r
    for n, r in out.items():  # a bias belongs to its weight's module: it takes the weight's role
        w = weight_of(n, out)
        if w is not None and out[w].role != r.role:
            out[n] = TensorRole(n, out[w].role, r.param, r.block, r.slot, r.group, out[w].matters)
    return out


def weight_of(name: str, roles: dict[str, TensorRole]) -> str | None:
    """The weight a bias belongs to (same module), whose fans set the bias's init scale."""
    if not name.endswith("bias"):
        return None
    for cand in (name[: -len("bias")] + "weight", name[: -len("_bias")] + "_weight"):
        if cand in roles and cand != name:
            return cand
    return None


# ---- what an audit reads -------------------------------------------------------------------------------------------


def audit_view(ckpt: Checkpoint) -> tuple[TensorStore, dict[str, TensorRole]]:
    """The tensors an audit reads, with their roles: the canonical ones, except that a canonical tensor whose values
    are not the file's own (a conv composed with a Linear, a block diagonal of per-head projections, a synthesized
    zero bias) is read as the file's tensors behind it, in the role of what they became; and every tensor of the
    file the mapping left over (a decoder, a text tower, a mask token), with a role from its name and shape."""
    store = ckpt.tensors
    if not ckpt.canonical or ckpt.source_tensors is None:
        return store, assign_roles(list(store), store.shape, ckpt.canonical, store.loader)
    src = ckpt.source_tensors
    derived = set(ckpt.derived)
    loaders = {n: store.loader(n) for n in store if n not in derived}
    infos = {n: store.info(n) for n in loaders}
    roles = {n: canonical_role(n, store.shape(n)) for n in loaders}
    used = {k for keys in ckpt.origins.values() for k in keys}
    behind: dict[str, TensorRole] = {}
    for dst in sorted(derived):
        for key in ckpt.origins.get(dst, []):
            if key in src and key not in behind:
                r = canonical_role(dst, store.shape(dst))
                behind[key] = TensorRole(key, r.role, _param_of(key), r.block, key, r.group, r.matters)
    left = [k for k in src if k not in used]
    guessed = assign_roles(left, src.shape, False, src.loader)
    for key, role in [*behind.items(), *guessed.items()]:
        name = key if key not in loaders else f"file:{key}"
        loaders[name], infos[name] = src.loader(key), src.info(key)
        roles[name] = TensorRole(name, role.role, role.param, role.block, role.slot, role.group, role.matters)
    return TensorStore(loaders, infos), roles
