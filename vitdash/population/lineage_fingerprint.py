"""A compact fingerprint per checkpoint, so a library of thousands is searched without reading its weights.

For each canonical tensor: its shape, mean, standard deviation and sum of squares, and the standardized values at
`SAMPLES` positions drawn by a generator seeded with the tensor's name and shape, so every checkpoint holding a
tensor of that name and shape is sampled at the same positions. The correlation of two fingerprints' samples
estimates the correlation of the whole tensors (to about 1/sqrt(SAMPLES) each, far less over a model's hundred
tensors), which is all a search needs to pick the few candidates the exact comparison then confirms. Computing one
reads each tensor once; it is stored in the history database under the checkpoint's content hash, so it is
computed once per content, and a fp16 re-save gets the same samples (they are kept in fp16, standardized).
"""
from __future__ import annotations

import json
import math
import struct
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from vitdash.errors import VitdashError
from vitdash.load.checkpoint import Checkpoint
from vitdash.population.lineage_claims import Claim, claims_of
from vitdash.population.lineage_null import column_seed, unit_axis
from vitdash.trained.roles import assign_roles

VERSION = 1  # bump when what a fingerprint holds changes: stored ones of another version are recomputed
SAMPLES = 64
# Below this fingerprint z an entry is not worth an exact comparison. Unrelated pairs stay under ~3 (the
# samples' null is a little wider than N(0, 1): see tests/test_lineage_calibration.py); relatives score 20+.
CANDIDATE_Z = 4.0


@dataclass
class TensorPrint:
    name: str
    shape: tuple[int, ...]
    dtype: str
    mean: float
    std: float
    sumsq: float
    samples: np.ndarray  # float16, standardized; empty for a tensor without a permutable unit axis or constant

    @property
    def key(self) -> tuple[str, tuple[int, ...]]:
        return self.name, self.shape


@dataclass
class Fingerprint:
    """What the search knows about one checkpoint's content (`sha256`), without its weights."""

    sha256: str
    name: str
    layout: str
    canonical: bool
    tensors: dict[str, TensorPrint]
    claims: list[Claim] = field(default_factory=list)
    seconds: float = 0.0  # what computing it took

    @property
    def dtypes(self) -> list[str]:
        return sorted({t.dtype for t in self.tensors.values()})

    def core(self) -> frozenset[tuple[str, tuple[int, ...]]]:
        return core({n: t.shape for n, t in self.tensors.items()})

    def to_bytes(self) -> bytes:
        header = {"version": VERSION, "sha256": self.sha256, "name": self.name, "layout": self.layout,
                  "canonical": self.canonical, "seconds": self.seconds,
                  "claims": [c.to_dict() for c in self.claims],
                  "tensors": [[t.name, list(t.shape), t.dtype, t.mean, t.std, t.sumsq, len(t.samples)]
                              for t in self.tensors.values()]}
        head = json.dumps(header, separators=(",", ":")).encode()
        body = b"".join(t.samples.astype(np.float16).tobytes() for t in self.tensors.values())
        return struct.pack("<I", len(head)) + head + body

    @classmethod
    def from_bytes(cls, blob: bytes) -> Fingerprint:
        (n,) = struct.unpack_from("<I", blob)
        header = json.loads(blob[4:4 + n])
        if header.get("version") != VERSION:
            raise VitdashError(f"fingerprint version {header.get('version')} is not {VERSION}")
        values = np.frombuffer(blob, dtype=np.float16, offset=4 + n)
        tensors, at = {}, 0
        for name, shape, dtype, mean, std, sumsq, count in header["tensors"]:
            tensors[name] = TensorPrint(name, tuple(shape), dtype, mean, std, sumsq, values[at:at + count])
            at += count
        return cls(header["sha256"], header["name"], header["layout"], header["canonical"], tensors,
                   [Claim(**c) for c in header["claims"]], header["seconds"])


