"""Attention rollout (Abnar & Zuidema 2020) and gradient-weighted head fusion (Chefer, Gur & Wolf 2021)."""
from __future__ import annotations

from collections.abc import Sequence

import torch

from vitdash.errors import VitdashError

HEAD_FUSIONS = ("mean", "max", "min")


def fuse_heads(attention: torch.Tensor, head_fusion: str = "mean") -> torch.Tensor:
    """(B, heads, N, N) -> (B, N, N)."""
    if head_fusion == "mean":
        return attention.mean(dim=1)
    if head_fusion == "max":
        return attention.amax(dim=1)
    if head_fusion == "min":
        return attention.amin(dim=1)
    raise VitdashError(f"unknown head fusion {head_fusion!r}; choose one of {', '.join(HEAD_FUSIONS)}")


def discard_lowest(attention: torch.Tensor, discard_ratio: float) -> torch.Tensor:
    """Zero the lowest `discard_ratio` of each image's (N, N) entries (each image on its own).

    topk runs on the smaller side (the kept entries when most are dropped): 4x faster at 1370 tokens.
    """
    b = attention.shape[0]
    flat = attention.reshape(b, -1)
    k = int(flat.shape[1] * discard_ratio)
    if k == 0:
        return attention
    keep = flat.shape[1] - k
    if keep < k:
        top = flat.topk(keep, dim=1, largest=True).indices
        out = torch.zeros_like(flat).scatter(1, top, flat.gather(1, top))
    else:
        out = flat.scatter(1, flat.topk(k, dim=1, largest=False).indices, 0.0)
    return out.reshape(attention.shape)


def check_discard_ratio(discard_ratio: float) -> None:
    if not 0.0 <= discard_ratio < 1.0:
        raise VitdashError(f"discard ratio must be in [0, 1), got {discard_ratio}")


def rollout(fused: Sequence[torch.Tensor], discard_ratio: float = 0.0,
            query: torch.Tensor | None = None) -> torch.Tensor:
    """Attention rollout of head-fused layers (each (B, N, N), first layer first) -> (B, N, N).

    Row i of the result says how much of token i's final representation flows from each input token.
    With `query` (B, k, N), weights over the final tokens (one-hot for a token's own row), only those k
    combinations of rows are computed (B, k, N), multiplying vectors from the last layer down:
    O(depth N^2) instead of O(depth N^3), which matters at 1370 tokens (DINOv2 at 518 px).
    """
    check_discard_ratio(discard_ratio)
    if not fused:
        raise VitdashError("rollout needs at least one layer")
    b, n, _ = fused[0].shape
    eye = torch.eye(n, dtype=torch.float64, device=fused[0].device)

    def residual(layer: torch.Tensor) -> torch.Tensor:
        a = discard_lowest(layer.double(), discard_ratio) + eye
        return a / a.sum(dim=-1, keepdim=True)

    if query is None:
        result = eye.expand(b, n, n).clone()
        for layer in fused:
            result = residual(layer) @ result
    else:
        result = query.double()
        for layer in reversed(fused):
            result = result @ residual(layer)
    return result.float()


def grad_weighted(attention: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """Chefer et al. head fusion: mean over heads of the positive part of grad * attention."""
    return (grad * attention).clamp(min=0).mean(dim=1)
