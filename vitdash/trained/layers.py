"""Per-layer weight histograms against the init priors: one role (qkv, fc1, norm1, ...) in every block, top to
bottom by depth, each with its best prior's density and the distances the verdict reads (KS, std ratio).

Training shows as depth-dependent change: the first blocks of a fine-tuned model keep their prior's shape while
the last ones grow heavy tails, and a block left at init stands out as the one histogram its prior still covers.
All layers share one set of bins, so shapes compare across depth and across two checkpoints (pass the first
one's `edges` to the second).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from vitdash.common.ordering import natural_key
from vitdash.errors import VitdashError
from vitdash.load.checkpoint import Checkpoint
from vitdash.trained.moments import MOMENTS_SAMPLE, random_entries
from vitdash.trained.priors import PriorFit
from vitdash.trained.verdict import Audit

# Without `tails`, the shared range is the widest 0.1%-99.9% span of any layer: a few outliers (DINOv2 has
# entries 50 std out) would otherwise squash every histogram into one bin; the log-density view shows them.
TAIL_QUANTILE = 0.001
BINS = 60
TAIL_BINS = 160  # the tails view spans every entry: finer bins keep the bulk from collapsing into a few


@dataclass
class LayerHistogram:
    """One block's tensor: density on the shared bins, its best prior and how far it is from it."""

    name: str
    block: int
    density: np.ndarray
    outside: int  # entries beyond the shared range (not in `density`)
    numel: int
    fit: PriorFit | None  # the best prior the audit found (matching or not); None when no prior applies

    @property
    def ks(self) -> float | None:
        return None if self.fit is None else self.fit.ks

    @property
    def std_ratio(self) -> float | None:
        return None if self.fit is None or math.isnan(self.fit.std_ratio) else self.fit.std_ratio

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "block": self.block, "density": self.density.tolist(), "outside": self.outside,
                "numel": self.numel, "best_prior": None if self.fit is None else self.fit.to_dict()}


@dataclass
class LayerHistograms:
    """Every block's histogram of one slot ('attn.qkv.weight'), block 0 first."""

    slot: str
    role: str
    edges: np.ndarray
    layers: list[LayerHistogram]
    tails: bool
    notes: list[str] = field(default_factory=list)

    @property
    def centers(self) -> np.ndarray:
        return (self.edges[:-1] + self.edges[1:]) / 2

    def block(self, index: int) -> LayerHistogram | None:
        return next((h for h in self.layers if h.block == index), None)

    def to_dict(self) -> dict[str, Any]:
        return {"slot": self.slot, "role": self.role, "edges": self.edges.tolist(), "tails": self.tails,
                "notes": list(self.notes), "layers": [h.to_dict() for h in self.layers]}


def layer_slots(audit: Audit) -> list[str]:
    """The slots found in at least two blocks, weight matrices first, in natural order."""
    blocks: dict[str, set[int]] = {}
    matrix: dict[str, bool] = {}
    for t in audit.tensors:
        if t.block is not None:
            blocks.setdefault(t.slot, set()).add(t.block)
            matrix[t.slot] = len(t.shape) >= 2
    return sorted((s for s, b in blocks.items() if len(b) >= 2), key=lambda s: (not matrix[s], natural_key(s)))


def _range(tensors: list[torch.Tensor], tails: bool) -> tuple[float, float]:
    lo, hi = math.inf, -math.inf
    for t in tensors:
        if tails:
            lo, hi = min(lo, float(t.min())), max(hi, float(t.max()))
        else:
            sample = random_entries(t, MOMENTS_SAMPLE).double()
            q = torch.quantile(sample, torch.tensor([TAIL_QUANTILE, 1 - TAIL_QUANTILE], dtype=torch.float64))
            lo, hi = min(lo, float(q[0])), max(hi, float(q[1]))
    if lo == hi:
        lo, hi = lo - 0.5 * max(abs(lo), 1e-6), hi + 0.5 * max(abs(hi), 1e-6)
    pad = 0.05 * (hi - lo)
    return lo - pad, hi + pad


def layer_histograms(ckpt: Checkpoint, audit: Audit, slot: str, *, edges: np.ndarray | None = None,
                     tails: bool = False, bins: int | None = None) -> LayerHistograms:
    """Histograms of `slot` in every block on shared bins (`edges` from another checkpoint to overlay it), each
    with the best prior and distances its audit found. `tails`: the range spans every entry (for log density)."""
    members = sorted((t for t in audit.tensors if t.block is not None and t.slot == slot), key=lambda t: t.block)
    if not members:
        raise VitdashError(f"no block of {ckpt.name or ckpt.source} holds a tensor {slot!r}")
    tensors = [ckpt.tensors[t.name].detach().float().reshape(-1) for t in members]
    if edges is None:
        lo, hi = _range(tensors, tails)
        edges = np.linspace(lo, hi, (bins or (TAIL_BINS if tails else BINS)) + 1)
    lo, hi = float(edges[0]), float(edges[-1])
    width = np.diff(edges)
    layers = []
    for r, t in zip(members, tensors):
        counts = np.histogram(t.numpy(), bins=edges)[0].astype(np.float64)
        layers.append(LayerHistogram(r.name, int(r.block), counts / max(t.numel(), 1) / width,
                                     t.numel() - int(counts.sum()), t.numel(), r.stats.best_fit))
    notes = []
    cut = sum(h.outside for h in layers)
    if cut:
        notes.append(f"{cut:,} of {sum(h.numel for h in layers):,} entries lie outside [{lo:.3g}, {hi:.3g}] "
                     "(the log-density view spans them all)")
    return LayerHistograms(slot, members[0].role, np.asarray(edges, dtype=np.float64), layers, tails, notes)
