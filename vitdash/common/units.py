"""Counts written with SI prefixes, so a 10 k-parameter MNIST ViT and a 1 B-parameter giant both fit a narrow
metric box without losing their digits."""
from __future__ import annotations

_PREFIXES = ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"))


def si(value: float, digits: int = 3) -> str:
    """`value` to `digits` significant figures with an SI prefix: 86_567_656 -> '86.6 M', 173_000 -> '173 k'."""
    for scale, prefix in _PREFIXES:
        if abs(value) >= scale:
            return f"{value / scale:.{digits}g} {prefix}"
    return f"{value:.{digits}g}"
