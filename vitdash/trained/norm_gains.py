"""Norm gains across layers: trained ones share a channel pattern, an init or i.i.d. noise does not.

Every scheme starts a LayerNorm gain at exactly 1. Training moves the gains of all layers through the same residual
stream, so the channels it amplifies in one layer it tends to amplify (or damp) in others: the deviations g - 1 of
different layers correlate channel by channel. Noise added to the gains, or a shuffle of each vector, leaves no
such correlation. The statistic is the mean |correlation| between the layers' deviations, as a z-score against
the same vectors with their channels permuted independently. It shows training in small models whose matrices are
too small for their spectra to (a homegrown CLIP trained on digits: z near 7, its noisy init near 0).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from vitdash.common.results import jsonable
from vitdash.trained.moments import z_score

GAIN_PERMUTATIONS = 200
MIN_LAYERS = 3


@dataclass
class GainStructure:
    layers: int
    width: int
    mean_abs_corr: float
    null_mean: float
    null_sd: float
    z: float

    def to_dict(self) -> dict[str, Any]:
        return {k: jsonable(v) for k, v in self.__dict__.items()}


def _mean_abs_corr(g: torch.Tensor) -> torch.Tensor:
    """g: (perms, layers, width) -> mean |correlation| between distinct layers, per perm."""
    g = g - g.mean(-1, keepdim=True)
    g = g / g.norm(dim=-1, keepdim=True).clamp_min(1e-30)
    c = g @ g.transpose(-1, -2)
    n = g.shape[-2]
    return (c.abs().sum((-1, -2)) - c.diagonal(dim1=-2, dim2=-1).abs().sum(-1)) / (n * (n - 1))


def gain_structure(gains: list[torch.Tensor], seed: int = 0) -> GainStructure | None:
    """The layers' gain vectors (all of one width, none constant); None with fewer than MIN_LAYERS."""
    if len(gains) < MIN_LAYERS:
        return None
    g = torch.stack([t.detach().double().reshape(-1) - 1.0 for t in gains])
    layers, width = g.shape
    if width < 8:
        return None
    gen = torch.Generator().manual_seed(seed)
    perms = torch.argsort(torch.rand(GAIN_PERMUTATIONS, layers, width, generator=gen), dim=-1)
    null = _mean_abs_corr(torch.gather(g.expand(GAIN_PERMUTATIONS, -1, -1), -1, perms))
    observed = float(_mean_abs_corr(g[None])[0])
    return GainStructure(layers, width, observed, float(null.mean()), float(null.std()), z_score(observed, null))
