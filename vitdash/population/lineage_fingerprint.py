"""A compact fingerprint per checkpoint, so a library of thousands is searched without reading its weights.

For each canonical tensor: its name, shape and dtype (the checkpoint's `TensorPlan`), and its values at `SAMPLES`
positions drawn by a generator seeded with the tensor's name and shape, so every checkpoint holding a tensor of
that name and shape is sampled at the same positions. The correlation of two fingerprints' samples estimates the
correlation of the whole tensors (to about 1/sqrt(SAMPLES) each, far less over a model's hundred tensors), which
is all a search needs to pick the few candidates the exact comparison then confirms. Computing one reads each
tensor once; it is stored in the history database under the checkpoint's content hash, so it is computed once per
content.

The samples are kept as one row per checkpoint and the plan once per architecture, so a search stacks the rows of
all checkpoints sharing a plan and scores a query against every one of them with a matrix product per tensor.
"""
from __future__ import annotations

import functools
import hashlib
import json
import math
import struct
import time
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import torch

from vitdash.errors import VitdashError
from vitdash.load.checkpoint import Checkpoint
from vitdash.population.lineage_claims import Claim, claims_of
from vitdash.population.lineage_null import column_seed, unit_axis
from vitdash.trained.roles import assign_roles

VERSION = 3  # bump when what a fingerprint holds changes: stored ones of another version are recomputed
SAMPLES = 64
# Below this fingerprint z an entry is not worth an exact comparison. Unrelated pairs stay under ~3 (the
# samples' null is close to N(0, 1): see tests/test_lineage_calibration.py); relatives score 20+.
CANDIDATE_Z = 4.0
_HEAD = struct.Struct("<III")  # lengths of the meta JSON, the plan JSON, and the samples (fp16 values)


@dataclass(frozen=True)
class TensorPlan:
    """The tensors of a checkpoint: (name, shape, dtype, number of samples kept) each, in row order."""

    tensors: tuple[tuple[str, tuple[int, ...], str, int], ...]

    @cached_property
    def id(self) -> str:
        return hashlib.sha256(self.to_json()).hexdigest()[:16]

    @cached_property
    def slices(self) -> dict[tuple[str, tuple[int, ...]], slice]:
        """(name, shape) -> where its samples lie in a row (tensors with samples only)."""
        out, at = {}, 0
        for name, shape, _, count in self.tensors:
            if count:
                out[(name, shape)] = slice(at, at + count)
            at += count
        return out

    @cached_property
    def core(self) -> frozenset[tuple[str, tuple[int, ...]]]:
        return core({name: shape for name, shape, _, _ in self.tensors})

    @cached_property
    def dtypes(self) -> list[str]:
        return sorted({dtype for _, _, dtype, _ in self.tensors})

    def to_json(self) -> bytes:
        return json.dumps([[n, list(s), d, c] for n, s, d, c in self.tensors], separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, text: bytes) -> TensorPlan:
        return cls(tuple((n, tuple(s), d, c) for n, s, d, c in json.loads(text)))


