"""Entry statistics of a tensor (moments on a seeded sample, histograms, distances from init constants),
and the z-score against a permutation null that the structure tests share."""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import torch

from vitdash.common.results import jsonable

MOMENTS_SAMPLE = 1 << 15  # tensors larger than this are described by a random sample of this size


@dataclass
class Moments:
    """`sampled`: how many entries the statistics come from (all, or a random sample for big
    tensors); `constant` always covers every entry."""

    numel: int
    sampled: int
    mean: float
    std: float
    excess_kurtosis: float
    min: float
    max: float
    abs_max: float
    frac_zero: float
    constant: bool

    def to_dict(self) -> dict[str, Any]:
        return {k: jsonable(v) for k, v in self.__dict__.items()}


SAMPLE_CHUNK = 4096


def random_entries(t: torch.Tensor, n: int, seed: int = 0) -> torch.Tensor:
    """A seeded sample of about n entries: all entries when there are fewer, else n / SAMPLE_CHUNK runs
    of SAMPLE_CHUNK consecutive entries, drawn from the tensor's aligned runs. Runs (a few rows of a
    weight matrix each) keep memory access sequential: a memory-mapped file is paged in only where
    the sample lies, one page fault per run instead of one per entry, and picking rows of a
    (runs, SAMPLE_CHUNK) view is one block copy per run."""
    flat = t.detach().reshape(-1)
    if flat.numel() <= n:
        return flat
    runs = flat[:flat.numel() - flat.numel() % SAMPLE_CHUNK].view(-1, SAMPLE_CHUNK)
    return runs.index_select(0, sample_runs(runs.shape[0], max(1, n // SAMPLE_CHUNK), seed)).reshape(-1)


@lru_cache(maxsize=64)
def sample_runs(runs: int, count: int, seed: int) -> torch.Tensor:
    """`count` seeded draws among `runs` runs, cached: a ViT samples many tensors of the same size."""
    return torch.randint(runs, (count,), generator=torch.Generator().manual_seed(seed))


def moments(t: torch.Tensor, sample: torch.Tensor | None = None, seed: int = 0) -> Moments:
    """Summary statistics of a tensor, from `sample` (default: `random_entries(t, MOMENTS_SAMPLE)`).

    Tensors up to MOMENTS_SAMPLE entries are read whole. Bigger ones are described by the sample
    (`sampled` says how many entries), min and max included; `constant` is still exact: a sample that
    holds two values proves the tensor is not constant, and a constant-looking sample is checked on
    every entry.
    """
    if t.numel() == 0:
        return Moments(0, 0, math.nan, math.nan, math.nan, math.nan, math.nan, math.nan, math.nan, True)
    x = random_entries(t, MOMENTS_SAMPLE, seed) if sample is None else sample
    return moments_many([t], x[None])[0]


def moments_many(ts: list[torch.Tensor], samples: torch.Tensor) -> list[Moments]:
    """`moments` of non-empty tensors from their samples stacked as rows (B, k): each statistic is one
    op for a whole group of same-sized tensors (a ViT's blocks repeat every shape), where per-tensor
    calls would be mostly per-op overhead."""
    k = samples.shape[-1]
    # float64 where it is cheap; big stacks in float32 (torch's sums are pairwise, accurate enough),
    # with two temporaries at most: fresh memory is paid for in page faults.
    x = samples.detach().double() if samples.numel() <= 1 << 18 else samples.detach().float()
    lo, hi = x.amin(-1), x.amax(-1)  # (aminmax and count_nonzero along a dim are ~10x slower)
    zeros = x.eq(0).sum(-1, dtype=torch.int32)
    mean = x.mean(-1, keepdim=True)
    d2 = (x - mean).square_()
    var = d2.mean(-1)
    m4 = d2.square_().mean(-1)
    out = []
    for t, lo_, hi_, mu, v, q, nz in zip(ts, lo.tolist(), hi.tolist(), mean[:, 0].tolist(), var.tolist(),
                                          m4.tolist(), zeros.tolist()):
        n = t.numel()
        if lo_ == hi_ and k < n:
            flat = t.detach().reshape(-1)
            lo_, hi_ = (float(e) for e in torch.aminmax(flat if flat.dtype.itemsize >= 4 else flat.float()))
        kurt = q / (v * v) - 3.0 if v > 0 else math.nan
        out.append(Moments(n, k, mu, math.sqrt(v), kurt, lo_, hi_, max(abs(lo_), abs(hi_)), nz / k,
                           lo_ == hi_))
    return out


def z_score(observed: float, null: torch.Tensor) -> float:
    return (observed - float(null.mean())) / max(float(null.std()), 1e-9)


def distances_from_constants(ts: torch.Tensor, constants: list[float]) -> list[dict[str, float]]:
    """How far norm gains / biases / LayerScale gammas sit from an init constant each: same-sized
    tensors stacked along the first dim, read together."""
    x = ts.detach().double().reshape(len(constants), -1)
    d = (x - torch.tensor(constants, dtype=torch.float64)[:, None]).abs_()
    spread = (x.std(-1) / x.mean(-1).abs().clamp_min(1e-12)).tolist() if x.shape[1] > 1 else [0.0] * len(constants)
    return [{"constant": c, "mean_abs_diff": m, "max_abs_diff": top, "rel_spread": r}
            for c, m, top, r in zip(constants, d.mean(-1).tolist(), d.amax(-1).tolist(), spread)]


def histogram(t: torch.Tensor, bins: int = 80) -> tuple[np.ndarray, np.ndarray]:
    """Density histogram (counts normalized to a pdf) and bin edges, for plotting against priors."""
    x = t.detach().float().reshape(-1)
    lo, hi = float(x.min()), float(x.max())
    if lo == hi:
        lo, hi = lo - 0.5 * max(abs(lo), 1e-6), hi + 0.5 * max(abs(hi), 1e-6)
    counts = torch.histc(x, bins=bins, min=lo, max=hi).double()
    edges = np.linspace(lo, hi, bins + 1)
    width = (hi - lo) / bins
    return (counts / max(float(counts.sum()), 1.0) / width).numpy(), edges
