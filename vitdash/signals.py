"""Training signals that need no prior: structure an i.i.d. initialization cannot have.

- Spectra: eigenvalues of the smaller Gram matrix (W W^T or W^T W: the squared singular values)
  against the Marchenko-Pastur law for the matrix's shape and variance and against a shuffled twin
  (the same entries in random positions: same histogram, no structure). The decision is made on the
  matrix's normal scores (every entry replaced by the Gaussian quantile of its rank): an i.i.d.
  matrix, whatever its entry distribution (any scale, heavy tails, uniform, sparse), then has exactly
  Gaussian i.i.d. entries and its top eigenvalue sits at the MP edge within Tracy-Widom fluctuations,
  while training leaves outliers above it. An orthogonal init sits below the edge (flat spectrum).
- Position embeddings: how strongly cosine similarity follows the patch grid, as z-scores against
  random re-placements of the same embeddings on the grid.
- Patch-embedding filters: correlation of neighbouring pixels, as a z-score against the same filters
  with their pixels shuffled.
Everything is seeded, so the same checkpoint always reads the same.

Cost: matrices wider than EXACT_MAX_DIM on both sides are tested on a random sub-block of at most
SPECTRAL_MAX_SIDE per side (a sub-block of an i.i.d. matrix is i.i.d., so the null is exact; training
structure shows in any large block: DINOv2-S's weakest matrix still reads z=18 on 384x384), with
the top eigenvalues from a bfloat16 block Krylov method; moments of big tensors come from a random
sample. The page computes exact full spectra of any single tensor on demand.
"""
from __future__ import annotations

import math
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import torch

# (Sub-)matrices whose smaller side is at most this get exact full spectra (Gram + symmetric solver),
# larger ones the top eigenvalues from a block Krylov method: a few thin products instead of a Gram
# and a full solver.
EXACT_MAX_DIM = 256
SPECTRAL_MAX_SIDE = 384
KRYLOV_K = 8
KRYLOV_ITERS = 3
# Krylov estimates of an MP bulk edge scatter by ~1.5% (and sit a few % low, equally for a matrix and
# its twin, so their ratio is fair): the relative floor of the null's spread in Krylov mode.
KRYLOV_REL_SD = 0.02
SCORE_TWINS = 4  # exact mode, up to 65536 entries: shuffled twins of the normal scores (cheap); else 1
TW1_SD = 1.27  # standard deviation of the Tracy-Widom (beta=1) law
MIN_SPECTRAL_DIM = 8  # below this a "spectrum" is a handful of numbers: no test
MOMENTS_SAMPLE = 1 << 16  # tensors larger than this are described by a random sample of this size


def _precise(t: torch.Tensor) -> torch.Tensor:
    """float64 where it is cheap, float32 for big tensors (torch's sums are pairwise, accurate enough)."""
    t = t.detach()
    return t.double() if t.numel() <= 1 << 18 else t.float()


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
        return {k: _clean(v) for k, v in self.__dict__.items()}


SAMPLE_CHUNK = 1024