@dataclass
class Fingerprint:
    """What the search knows about one checkpoint's content (`sha256`), without its weights: its `plan` and one
    row of standardized samples (fp16) in the plan's order."""

    sha256: str
    name: str
    layout: str
    canonical: bool
    plan: TensorPlan
    samples: np.ndarray
    claims: list[Claim] = field(default_factory=list)
    seconds: float = 0.0  # what computing it took

    @property
    def dtypes(self) -> list[str]:
        return self.plan.dtypes

    def to_bytes(self) -> bytes:
        meta = json.dumps({"version": VERSION, "sha256": self.sha256, "name": self.name, "layout": self.layout,
                           "canonical": self.canonical, "seconds": self.seconds, "plan": self.plan.id,
                           "claims": [c.to_dict() for c in self.claims]}, separators=(",", ":")).encode()
        plan = self.plan.to_json()
        body = self.samples.astype(np.float16).tobytes()
        return _HEAD.pack(len(meta), len(plan), len(self.samples)) + meta + plan + body

    @classmethod
    def from_bytes(cls, blob: bytes, plans: dict[str, TensorPlan] | None = None) -> Fingerprint:
        """Parse a stored fingerprint; `plans` (id -> plan) saves parsing a plan already seen."""
        n_meta, n_plan, n_values = _HEAD.unpack_from(blob)
        meta = json.loads(blob[_HEAD.size:_HEAD.size + n_meta])
        if meta.get("version") != VERSION:
            raise VitdashError(f"fingerprint version {meta.get('version')} is not {VERSION}")
        plans = {} if plans is None else plans
        plan = plans.get(meta["plan"])
        if plan is None:
            start = _HEAD.size + n_meta
            plan = plans[meta["plan"]] = TensorPlan.from_json(blob[start:start + n_plan])
        samples = np.frombuffer(blob, dtype=np.float16, count=n_values, offset=_HEAD.size + n_meta + n_plan)
        return cls(meta["sha256"], meta["name"], meta["layout"], meta["canonical"], plan, samples,
                   [Claim(**c) for c in meta["claims"]], meta["seconds"])


@functools.lru_cache(maxsize=4096)
def sample_positions(name: str, shape: tuple[int, ...], count: int = SAMPLES) -> np.ndarray:
    """The flat positions every checkpoint samples for a tensor of this name and shape (sorted, distinct: a few
    fewer than `count` when draws repeat in a small tensor)."""
    numel = math.prod(shape)
    if numel <= count:
        return np.arange(numel)
    return np.unique(np.random.default_rng(column_seed(name, shape)).integers(0, numel, count))


def _samples(name: str, t: torch.Tensor) -> np.ndarray:
    """The samples, standardized by their own mean and spread (fp16 then holds any weight's scale); none for a
    tensor whose samples are all equal (a zero bias, a constant norm: nothing to correlate)."""
    picked = t.detach().reshape(-1)[torch.from_numpy(sample_positions(name, tuple(t.shape)))].double()
    spread = float(picked.std()) if picked.numel() > 1 else 0.0
    if spread == 0:
        return np.zeros(0, dtype=np.float16)
    return ((picked - picked.mean()) / spread).numpy().astype(np.float16)


def fingerprint(ckpt: Checkpoint) -> Fingerprint:
    """Read every tensor once and keep its samples (see the module docstring)."""
    start = time.perf_counter()
    names = list(ckpt.tensors)
    if not names:
        raise VitdashError(f"{ckpt.name or ckpt.source} holds no tensors: nothing to fingerprint")
    roles = assign_roles(names, ckpt.tensors.shape, ckpt.canonical, ckpt.tensors.loader)
    plan, rows = [], []
    for n in names:
        shape = ckpt.tensors.shape(n)
        kept = _samples(n, ckpt.tensors[n]) if unit_axis(roles[n], shape) is not None else np.zeros(0, np.float16)
        plan.append((n, tuple(shape), str(ckpt.tensors.info(n).dtype).removeprefix("torch."), len(kept)))
        rows.append(kept)
    return Fingerprint(ckpt.sha256, ckpt.name or ckpt.source, ckpt.layout, ckpt.canonical, TensorPlan(tuple(plan)),
                       np.concatenate(rows), claims_of(ckpt), time.perf_counter() - start)


@dataclass
class Match:
    """How one library fingerprint compares with the query's, from the samples alone."""

    shared: int  # sampled tensors held by both with the same name and shape
    z: float | None  # combined z of the sample correlations (None when nothing is shared)
    mean_r: float | None
    comparable: bool
    reason: str = ""

    @property
    def candidate(self) -> bool:
        return self.comparable and self.z is not None and self.z >= CANDIDATE_Z

    def to_dict(self) -> dict[str, Any]:
        return {"shared": self.shared, "z": self.z, "mean_r": self.mean_r, "comparable": self.comparable,
                "reason": self.reason}


