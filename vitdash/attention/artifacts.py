"""Patches that swamp an attention map, and whether they are the high-norm "artifact" tokens of large ViTs.

ViTs trained without register tokens repurpose a few low-information patch tokens as global scratch space:
their norms grow far above the other tokens' in the last blocks, and the class token attends to them
(Darcet, Oquab, Mairal & Bojanowski 2024, "Vision Transformers Need Registers"). In a rollout such tokens,
or any few patches that draw most of the attention, are 1-3 hot pixels on a flat image: min-max scaling
spends the whole colour range on them. They are found twice, independently:
- on the map: patches above HOT_FACTOR times the map's HOT_QUANTILE (a readable map has none: its peak is a
  region, not a pixel; on the shared DINOv2 at 518 px the top patch is 10-34x the 98th percentile, on the
  small MNIST models and the demo at most 3.2x);
- by token norm: patch tokens whose output norm in one of the last LAST_BLOCKS blocks exceeds NORM_RATIO
  times the median (Darcet et al.'s signature).
The default view saturates the hot patches (the colour range is set by the rest) and marks them.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from vitdash.errors import VitdashError

HOT_QUANTILE = 0.98
HOT_FACTOR = 4.0
NORM_RATIO = 3.0
LAST_BLOCKS = 4
TREATMENTS = ("saturate", "leave out", "show")


@dataclass
class Artifacts:
    """Hot patches of one map, high-norm tokens of the forward, as (row, column) on the patch grid."""

    hot: list[tuple[int, int]]
    share: float  # of the map's total in the hot patches
    peak_ratio: float  # top patch / the map's HOT_QUANTILE
    high_norm: list[tuple[int, int]] = field(default_factory=list)
    norm_ratio: float | None = None  # largest patch-token norm / median, over the last blocks

    @property
    def found(self) -> bool:
        return bool(self.hot or self.high_norm)

    @property
    def marked(self) -> list[tuple[int, int]]:
        return list(dict.fromkeys([*self.hot, *self.high_norm]))

    def describe(self) -> str:
        """What was found, in words ('' when the map has no outliers and no token stands out)."""
        parts = []
        if self.high_norm:
            parts.append(f"{len(self.high_norm)} high-norm token(s) in the last blocks (norm up to "
                         f"{self.norm_ratio:.1f}x the median): the artifact tokens of ViTs trained without registers "
                         "(Darcet et al. 2024, 'Vision Transformers Need Registers')")
        if self.hot:
            norms = ("" if self.high_norm or self.norm_ratio is None else
                     f"; their token norms are ordinary (at most {self.norm_ratio:.1f}x the median), so attention "
                     "itself concentrates there")
            parts.append(f"{len(self.hot)} patch(es) hold {self.share:.0%} of the map, the top one "
                         f"{self.peak_ratio:.0f}x the map's {HOT_QUANTILE:.0%} quantile{norms}")
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def hot_patches(values: np.ndarray) -> tuple[list[tuple[int, int]], float, float]:
    """(patches above HOT_FACTOR x the HOT_QUANTILE, their share of the total, top / quantile)."""
    v = np.asarray(values, dtype=np.float64)
    q = float(np.quantile(v, HOT_QUANTILE))
    if q <= 0:
        return [], 0.0, 0.0
    rows, cols = np.nonzero(v > HOT_FACTOR * q)
    order = np.argsort(-v[rows, cols])
    hot = [(int(rows[i]), int(cols[i])) for i in order]
    total = float(v.sum())
    share = float(sum(v[r, c] for r, c in hot) / total) if total > 0 else 0.0
    return hot, share, float(v.max() / q)


def high_norm_tokens(norms: np.ndarray) -> tuple[list[tuple[int, int]], float | None]:
    """Patch tokens whose norm exceeds NORM_RATIO x the median in any of the given blocks (blocks, h, w)."""
    n = np.asarray(norms, dtype=np.float64)
    if n.size == 0:
        return [], None
    ratio = (n / np.median(n.reshape(n.shape[0], -1), axis=1)[:, None, None]).max(axis=0)
    rows, cols = np.nonzero(ratio > NORM_RATIO)
    order = np.argsort(-ratio[rows, cols])
    return [(int(rows[i]), int(cols[i])) for i in order], float(ratio.max())


def find_artifacts(values: np.ndarray, norms: np.ndarray | None = None) -> Artifacts:
    hot, share, peak = hot_patches(values)
    high, ratio = high_norm_tokens(norms) if norms is not None else ([], None)
    return Artifacts(hot, share, peak, high, ratio)


def treat(values: np.ndarray, patches: list[tuple[int, int]], how: str = "saturate") -> np.ndarray:
    """The map with `patches` saturated (capped at the largest other value, so the colour range is the rest's),
    left out (set to the smallest other value), or shown as they are."""
    if how not in TREATMENTS:
        raise VitdashError(f"unknown treatment {how!r}; choose one of {', '.join(TREATMENTS)}")
    v = np.array(values, dtype=np.float64)
    if how == "show" or not patches:
        return v
    mask = np.zeros(v.shape, dtype=bool)
    for r, c in patches:
        mask[r, c] = True
    if mask.all():
        return v
    v[mask] = np.minimum(v[mask], v[~mask].max()) if how == "saturate" else v[~mask].min()
    return v
