"""The head count, which shapes cannot tell when q/k/v are as wide as the residual stream.

In this order: metadata (config.json, timm's pretrained_cfg, the file's own record); the trained weights
themselves (`head_split_evidence`); a family member of the same shape; and last the usual head width of 64.
Everything but the first is marked inferred."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from vitdash.cache import pickled_size, shared_cache
from vitdash.identity.family_table import heads_for_shape
from vitdash.identity.timm_defs import timm_block, timm_name
from vitdash.load.checkpoint import Checkpoint, TensorStore


def _heads_from_metadata(meta: dict[str, Any]) -> tuple[int | None, str]:
    """Config files say the head count outright; a timm model name lets timm say it."""
    if isinstance(meta.get("num_heads"), int):
        return meta["num_heads"], meta.get("num_heads_from", "the checkpoint's metadata")
    config = meta.get("config")
    if isinstance(config, dict):
        for key in ("num_attention_heads", "num_heads", "heads"):
            if isinstance(config.get(key), int):
                return config[key], f"config.json ({key})"
        model_args = config.get("model_args")
        if isinstance(model_args, dict) and isinstance(model_args.get("num_heads"), int):
            return model_args["num_heads"], "config.json (model_args.num_heads)"
    name = timm_name(meta)
    if name:
        heads = _timm_num_heads(name)
        if heads:
            return heads, f"timm's definition of {name}"
    return None, ""


def _timm_num_heads(name: str) -> int | None:
    return getattr(getattr(timm_block(name), "attn", None), "num_heads", None)


@dataclass
class HeadEvidence:
    """The head split that the trained weights single out, and how strongly.

    Why it works: a head's output depends on W_o,h W_v,h (and its logits on W_q,h^T W_k,h) only, so
    (A W_v,h, W_o,h A^-1) is a symmetry for any invertible A inside one head. Gradient flow conserves
    W_v,h W_v,h^T - W_o,h^T W_o,h for each symmetry (weight decay drives it to zero), so within the true
    heads the rows of V and columns of O stay balanced, while across heads nothing constrains them.
    The normalized imbalance |G_ij| is therefore smaller for pairs i, j in the same head; the split with
    the largest within-versus-across contrast is the head split. At initialization there is no such
    structure, which a permutation null (random relabelling of the attention dimensions) measures. Adam
    keeps the law only approximately, so the threshold is calibrated: the trained files in ../shared score
    16 to 114 null standard deviations at their true head count, i.i.d. initializations below 3.
    """

    num_heads: int
    channel: str  # 'value-output' or 'query-key'
    z: float  # contrast of the best split against the permutation null, in null standard deviations
    contrast: float  # mean imbalance within heads / across heads at the chosen split (< 1)
    layers: list[int]
    channels: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


Z_THRESHOLD = 8.0  # see HeadEvidence: trained files score 16-114, initializations below 3


CONTRAST_MAX = 0.9


def _imbalance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    scale = np.sqrt(np.clip(np.diag(a + b), 1e-30, None))
    return np.abs(a - b) / np.outer(scale, scale)


def _split_stats(m: np.ndarray, candidates: list[int], total: float, count: int, std: float
                 ) -> tuple[np.ndarray, np.ndarray]:
    """For each head count: a two-sample statistic (across minus within, scaled) and the within/across ratio."""
    a = m.shape[0]
    trace = float(np.trace(m))
    stats, ratios = [], []
    for h in candidates:
        d = a // h
        within_sum = float(m.reshape(h, d, h, d)[np.arange(h), :, np.arange(h), :].sum()) - trace
        n_w = h * d * (d - 1)
        n_c = count - n_w
        within, across = within_sum / n_w, (total - within_sum) / n_c
        stats.append((across - within) / std * math.sqrt(n_w * n_c / count))
        ratios.append(within / across if across > 0 else 1.0)
    return np.array(stats), np.array(ratios)


def attention_width(tensors: TensorStore, layer: int, part: str = "q") -> int:
    """Rows of one of q, k, v in a block: a third of a fused qkv, or its own projection (Eva's q_proj...)."""
    fused = f"blocks.{layer}.attn.qkv.weight"
    if fused in tensors:
        return tensors.shape(fused)[0] // 3
    return tensors.shape(f"blocks.{layer}.attn.{part}_proj.weight")[0]


def attention_projections(tensors: TensorStore, layer: int) -> tuple[torch.Tensor, ...] | None:
    """(q, k, v) of one block as (rows, in + 1) matrices, each row its weights and bias (a zero where the class has
    none: Eva's and BEiT's key), and the output projection; None for meta tensors. Fused or not, timm's layouts."""
    a = f"blocks.{layer}.attn"
    if f"{a}.qkv.weight" in tensors:
        w = tensors[f"{a}.qkv.weight"]
        if w.device.type == "meta":
            return None
        w = w.detach().float()
        parts = list(w.chunk(3))
        biases = ([tensors[f"{a}.qkv.bias"].detach().float().chunk(3)] if f"{a}.qkv.bias" in tensors else
                  [(tensors[f"{a}.q_bias"].detach().float(), None, tensors[f"{a}.v_bias"].detach().float())]
                  if f"{a}.q_bias" in tensors else [])
    else:
        if tensors[f"{a}.q_proj.weight"].device.type == "meta":
            return None
        parts = [tensors[f"{a}.{p}_proj.weight"].detach().float() for p in "qkv"]
        biases = ([tuple(tensors[f"{a}.{p}_proj.bias"].detach().float() if f"{a}.{p}_proj.bias" in tensors else None
                         for p in "qkv")] if f"{a}.q_proj.bias" in tensors else [])
    if biases:  # the head symmetry acts on the biases too
        parts = [torch.cat([w, (b if b is not None else torch.zeros(w.shape[0]))[:, None]], 1)
                 for w, b in zip(parts, biases[0])]
    return (*parts, tensors[f"{a}.proj.weight"].detach().float())


def head_split_evidence(tensors: TensorStore, depth: int, attn_dim: int, use_query_key: bool = True,
                        max_layers: int = 4, permutations: int | None = None, seed: int = 0) -> HeadEvidence | None:
    """The head count that trained q/k/v/o weights single out, or None when they show no head structure.

    Reads up to `max_layers` evenly spaced blocks; `permutations` (default 50, 20 past 512 dims where each
    costs more and trained contrasts are far beyond the threshold) sets the size of the null sample.
    """
    permutations = permutations or (50 if attn_dim <= 512 else 20)
    candidates = [h for h in range(2, attn_dim // 2 + 1) if attn_dim % h == 0]
    if not candidates:
        return None
    layers = sorted({int(round(x)) for x in np.linspace(0, depth - 1, min(depth, max_layers))})
    sums: dict[str, np.ndarray] = {}
    for layer in layers:
        proj = attention_projections(tensors, layer)
        if proj is None or proj[2].shape[0] != attn_dim:  # meta tensors; grouped k/v heads
            return None
        q, k, v, o = proj
        pairs = {"value-output": (v @ v.T, o.T @ o)}
        if use_query_key:
            pairs["query-key"] = (q @ q.T, k @ k.T)
        for channel, (x, y) in pairs.items():
            g = _imbalance(x.double().numpy(), y.double().numpy())
            sums[channel] = sums[channel] + g if channel in sums else g
    rng = np.random.default_rng(seed)
    off = ~np.eye(attn_dim, dtype=bool)
    found: dict[str, dict[str, float]] = {}
    for channel, total_m in sums.items():
        m = (total_m / len(layers)).astype(np.float32)
        values = m[off]
        total, count, std = float(values.sum()), values.size, float(values.std()) or 1e-12
        stats, ratios = _split_stats(m, candidates, total, count, std)
        null = np.array([_split_stats(m[np.ix_(p, p)], candidates, total, count, std)[0].max()
                         for p in (rng.permutation(attn_dim) for _ in range(permutations))])
        best = int(stats.argmax())
        z = (stats[best] - null.mean()) / max(float(null.std()), 1e-12)
        found[channel] = {"num_heads": candidates[best], "z": round(float(z), 1),
                          "contrast": round(float(ratios[best]), 3)}
    strong = {c: r for c, r in found.items() if r["z"] >= Z_THRESHOLD and r["contrast"] <= CONTRAST_MAX}
    if not strong or len({r["num_heads"] for r in strong.values()}) > 1:
        return None
    channel, result = max(strong.items(), key=lambda kv: kv[1]["z"])
    return HeadEvidence(num_heads=int(result["num_heads"]), channel=channel, z=result["z"],
                        contrast=result["contrast"], layers=layers, channels=found)


def _cached_evidence(ckpt: Checkpoint, depth: int, attn_dim: int, qk_norm: bool) -> HeadEvidence | None:
    """The permutation test reads weights and takes up to a second: once per file content is enough (kept in
    the process-wide cache)."""
    def run() -> HeadEvidence | None:
        return head_split_evidence(ckpt.tensors, depth, attn_dim, use_query_key=not qk_norm)

    if not ckpt.sha256:
        return run()
    return shared_cache().get_or_load(("head_evidence", ckpt.sha256, depth, attn_dim, qk_norm), run,
                                      size=pickled_size)


def _guess_heads(attn_dim: int, candidates: list[int]) -> int:
    """The head count whose head width is closest to the usual 64."""
    return min(candidates, key=lambda h: (abs(math.log(attn_dim / h / 64)), h))


def infer_heads(ckpt: Checkpoint, embed_dim: int, depth: int, attn_dim: int, mlp_hidden: int, qk_norm: bool,
                candidates: list[int], notes: list[str], mlp_type: str = "mlp") -> tuple[int, str, dict[str, Any]]:
    heads, where = _heads_from_metadata(ckpt.metadata)
    if heads is not None:
        if attn_dim % heads == 0:
            return heads, "config", {"from": where}
        notes.append(f"{where} says {heads} heads, which does not divide the attention width {attn_dim}: ignored")
    wide = (f"q/k/v are {attn_dim} wide, wider than the {embed_dim}-wide residual stream, so heads x head width = "
            f"{attn_dim}; " if attn_dim != embed_dim else "")
    evidence = _cached_evidence(ckpt, depth, attn_dim, qk_norm)
    if evidence is not None:
        notes.append(
            f"{wide}head count not stated anywhere; the trained weights single out {evidence.num_heads} heads "
            f"({evidence.channel} balance within heads, {evidence.z:.0f} null standard deviations above a random "
            f"relabelling of the attention dimensions)")
        return evidence.num_heads, "weights", evidence.to_dict()
    if attn_dim == embed_dim:
        known = heads_for_shape(embed_dim, depth, mlp_hidden, mlp_type)
        if known is not None:
            heads, member = known
            notes.append(f"head count not stated anywhere and the weights show no head structure: {heads}, as in "
                         f"{member} (same width, depth and MLP), is the best guess; any of {candidates} fits the "
                         "shapes")
            return heads, "family", {"member": member}
    heads = _guess_heads(attn_dim, candidates)
    notes.append(f"{wide}head count not stated anywhere and the weights show no head structure: {heads} is a guess "
                 f"(head width {attn_dim // heads}, nearest the usual 64); any of {candidates} fits the shapes")
    return heads, "guess", {}