def core(shapes: Mapping[str, tuple[int, ...]]) -> frozenset[tuple[str, tuple[int, ...]]]:
    """(name, shape) of the matrices and tokens: what two checkpoints of one architecture share."""
    return frozenset((n, tuple(s)) for n, s in shapes.items() if len(s) >= 2)


def comparability(core_a: frozenset, core_b: frozenset) -> tuple[bool, str]:
    """Whether two checkpoints (their `core`s) share an architecture closely enough to compare (blocks dropped,
    a new head or a resampled position embedding still do), and why not."""
    shared = len(core_a & core_b)
    smaller = min(len(core_a), len(core_b))
    if shared and shared * 2 >= smaller:
        return True, ""
    width_a, width_b = _width(core_a), _width(core_b)
    what = f" (width {width_a} vs {width_b})" if width_a != width_b else ""
    return False, f"different architecture: {shared} of {smaller} matrices and tokens share a name and shape{what}"


def _width(core_: frozenset) -> int | None:
    """The most common last dimension of the matrices and tokens: a transformer's residual width."""
    widths = Counter(s[-1] for _, s in core_)
    return widths.most_common(1)[0][0] if widths else None


def _unit_segments(rows: np.ndarray, plan: TensorPlan) -> np.ndarray:
    """Each tensor's samples centred and scaled to unit length, per row, so a dot product of two segments is the
    Pearson correlation of those samples (a constant segment stays zero and correlates with nothing)."""
    x = rows.astype(np.float32)
    for sl in plan.slices.values():
        seg = x[:, sl]
        seg -= seg.mean(axis=1, keepdims=True)
        norms = np.linalg.norm(seg, axis=1, keepdims=True)
        np.divide(seg, norms, out=seg, where=norms > 0)
        seg[(norms == 0)[:, 0]] = 0.0
    return x


class FingerprintIndex:
    """Many fingerprints, their sample rows stacked per plan (architecture), so one query is scored against all
    of them with one matrix product per tensor (vectorized over the library)."""

    def __init__(self, prints: Sequence[Fingerprint]):
        self.prints = list(prints)
        by_plan: dict[str, list[int]] = defaultdict(list)
        for i, fp in enumerate(self.prints):
            by_plan[fp.plan.id].append(i)
        self._groups = []  # (plan, entry ids, unit rows)
        for ids in by_plan.values():
            plan = self.prints[ids[0]].plan
            rows = np.stack([self.prints[i].samples for i in ids]) if plan.slices else np.zeros((len(ids), 0))
            self._groups.append((plan, np.asarray(ids), _unit_segments(rows, plan)))

    def __len__(self) -> int:
        return len(self.prints)

    def search(self, query: Fingerprint) -> list[Match]:
        """One `Match` per indexed fingerprint, in index order."""
        n = len(self.prints)
        zsum, rsum, count = np.zeros(n), np.zeros(n), np.zeros(n)
        q = _unit_segments(query.samples[None], query.plan)[0]
        ok, why = np.zeros(n, dtype=bool), [""] * n
        for plan, ids, rows in self._groups:
            fits, reason = comparability(query.plan.core, plan.core)
            ok[ids] = fits
            for i in ids:
                why[i] = reason
            for key, qs in query.plan.slices.items():
                sl = plan.slices.get(key)
                if sl is None or sl.stop - sl.start != qs.stop - qs.start:
                    continue
                r = np.clip(rows[:, sl] @ q[qs], -1.0, 1.0)
                zsum[ids] += r * math.sqrt(qs.stop - qs.start)
                rsum[ids] += r
                count[ids] += 1
        return [Match(int(count[i]), float(zsum[i] / math.sqrt(count[i])) if count[i] else None,
                      float(rsum[i] / count[i]) if count[i] else None, bool(ok[i]), why[i]) for i in range(n)]
