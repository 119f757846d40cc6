"""Patch-embedding filters: correlation of neighbouring pixels, as a z-score against the same filters with
their pixels shuffled. Trained filters are smooth (edges, colour blobs); an i.i.d. init is not."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from vitdash.common.compute import one_thread
from vitdash.common.results import jsonable
from vitdash.trained.moments import z_score


@dataclass
class FilterStructure:
    """Neighbouring-pixel correlation of the patch filters (per channel plane), against shuffled pixels."""

    kernel: tuple[int, int]
    channels: int
    smoothness: float
    null_mean: float
    null_sd: float
    z: float

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else jsonable(v)) for k, v in self.__dict__.items()}


FILTER_PERMUTATIONS = 8


FILTER_MAX = 128  # filters used (a random subset beyond): smoothness shows in any hundred of them


def _neighbour_corr(w: torch.Tensor) -> torch.Tensor:
    """w: (..., C, kh, kw, D), filters centred, filter index last (so that shifting a pixel moves
    whole contiguous rows). Mean product of horizontal and vertical neighbours over the mean square:
    the lag-1 autocorrelation of the filters, 0 for i.i.d. pixels."""
    h = (w[..., :, 1:, :] * w[..., :, :-1, :]).sum((-1, -2, -3, -4))
    v = (w[..., 1:, :, :] * w[..., :-1, :, :]).sum((-1, -2, -3, -4))
    c, kh, kw, d = w.shape[-4:]
    pairs = d * c * (kh * (kw - 1) + (kh - 1) * kw)
    sq = (w * w).sum((-1, -2, -3, -4)) / (d * c * kh * kw)
    return (h + v) / pairs / sq.clamp_min(1e-30)


@one_thread()
def filter_structure(weight: torch.Tensor, seed: int = 0) -> FilterStructure | None:
    """weight: (D, C, kh, kw) conv patch embedding. None for 1x1 kernels (no neighbours)."""
    if weight.ndim != 4 or weight.shape[-1] * weight.shape[-2] < 4:
        return None
    w = weight.detach()
    if w.shape[0] > FILTER_MAX:
        g = torch.Generator().manual_seed(seed + 29)
        w = w.index_select(0, torch.randperm(w.shape[0], generator=g)[:FILTER_MAX])
    w = w.float()  # (torch's sums are pairwise: float32 is accurate enough)
    w = w - w.mean(dim=(1, 2, 3), keepdim=True)
    if float((w * w).sum()) == 0:
        return None
    d, c, kh, kw = w.shape
    pixels = w.reshape(d, -1).T.contiguous()  # (C * kh * kw, D)
    observed = float(_neighbour_corr(pixels.view(c, kh, kw, d)))
    g = torch.Generator().manual_seed(seed)
    # The same pixel shuffle for every filter (enough to break space), one buffer for all shuffles.
    shuffled = torch.empty_like(pixels)
    null = torch.stack([_neighbour_corr(torch.index_select(pixels, 0, torch.randperm(c * kh * kw, generator=g),
                                                           out=shuffled).view(c, kh, kw, d))
                        for _ in range(FILTER_PERMUTATIONS)])
    return FilterStructure((kh, kw), c, observed, float(null.mean()), float(null.std()), z_score(observed, null))
