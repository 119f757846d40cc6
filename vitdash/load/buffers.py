"""Deterministic tables stored beside the weights: sin-cos position tables, attention masks, constant and
index tables.

They are computed by code, not learned, so they say nothing about training: a model at PyTorch's init with
a sin-cos table would otherwise read as trained ("position similarity follows the grid"). State dicts do
not say which tensors are buffers, so they are recognized by their values: every column of a sin-cos table
is a sinusoid of the position (1-D) or of one grid axis (2-D), which no learned or random table is; a mask
holds two values in a triangle; a constant table one value; an index table integers.
"""
from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from typing import Any

import torch

KINDS = ("sincos", "mask", "constant", "lookup")

# A sinusoid table has values in [-sqrt(2), sqrt(2)] (sin + cos variants reach sqrt(2)).
_SINCOS_MAX = 1.5
_MIN_ROWS = 6  # at least 4 recurrence equations per column, so that random columns cannot fit
_MAX_PREFIX = 4  # rows before the table proper (a class token's zero row)
_TOL = 1e-3
# Parameters that legitimately start as one constant (zeros/ones at init) are not tables.
_PARAM_NAME = re.compile(r"(weight|bias|gamma|beta|token|pos|emb|latent|scale|lambda|proj|query|cls)", re.I)
_MASK_NAME = re.compile(r"(mask|tril|triu|causal|bias)", re.I)


@dataclass(frozen=True)
class Buffer:
    name: str
    kind: str  # one of KINDS

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _as_table(t: torch.Tensor) -> torch.Tensor | None:
    """(rows, columns) with singleton axes dropped: (1, L, D), (L, 1, D) and (L, D) all read as (L, D)."""
    shape = [d for d in t.shape if d != 1]
    if len(shape) != 2:
        return None
    return t.reshape(shape).double()


def _sinusoid_residual(v: torch.Tensor) -> torch.Tensor:
    """Per column of `v` (n, c), how far it is from a sinusoid of the row index: every sinusoid satisfies
    v[r+1] + v[r-1] = 2 cos(w) v[r]; the coefficient is fitted by least squares and the residual returned,
    relative to the column's size (0 for an exact sinusoid, including constant columns)."""
    mid, ends = v[1:-1], v[2:] + v[:-2]
    a = (ends * mid).sum(0) / (mid * mid).sum(0).clamp_min(1e-30)
    res = (ends - a * mid).norm(dim=0)
    return res / v.norm(dim=0).clamp_min(1e-12)


def _fits(res: torch.Tensor) -> bool:
    return bool((res <= _TOL).float().mean() >= 0.95)


def is_sincos(t: torch.Tensor) -> bool:
    """A table whose columns are sinusoids of the position (Vaswani, TranAD) or of one axis of a square grid
    (MAE, MoCo v3, SimpleViT), after up to a few prefix rows (a class token's)."""
    table = _as_table(t) if t.is_floating_point() and t.device.type != "meta" else None
    if table is None or table.shape[0] < _MIN_ROWS or table.shape[1] < 2:
        return False
    if not bool(torch.isfinite(table).all()) or float(table.abs().max()) > _SINCOS_MAX:
        return False
    if float(table.abs().amax(0).median()) < 0.5:  # a sinusoid table swings through +-1 in most columns
        return False
    for prefix in range(0, min(_MAX_PREFIX, table.shape[0] - _MIN_ROWS) + 1):
        rows = table[prefix:]
        if _fits(_sinusoid_residual(rows)):
            return True
        side = math.isqrt(rows.shape[0])
        if side >= 3 and side * side == rows.shape[0]:
            grid = rows.reshape(side, side, -1)
            along_x = _sinusoid_residual(grid.transpose(0, 1).reshape(side, -1)).reshape(side, -1)
            along_y = _sinusoid_residual(grid.reshape(side, -1)).reshape(side, -1)
            flat_y = (grid - grid[:1]).abs().amax((0, 1)) <= _TOL  # constant down the rows
            flat_x = (grid - grid[:, :1]).abs().amax((0, 1)) <= _TOL
            per_column = ((along_x.amax(0) <= _TOL) & flat_y) | ((along_y.amax(0) <= _TOL) & flat_x)
            if bool(per_column.float().mean() >= 0.95):
                return True
    return False


def is_mask(t: torch.Tensor) -> bool:
    """An attention mask: bool, or two values (0/1, 0/-inf, 0/-1e4...) split along the diagonal."""
    if t.ndim < 2 or t.shape[-1] != t.shape[-2] or t.shape[-1] < 2:
        return False
    if t.dtype == torch.bool:
        return True
    if not t.is_floating_point():
        return False
    values = torch.unique(t)
    if values.numel() != 2:
        return False
    m = t.reshape(-1, t.shape[-2], t.shape[-1])[0]
    high = m == values.max()
    tri = torch.ones_like(high).tril()
    return bool((high == tri).all() or (high == tri.T).all() or (~high == tri).all() or (~high == tri.T).all()
                or (high == tri.tril(-1)).all() or (high == tri.triu(1)).all())


def classify(name: str, t: torch.Tensor) -> str | None:
    """The kind of deterministic table `t` is (one of KINDS), or None for anything that may be learned."""
    if t.numel() == 0 or t.ndim == 0 or t.device.type == "meta":
        return None  # (counters such as BatchNorm's num_batches_tracked are no table)
    if t.dtype == torch.bool:
        return "mask"
    if not t.is_floating_point() and not t.is_complex():
        return "lookup"  # integer index tables (relative position indices, ...)
    if is_mask(t):
        return "mask"
    if is_sincos(t):
        return "sincos"
    if t.ndim >= 2 and not _PARAM_NAME.search(name.rsplit(".", 1)[-1]) and bool((t == t.reshape(-1)[0]).all()):
        return "constant"
    return None


def _candidate(name: str, shape: tuple[int, ...], dtype: torch.dtype) -> bool:
    """Whether a tensor can be a table at all, judged without reading it (weights are not read)."""
    if len(shape) == 0 or math.prod(shape) == 0:
        return False
    if not dtype.is_floating_point:
        return True
    last = name.rsplit(".", 1)[-1]
    if last in ("weight", "bias", "in_proj_weight", "in_proj_bias") and not _MASK_NAME.search(name):
        return False
    return len(shape) >= 2


def find_buffers(store: Any) -> list[Buffer]:
    """Every deterministic table in a tensor set (a `TensorStore`), in the set's order."""
    out = []
    for name in store:
        info = store.info(name)
        if _candidate(name, info.shape, info.dtype):
            kind = classify(name, store[name])
            if kind is not None:
                out.append(Buffer(name, kind))
    return out