def sample_positions(name: str, shape: tuple[int, ...], count: int = SAMPLES) -> np.ndarray:
    """The flat positions every checkpoint samples for a tensor of this name and shape (sorted)."""
    numel = math.prod(shape)
    if numel <= count:
        return np.arange(numel)
    rng = np.random.default_rng(column_seed(name, shape))
    return np.sort(rng.choice(numel, count, replace=False))


def _print(name: str, t: torch.Tensor, sampled: bool) -> TensorPrint:
    shape = tuple(t.shape)
    x = t.detach().reshape(-1)
    x64 = x.double() if x.is_floating_point() else x.to(torch.float64)
    mean = float(x64.mean()) if x64.numel() else 0.0
    std = float(x64.std(unbiased=False)) if x64.numel() else 0.0
    sumsq = float((x64 * x64).sum())
    samples = np.zeros(0, dtype=np.float16)
    if sampled and std > 0:
        picked = x64[torch.from_numpy(sample_positions(name, shape))]
        samples = ((picked - mean) / std).numpy().astype(np.float16)
    return TensorPrint(name, shape, str(t.dtype).removeprefix("torch."), mean, std, sumsq, samples)


def fingerprint(ckpt: Checkpoint) -> Fingerprint:
    """Read every tensor once and keep its summary and samples (see the module docstring)."""
    start = time.perf_counter()
    names = list(ckpt.tensors)
    if not names:
        raise VitdashError(f"{ckpt.name or ckpt.source} holds no tensors: nothing to fingerprint")
    roles = assign_roles(names, ckpt.tensors.shape, ckpt.canonical, ckpt.tensors.loader)
    tensors = {n: _print(n, ckpt.tensors[n], unit_axis(roles[n], ckpt.tensors.shape(n)) is not None) for n in names}
    return Fingerprint(ckpt.sha256, ckpt.name or ckpt.source, ckpt.layout, ckpt.canonical, tensors,
                       claims_of(ckpt), time.perf_counter() - start)


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


def _unit_rows(samples: np.ndarray) -> np.ndarray:
    """Samples centred and scaled to unit length per row, so a dot product is their Pearson correlation (a
    constant row stays zero and correlates with nothing)."""
    x = samples.astype(np.float32)
    x -= x.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


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


class FingerprintIndex:
    """Many fingerprints stacked per (tensor name, shape), so one query is scored against all of them with a
    matrix product per tensor (vectorized over the library)."""

    def __init__(self, prints: Sequence[Fingerprint]):
        self.prints = list(prints)
        self._cores = [fp.core() for fp in self.prints]
        rows: dict[tuple[str, tuple[int, ...]], tuple[list[int], list[np.ndarray]]] = {}
        for i, fp in enumerate(self.prints):
            for t in fp.tensors.values():
                if len(t.samples):
                    ids, vals = rows.setdefault(t.key, ([], []))
                    ids.append(i)
                    vals.append(t.samples)
        self._rows = {k: (np.asarray(ids), _unit_rows(np.stack(vals))) for k, (ids, vals) in rows.items()}

    def __len__(self) -> int:
        return len(self.prints)

    def search(self, query: Fingerprint) -> list[Match]:
        """One `Match` per indexed fingerprint, in index order."""
        n = len(self.prints)
        zsum, rsum, count = np.zeros(n), np.zeros(n), np.zeros(n)
        for t in query.tensors.values():
            found = self._rows.get(t.key)
            if found is None or not len(t.samples):
                continue
            ids, mat = found
            q = _unit_rows(t.samples[None])[0]
            r = np.clip(mat @ q, -1.0, 1.0)
            np.add.at(zsum, ids, r * math.sqrt(len(q)))
            np.add.at(rsum, ids, r)
            np.add.at(count, ids, 1)
        matches = []
        query_core = query.core()
        for i in range(n):
            ok, why = comparability(query_core, self._cores[i])
            k = int(count[i])
            matches.append(Match(k, float(zsum[i] / math.sqrt(k)) if k else None,
                                 float(rsum[i] / k) if k else None, ok, why))
        return matches