def random_entries(t: torch.Tensor, n: int, seed: int = 0) -> torch.Tensor:
    """A seeded sample of about n entries: all entries when there are fewer, else n / 1024 runs of
    1024 consecutive entries at random places. Runs (whole rows of a weight matrix) keep memory
    access sequential, so a memory-mapped file is paged in only where the sample lies."""
    flat = t.detach().reshape(-1)
    if flat.numel() <= n:
        return flat
    g = torch.Generator().manual_seed(seed)
    starts = torch.randint(flat.numel() - SAMPLE_CHUNK + 1, (max(1, n // SAMPLE_CHUNK),), generator=g)
    return flat.unfold(0, SAMPLE_CHUNK, 1)[starts].reshape(-1)  # one gather, not a slice per run


def moments(t: torch.Tensor, sample: torch.Tensor | None = None, seed: int = 0) -> Moments:
    """Summary statistics of a tensor, from `sample` (default: `random_entries(t, MOMENTS_SAMPLE)`).

    Tensors up to MOMENTS_SAMPLE entries are read whole. Bigger ones are described by the sample
    (`sampled` says how many entries), min and max included; `constant` is still exact: a sample that
    holds two values proves the tensor is not constant, and a constant-looking sample is checked on
    every entry.
    """
    flat = t.detach().reshape(-1)
    n = flat.numel()
    if n == 0:
        return Moments(0, 0, math.nan, math.nan, math.nan, math.nan, math.nan, math.nan, math.nan, True)
    x = _precise(random_entries(flat, MOMENTS_SAMPLE, seed) if sample is None else sample)
    lo, hi = float(x.min()), float(x.max())
    if lo == hi and x.numel() < n:
        lo, hi = (float(v) for v in torch.aminmax(flat if flat.dtype.itemsize >= 4 else flat.float()))
    mean = float(x.mean())
    d2 = (x - mean).square_()
    var = float(d2.mean())
    kurt = float(torch.dot(d2, d2)) / d2.numel() / (var * var) - 3.0 if var > 0 else math.nan
    zeros = 1.0 - float(torch.count_nonzero(x)) / x.numel()
    return Moments(n, x.numel(), mean, math.sqrt(var), kurt, lo, hi, max(abs(lo), abs(hi)), zeros, lo == hi)


def _clean(v: Any) -> Any:
    """JSON has no NaN/inf: report them as None."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


# ---- spectra -----------------------------------------------------------------------------------------------------

def mp_edge(m: int, n: int, var: float) -> float:
    """Upper edge of the Marchenko-Pastur law for the Gram eigenvalues of an m x n i.i.d. matrix."""
    return var * (math.sqrt(m) + math.sqrt(n)) ** 2


def tw_scale(m: int, n: int, var: float) -> float:
    """Johnstone's Tracy-Widom scale for the largest eigenvalue (real Wishart, m x n)."""
    a, b = math.sqrt(max(m - 0.5, 0.5)), math.sqrt(max(n - 0.5, 0.5))
    return var * (a + b) * (1 / a + 1 / b) ** (1 / 3)


def mp_pdf(x: np.ndarray, m: int, n: int, var: float) -> np.ndarray:
    """Marchenko-Pastur density of the Gram eigenvalues (the min(m, n) nonzero ones) of an m x n i.i.d. matrix."""
    big, small = max(m, n), min(m, n)
    y = small / big
    lo, hi = var * big * (1 - math.sqrt(y)) ** 2, var * big * (1 + math.sqrt(y)) ** 2
    x = np.asarray(x, dtype=float)
    inside = (x > lo) & (x < hi)
    out = np.zeros_like(x)
    xs = x[inside] / big
    out[inside] = np.sqrt((hi / big - xs) * (xs - lo / big)) / (2 * math.pi * var * y * xs) / big
    return out


@lru_cache(maxsize=8)
def _permutations(numel: int, count: int, seed: int) -> torch.Tensor:
    """Seeded permutations, cached per size: a ViT has few distinct matrix sizes, so this is paid once."""
    g = torch.Generator().manual_seed(seed * 7919 + numel)
    return torch.stack([torch.randperm(numel, generator=g, dtype=torch.int64) for _ in range(count)])


def shuffled(w: torch.Tensor, count: int = 1, seed: int = 0) -> torch.Tensor:
    """`count` shuffled twins of w, stacked: same entries, random positions (deterministic)."""
    flat = w.reshape(-1)
    perms = _permutations(flat.numel(), count, seed)
    return flat.index_select(0, perms.reshape(-1)).reshape(count, *w.shape)


@contextmanager
def one_thread():
    """Work on small tensors (all of an audit's, after sub-blocking) gains nothing from threads inside
    each op, and spinning OpenMP workers on a shared machine make it 5-10x slower. Yields the thread
    count it replaced (for callers that parallelize over tensors instead) and restores it after."""
    n = torch.get_num_threads()
    if n > 1:
        torch.set_num_threads(1)
    try:
        yield n
    finally:
        if n > 1:
            torch.set_num_threads(n)


def _gram(w: torch.Tensor) -> torch.Tensor:
    return w.transpose(-1, -2) @ w if w.shape[-2] >= w.shape[-1] else w @ w.transpose(-1, -2)


def gram_eigenvalues(w: torch.Tensor) -> torch.Tensor:
    """All eigenvalues of the smaller Gram matrix, descending (batched over leading dims)."""
    return torch.linalg.eigvalsh(_gram(w)).flip(-1).clamp_min(0)


def top_eigenvalues(w: torch.Tensor, k: int = KRYLOV_K, iters: int = KRYLOV_ITERS, seed: int = 0) -> torch.Tensor:
    """Top-k Gram eigenvalues by block Krylov (Rayleigh-Ritz on [X, GX, ..., G^q X]), descending
    (batched over leading dims, all from the same seeded start).

    Each iteration is two thin products with W, so W is read 2q+2 times instead of being squared.
    W is cast to bfloat16 (products accumulate in float32; eigenvalues move by <0.1%) and the products
    are written with the thin block on the left, the fast layout for CPU GEMM. Outliers converge in a
    couple of iterations, an MP bulk edge to a few % (the same error for a matrix and its twin).
    """
    if w.shape[-2] < w.shape[-1]:
        w = w.transpose(-1, -2)
    n = w.shape[-1]
    k = min(k, n)
    wb = w.to(torch.bfloat16)
    wbt = wb.transpose(-1, -2)
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, k, generator=g))
    q = q.expand(*w.shape[:-2], n, k)
    basis = [q]
    for _ in range(iters):
        y = q.transpose(-1, -2).to(torch.bfloat16) @ wbt  # (W Q)^T
        q, _ = torch.linalg.qr((y @ wb).float().transpose(-1, -2))  # W^T W Q
        basis.append(q)
    q, _ = torch.linalg.qr(torch.cat(basis, -1))
    b = (q.transpose(-1, -2).to(torch.bfloat16) @ wbt).float()  # (W Q)^T
    return torch.linalg.eigvalsh(b @ b.transpose(-1, -2)).flip(-1)[..., :k].clamp_min(0)


SCORE_BINS = 1 << 14


@lru_cache(maxsize=8)
def _jitter(numel: int, seed: int, dtype: torch.dtype) -> torch.Tensor:
    """Seeded uniforms, cached per size: any fixed draw independent of the values breaks ties fairly."""
    return torch.rand(numel, generator=torch.Generator().manual_seed(seed * 7919 + numel + 1), dtype=dtype)


def normal_scores(w: torch.Tensor, sample: torch.Tensor | None = None, seed: int = 0) -> torch.Tensor:
    """Each entry replaced by the normal quantile of its (randomized) rank.

    Ranks come from an exact histogram of all entries on SCORE_BINS equal bins spanning the range of a
    sorted random sample (entries beyond it share the end bins): an entry's uniform score lies
    between its bin's two cumulative shares, at a seeded uniform position, and its normal score is
    that uniform's normal quantile. So the scores are exactly Gaussian, and i.i.d. whenever the
    entries are, whatever their distribution
    (heavy tails, uniform, sparse, quantized ties): the top eigenvalue of the normal-score matrix
    follows Tracy-Widom at the MP edge, a null that needs no twin. Structure (which entries are large
    together) survives: only the order inside a bin is lost. A histogram and a table lookup cost a
    few passes over the entries, where a sort or a binary search per entry costs ten times more.
    """
    flat = w.reshape(-1)
    n = flat.numel()
    if sample is None:
        g = torch.Generator().manual_seed(seed)
        sample = flat[torch.randint(n, (8192,), generator=g)].sort().values
    lo, hi = float(sample[0]), float(sample[-1])
    if hi <= lo:  # more than ~all of the sample is one value: fall back to the full range
        lo, hi = (float(v) for v in torch.aminmax(flat))
        if hi <= lo:
            return torch.zeros_like(w, dtype=torch.float32)
    idx = torch.mul(flat, SCORE_BINS / (hi - lo)).sub_(lo * SCORE_BINS / (hi - lo)).clamp_(0, SCORE_BINS - 1).int()
    cdf = torch.zeros(SCORE_BINS + 1, dtype=torch.float64)
    cdf[1:] = torch.bincount(idx, minlength=SCORE_BINS).cumsum(0).double() / n
    v = 2 * cdf - 1  # per bin, in erfinv's (-1, 1) coordinates: start and width
    # Two 1-D lookups: gathering rows of a (bins, 2) table is ~10x slower per entry on CPU.
    start, width = v[:-1].float().index_select(0, idx), (v[1:] - v[:-1]).float().index_select(0, idx)
    u = torch.addcmul(start, _jitter(n, seed, torch.float32), width)
    return u.clamp_(-1 + 1.0 / n, 1 - 1.0 / n).erfinv_().mul_(math.sqrt(2.0)).reshape(w.shape)


@lru_cache(maxsize=16)
def _gaussian_twin_top(m: int, n: int, seed: int) -> float:
    """Krylov top eigenvalue of an i.i.d. N(0, 1) m x n matrix, centred like a normal-score matrix.

    Shuffling a normal-score matrix gives exactly such a matrix (its entries are exactly Gaussian and,
    once shuffled, independent), so one draw per shape is every matrix's normal-score twin, and the
    estimate carries the same Krylov error as the matrix's own.
    """
    x = torch.randn(m, n, generator=torch.Generator().manual_seed(seed * 7919 + m * 31 + n))
    x -= x.mean()
    x /= x.std()
    return float(top_eigenvalues(x, seed=seed)[0])


def sub_block(w: torch.Tensor, max_side: int = SPECTRAL_MAX_SIDE, seed: int = 0) -> torch.Tensor:
    """A random (seeded) sub-block of at most max_side rows and columns, rows and columns in order."""
    g = torch.Generator().manual_seed(seed + 17)
    for dim in (0, 1):
        if w.shape[dim] > max_side:
            keep = torch.randperm(w.shape[dim], generator=g)[:max_side].sort().values
            w = w.index_select(dim, keep)
    return w


@dataclass
class Spectrum:
    """The spectral reading of one matrix (Gram eigenvalues = squared singular values).

    Everything except `raw` is about the normal-score matrix (each entry replaced by the normal
    quantile of its rank, see `normal_scores`): the same matrix with its histogram made Gaussian, so
    the Marchenko-Pastur law and its Tracy-Widom edge hold exactly under any i.i.d. init and heavy
    tails cannot fake outliers. Its twin is the same matrix shuffled. `structure` is the evidence of
    training: the top eigenvalue's excess over the MP edge (exact mode) or over the twin's (Krylov
    mode, where both carry the same estimation error) in units of the null's spread.
    `raw` (exact mode): the untransformed matrix against the MP law for its own shape and variance.
    """

    shape: tuple[int, int]
    block: tuple[int, int]  # the (sub-)matrix the spectrum is computed on
    method: str  # 'exact' | 'krylov'
    top: float
    second: float
    mp_edge: float
    tw_scale: float
    twin_top: float
    top_over_edge: float
    top_over_twin: float
    log_top_vs_twin: float
    n_outliers: int
    tail_alpha: float
    structure: float
    raw: dict[str, float] | None = None
    eigenvalues: list[float] = field(default_factory=list)  # descending: all (exact) or the top k

    def to_dict(self, max_eigs: int = 16) -> dict[str, Any]:
        d = {k: _clean(v) for k, v in self.__dict__.items() if k not in ("eigenvalues", "raw")}
        d["shape"], d["block"] = list(self.shape), list(self.block)
        d["raw"] = None if self.raw is None else {k: _clean(v) for k, v in self.raw.items()}
        d["top_eigenvalues"] = [_clean(v) for v in self.eigenvalues[:max_eigs]]
        return d


def _tail_alpha(eigs: torch.Tensor) -> float:
    """Power-law exponent of the eigenvalue density's tail (Hill estimator on the top eigenvalues).

    Trained layers have heavy tails (alpha about 2-6); an MP bulk gives large alphas, since its top
    eigenvalues are nearly equal.
    """
    k = min(len(eigs), 20, max(len(eigs) // 4, 5))
    top = eigs[:k].double()
    if k < 3 or float(top[-1]) <= 0:
        return math.nan
    s = float(torch.log(top[:-1] / top[-1]).sum())
    return 1.0 + (k - 1) / s if s > 0 else math.inf


def raw_spectrum_stats(x: torch.Tensor, eigs: torch.Tensor) -> dict[str, float]:
    """The untransformed matrix (centred) against MP for its shape and entry variance."""
    m, n = x.shape
    var = float((x * x).mean())
    edge, s = mp_edge(m, n, var), tw_scale(m, n, var)
    top = float(eigs[0])
    return {"variance": var, "top": top, "mp_edge": edge, "top_over_edge": top / edge, "z_mp": (top - edge) / s,
            "n_outliers": int((eigs > edge + 4 * s).sum()), "tail_alpha": _tail_alpha(eigs),
            "flatness": _flatness(eigs)}


def _flatness(eigs: torch.Tensor) -> float:
    """5th over 95th percentile of the eigenvalues (descending input): 1 when all singular values are
    equal (an orthogonal init), near 0 for an MP bulk; percentiles ignore the one eigenvalue that
    centring an orthogonal matrix moves."""
    k = len(eigs)
    hi, lo = float(eigs[int(0.05 * (k - 1))]), float(eigs[int(0.95 * (k - 1))])
    return lo / hi if hi > 0 else math.nan


@dataclass
class _Prepared:
    """A matrix made ready for its eigen-solve: the (sub-)block, centred, its normal scores (bfloat16 in
    Krylov mode: the solve reads them so, and a batch is then stacked at half the size) and their
    variance (from the full-precision scores)."""

    shape: tuple[int, int]
    x: torch.Tensor
    scores: torch.Tensor
    svar: float
    exact: bool


def prepare(w: torch.Tensor, seed: int = 0, exact: bool | None = None,
            sample: torch.Tensor | None = None) -> _Prepared | None:
    """The per-matrix part of `spectra` (sub-block, centring, normal scores): the bulk of its cost and
    independent across matrices, so callers can run it in their own worker threads before `solve`."""
    if w.ndim != 2:
        w = w.reshape(w.shape[0], -1)
    shape = tuple(w.shape)
    if min(shape) < MIN_SPECTRAL_DIM:
        return None
    exact = min(shape) <= EXACT_MAX_DIM if exact is None else exact
    x = w.detach() if exact else sub_block(w.detach(), seed=seed)
    x = x.double() if min(x.shape) <= 128 else x.float()  # float32 Gram eigenvalues: ~1e-6 of the top
    mu = float(x.mean())
    x = x - mu  # a shared offset is not structure (it adds one spike to any i.i.d. matrix)
    if float(x.abs().max()) == 0:
        return None
    scores = normal_scores(x, None if sample is None else sample.to(x.dtype) - mu, seed).to(x.dtype)
    scores -= scores.mean()
    svar = float((scores * scores).mean())
    return _Prepared(shape, x, scores if exact else scores.to(torch.bfloat16), svar, exact)


def _finish(p: _Prepared, krylov_eigs: torch.Tensor | None, seed: int) -> Spectrum:
    """The reading from the normal scores' eigenvalues (`krylov_eigs` in Krylov mode, else solved here)."""
    x, scores, svar = p.x, p.scores, p.svar
    m, n = x.shape
    edge, s = mp_edge(m, n, svar), tw_scale(m, n, svar)
    raw = None
    if p.exact:
        raw = raw_spectrum_stats(x, gram_eigenvalues(x))
        eigs = gram_eigenvalues(scores)
        twins = SCORE_TWINS if m * n <= 1 << 16 else 1
        twin_top = float(gram_eigenvalues(shuffled(scores, twins, seed))[:, 0].mean())
        structure = (float(eigs[0]) - edge) / s
    else:
        eigs = krylov_eigs
        twin_top = _gaussian_twin_top(m, n, seed) * svar
        structure = (float(eigs[0]) - twin_top) / max(TW1_SD * s, KRYLOV_REL_SD * twin_top)
    top = float(eigs[0])
    cut = max(edge + 4 * s, twin_top * (1 + 3 * KRYLOV_REL_SD) if not p.exact else 0.0)
    return Spectrum(
        shape=p.shape, block=(m, n), method="exact" if p.exact else "krylov", top=top,
        second=float(eigs[1]) if len(eigs) > 1 else math.nan, mp_edge=edge, tw_scale=s, twin_top=twin_top,
        top_over_edge=top / edge, top_over_twin=top / twin_top if twin_top > 0 else math.inf,
        log_top_vs_twin=math.log(top / twin_top) if twin_top > 0 and top > 0 else math.nan,
        n_outliers=int((eigs > cut).sum()), tail_alpha=_tail_alpha(eigs), structure=structure, raw=raw,
        eigenvalues=eigs.tolist())


def solve(prepared: list[_Prepared | None], seed: int = 0) -> list[Spectrum | None]:
    """Spectral readings of `prepare`d matrices. The Krylov solves of same-sized sub-blocks (all of a
    ViT's big matrices) run as batches: one solve of a 384x384 block is mostly per-call overhead. The
    batches are split across the caller's threads, one thread per op, so the eigenvalues do not depend
    on the thread count."""
    with one_thread() as workers:
        batches: dict[tuple | None, list[int]] = defaultdict(list)  # None: exact mode, solved one by one
        for i, p in enumerate(prepared):
            if p is not None:
                batches[None if p.exact else p.scores.shape].append(i)
        chunks: list[list[int]] = []
        for idx in batches.values():
            step = -(-len(idx) // workers)  # one chunk per thread
            chunks += [idx[j:j + step] for j in range(0, len(idx), step)]

        def finish(idx: list[int]) -> list[Spectrum]:
            krylov = (top_eigenvalues(torch.stack([prepared[i].scores for i in idx]), seed=seed)
                      if not prepared[idx[0]].exact else [None] * len(idx))
            return [_finish(prepared[i], eigs, seed) for i, eigs in zip(idx, krylov)]

        out: list[Spectrum | None] = [None] * len(prepared)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for idx, specs in zip(chunks, pool.map(finish, chunks)):
                for i, spec in zip(idx, specs):
                    out[i] = spec
        return out


@one_thread()
def spectra(ws: list[torch.Tensor], *, seed: int = 0, exact: bool | None = None,
            samples: list[torch.Tensor | None] | None = None) -> list[Spectrum | None]:
    """Spectral readings of weights (>2-D: flattened to (out, rest)); None where too small or constant.

    `samples`: per weight, a sorted random sample of its entries (the prior fits already drew one):
    the bins of the normal scores span its range.
    """
    return solve([prepare(w, seed, exact, s) for w, s in zip(ws, samples or [None] * len(ws))], seed)


def spectrum(w: torch.Tensor, *, seed: int = 0, exact: bool | None = None,
             sample: torch.Tensor | None = None) -> Spectrum | None:
    """Spectral reading of one weight: `spectra` of one."""
    return spectra([w], seed=seed, exact=exact, samples=[sample])[0]


def full_spectra(w: torch.Tensor, seed: int = 0, scores: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """All Gram eigenvalues of a matrix (or of its normal scores) and of one shuffled twin, for plots."""
    if w.ndim != 2:
        w = w.reshape(w.shape[0], -1)
    x = w.detach().double()
    x = x - x.mean()
    if scores:
        x = normal_scores(x, seed=seed)
        x = x - x.mean()
    return gram_eigenvalues(x).numpy(), gram_eigenvalues(shuffled(x, 1, seed)[0]).numpy()


# ---- position embeddings -----------------------------------------------------------------------------------------

@dataclass
class PosEmbedStructure:
    """Cosine similarity between the patch positions' embeddings, and how much it follows the grid.

    `corr`: Pearson correlation between similarity and minus the grid distance over position pairs
    (the one number for "similarity follows distance"); `neighbour_contrast`: mean similarity of grid
    neighbours minus that of all pairs. Each gets a z-score against random re-placements of the same
    embeddings on the grid (about N(0, 1) for any i.i.d. init). Learned embeddings need not be
    monotone in distance (MNIST borders are all alike), so `z`, the structure evidence, is the larger
    of the neighbour z and the absolute correlation z.
    """

    grid: tuple[int, int]
    num_prefix: int
    corr: float
    corr_z: float
    neighbour_contrast: float
    neighbour_z: float
    z: float
    neighbour_sim: float  # mean cosine similarity of grid neighbours
    far_sim: float  # mean cosine similarity of pairs farther apart than half the grid

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else _clean(v)) for k, v in self.__dict__.items()}


POS_MAX_POSITIONS = 256
POS_PERMUTATIONS = 16


def split_pos_embed(pe: torch.Tensor, num_prefix: int | None = None,
                    grid: tuple[int, int] | None = None) -> tuple[torch.Tensor, tuple[int, int], int] | None:
    """(patch embeddings (H*W, D), grid, prefix count) from a (1, N, D) / (N, D) position embedding."""
    x = pe.detach().reshape(-1, pe.shape[-1])
    n = x.shape[0]
    if grid is not None and num_prefix is not None and grid[0] * grid[1] + num_prefix == n:
        return x[num_prefix:], tuple(grid), num_prefix
    candidates = ([num_prefix] if num_prefix is not None else []) + [1, 0, 2, 5, 4]
    for p in candidates:
        side = math.isqrt(max(n - p, 0))
        if side >= 2 and side * side == n - p:
            return x[p:], (side, side), p
    return None


def cosine_grid(patches: torch.Tensor) -> torch.Tensor:
    """(P, P) cosine similarities between the patch positions' embeddings (ViT paper, figure 7)."""
    x = patches.double()
    x = x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return x @ x.T


def _z(observed: float, null: torch.Tensor) -> float:
    return (observed - float(null.mean())) / max(float(null.std()), 1e-9)


@one_thread()
def pos_embed_structure(pe: torch.Tensor, num_prefix: int | None = None, grid: tuple[int, int] | None = None,
                        seed: int = 0) -> PosEmbedStructure | None:
    split = split_pos_embed(pe, num_prefix, grid)
    if split is None:
        return None
    patches, (h, w), p = split
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    coords = torch.stack([ys.reshape(-1), xs.reshape(-1)], 1).double()
    g = torch.Generator().manual_seed(seed)
    if patches.shape[0] > POS_MAX_POSITIONS:  # a random subset of positions keeps the estimates unbiased
        keep = torch.randperm(patches.shape[0], generator=g)[:POS_MAX_POSITIONS]
        patches, coords = patches[keep], coords[keep]
    sim = cosine_grid(patches)
    iu = torch.triu_indices(sim.shape[0], sim.shape[0], 1)
    raw = sim[iu[0], iu[1]]
    s = (raw - raw.mean()) / raw.std().clamp_min(1e-12)

    def stats(c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(corr with -distance, neighbour contrast) for positions at coordinates c (..., P, 2)."""
        d = torch.cdist(c, c)[..., iu[0], iu[1]]
        nd = -(d - d.mean(-1, keepdim=True)) / d.std(-1, keepdim=True)
        corr = (nd * s).mean(-1) * s.numel() / (s.numel() - 1)
        near = (d <= 1.0 + 1e-9).double()
        contrast = (near * raw).sum(-1) / near.sum(-1).clamp_min(1) - raw.mean()
        return corr, contrast

    corr, contrast = stats(coords)
    perms = torch.stack([torch.randperm(coords.shape[0], generator=g) for _ in range(POS_PERMUTATIONS)])
    null_corr, null_contrast = stats(coords[perms])
    corr_z, neigh_z = _z(float(corr), null_corr), _z(float(contrast), null_contrast)
    dist = torch.cdist(coords, coords)[iu[0], iu[1]]
    near, far = raw[dist <= 1.0 + 1e-9], raw[dist > max(h, w) / 2]
    return PosEmbedStructure(
        grid=(h, w), num_prefix=p, corr=float(corr), corr_z=corr_z, neighbour_contrast=float(contrast),
        neighbour_z=neigh_z, z=max(neigh_z, abs(corr_z)),
        neighbour_sim=float(near.mean()) if near.numel() else math.nan,
        far_sim=float(far.mean()) if far.numel() else math.nan)


# ---- patch-embedding filters -------------------------------------------------------------------------------------

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
        return {k: (list(v) if isinstance(v, tuple) else _clean(v)) for k, v in self.__dict__.items()}


FILTER_PERMUTATIONS = 8
FILTER_MAX = 128  # filters used (a random subset beyond): smoothness shows in any hundred of them


def _neighbour_corr(w: torch.Tensor) -> torch.Tensor:
    """w: (..., D, C, kh, kw), centred per filter. Mean product of horizontal and vertical neighbours
    over the mean square: the lag-1 autocorrelation of the filters, 0 for i.i.d. pixels."""
    h = (w[..., :, 1:] * w[..., :, :-1]).sum((-1, -2, -3, -4))
    v = (w[..., 1:, :] * w[..., :-1, :]).sum((-1, -2, -3, -4))
    kh, kw = w.shape[-2], w.shape[-1]
    pairs = w.shape[-3] * w.shape[-4] * (kh * (kw - 1) + (kh - 1) * kw)
    sq = (w * w).sum((-1, -2, -3, -4)) / (w.shape[-4] * w.shape[-3] * kh * kw)
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
    w = w.double()
    w = w - w.mean(dim=(1, 2, 3), keepdim=True)
    if float((w * w).sum()) == 0:
        return None
    observed = float(_neighbour_corr(w))
    d, c, kh, kw = w.shape
    g = torch.Generator().manual_seed(seed)
    flat = w.reshape(d, -1)
    nulls = []
    for _ in range(FILTER_PERMUTATIONS):  # the same pixel shuffle for every filter: enough to break space
        perm = torch.randperm(flat.shape[1], generator=g)
        nulls.append(_neighbour_corr(flat.index_select(1, perm).reshape(d, c, kh, kw)))
    null = torch.stack(nulls)
    return FilterStructure((kh, kw), c, observed, float(null.mean()), float(null.std()), _z(observed, null))


# ---- 1-D parameters ----------------------------------------------------------------------------------------------

def distance_from_constant(t: torch.Tensor, c: float) -> dict[str, float]:
    """How far a norm gain / bias / LayerScale gamma sits from an init constant."""
    x = t.detach().double().reshape(-1)
    d = x - c
    return {"constant": c, "mean_abs_diff": float(d.abs().mean()), "max_abs_diff": float(d.abs().max()),
            "rel_spread": float(x.std() / max(abs(float(x.mean())), 1e-12)) if x.numel() > 1 else 0.0}


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
