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
from vitdash.trained.roles import TensorRole, assign_roles
from vitdash.trained.verdict import tensors_fits

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
    fit: PriorFit | None  # the best prior (matching or not); None when no prior applies

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


def _roles(ckpt: Checkpoint) -> dict[str, TensorRole]:
    store = ckpt.tensors
    names = [n for n in store if store.info(n).dtype.is_floating_point and store.info(n).numel > 0]
    return assign_roles(names, store.shape, ckpt.canonical, store.loader)


def layer_slots(ckpt: Checkpoint) -> list[str]:
    """The slots found in at least two blocks, weight matrices first, in natural order."""
    seen: dict[str, set[int]] = {}
    matrix: dict[str, bool] = {}
    for r in _roles(ckpt).values():
        if r.block is not None:
            seen.setdefault(r.slot, set()).add(r.block)
            matrix[r.slot] = len(ckpt.tensors.shape(r.name)) >= 2
    return sorted((s for s, blocks in seen.items() if len(blocks) >= 2),
                  key=lambda s: (not matrix[s], natural_key(s)))


def _members(ckpt: Checkpoint, slot: str) -> list[TensorRole]:
    found = sorted((r for r in _roles(ckpt).values() if r.block is not None and r.slot == slot),
                   key=lambda r: r.block)
    if not found:
        raise VitdashError(f"no block of {ckpt.name or ckpt.source} holds a tensor {slot!r}")
    return found


def _range(tensors: list[torch.Tensor], tails: bool) -> tuple[float, float]:
    lo, hi = math.inf, -math.inf
    for t in tensors:
        if tails:
            lo, hi = min(lo, float(t.min())), max(hi, float(t.max()))
        else:
            sample = random_entries(t.detach().float(), MOMENTS_SAMPLE).double()
            q = torch.quantile(sample, torch.tensor([TAIL_QUANTILE, 1 - TAIL_QUANTILE], dtype=torch.float64))
            lo, hi = min(lo, float(q[0])), max(hi, float(q[1]))
    if lo == hi:
        lo, hi = lo - 0.5 * max(abs(lo), 1e-6), hi + 0.5 * max(abs(hi), 1e-6)
    pad = 0.05 * (hi - lo)
    return lo - pad, hi + pad


def layer_histograms(ckpt: Checkpoint, slot: str, *, edges: np.ndarray | None = None, tails: bool = False,
                     bins: int | None = None, seed: int = 0) -> LayerHistograms:
    """Histograms of `slot` in every block on shared bins (`edges` from another checkpoint to overlay it),
    with each tensor's best prior. `tails`: the range spans every entry (for a log-density view)."""
    members = _members(ckpt, slot)
    tensors = [ckpt.tensors[r.name].detach().float().reshape(-1) for r in members]
    if edges is None:
        lo, hi = _range(tensors, tails)
        edges = np.linspace(lo, hi, (bins or (TAIL_BINS if tails else BINS)) + 1)
    lo, hi = float(edges[0]), float(edges[-1])
    width = np.diff(edges)
    fits = tensors_fits(ckpt, [r.name for r in members], seed)
    layers = []
    for r, t in zip(members, tensors):
        counts = np.histogram(t.numpy(), bins=edges)[0].astype(np.float64)
        inside = int(counts.sum())
        layers.append(LayerHistogram(r.name, int(r.block), counts / max(t.numel(), 1) / width,
                                     t.numel() - inside, t.numel(), (fits[r.name] or [None])[0]))
    notes = []
    cut = sum(h.outside for h in layers)
    if cut:
        notes.append(f"{cut:,} of {sum(h.numel for h in layers):,} entries lie outside [{lo:.3g}, {hi:.3g}] "
                     "(the log-density view spans them all)")
    return LayerHistograms(slot, members[0].role, np.asarray(edges, dtype=np.float64), layers, tails, notes)
