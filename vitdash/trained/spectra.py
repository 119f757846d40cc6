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

Cost: matrices wider than EXACT_MAX_DIM on both sides are tested on a window of at most
SPECTRAL_MAX_SIDE consecutive rows and columns at a random place (a sub-block of an i.i.d. matrix is
i.i.d., so the null is exact; training structure shows in any large block: the weakest DINOv2-S matrix
reads z=18 on 384x384 windows, only 5.1 on 256x256: `benchmarks/calibrate_spectra.py`), with the top
eigenvalues from a bfloat16 block Krylov method; moments of big tensors come from a random sample. The
page computes exact full spectra of any single tensor on demand.
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import torch

from vitdash.common.compute import one_thread
from vitdash.common.results import jsonable

# (Sub-)matrices whose smaller side is at most this get exact full spectra (Gram + symmetric solver),
# larger ones the top eigenvalues from a block Krylov method: a few thin products instead of a Gram
# and a full solver.
EXACT_MAX_DIM = 256


SPECTRAL_MAX_SIDE = 384


KRYLOV_K = 8


KRYLOV_ITERS = 3


KRYLOV_BATCH = 16  # sub-blocks solved together: the batch is re-read 2 * KRYLOV_ITERS + 1 times, from cache


# Krylov estimates of an MP bulk edge scatter by ~1.5% (and sit a few % low, equally for a matrix and
# its twin, so their ratio is fair): the relative floor of the null's spread in Krylov mode.
KRYLOV_REL_SD = 0.02


SCORE_TWINS = 4  # exact mode, up to 16384 entries: shuffled twins of the normal scores (cheap); else 1


TW1_SD = 1.27  # standard deviation of the Tracy-Widom (beta=1) law


MIN_SPECTRAL_DIM = 8  # below this a "spectrum" is a handful of numbers: no test


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


TIE_SHARE = 1e-3  # a bin holding a larger share of the entries is a tie, spread (continuous data: ~2e-4)


@lru_cache(maxsize=8)
def _jitter(numel: int, seed: int, dtype: torch.dtype) -> torch.Tensor:
    """Seeded uniforms, cached per size: any fixed draw independent of the values breaks ties fairly."""
    return torch.rand(numel, generator=torch.Generator().manual_seed(seed * 7919 + numel + 1), dtype=dtype)


def normal_scores(w: torch.Tensor, sample: torch.Tensor | None = None, seed: int = 0) -> torch.Tensor:
    """Each entry replaced by the normal quantile of its rank (float32).

    Ranks come from an exact histogram of all entries on SCORE_BINS equal bins spanning the range of a
    sorted random sample widened by a quarter on each side (the few entries beyond it share the end
    bins). So the scores are Gaussian, and i.i.d. whenever the entries are, whatever their
    distribution (heavy tails, uniform, sparse, quantized ties): the top eigenvalue of the normal-score
    matrix follows Tracy-Widom at the MP edge, a null that needs no twin. Structure (which entries are
    large together) survives: only the order inside a bin is lost. A histogram and a table lookup cost
    a few passes over the entries, where a sort or a binary search per entry costs ten times more.

    When no bin holds more than TIE_SHARE of the entries (any continuous distribution), an entry's
    score is the quantile of its bin's middle share: one lookup per entry, and a bin is far narrower
    than anything a spectrum resolves. Ties (sparse or quantized weights) must be spread instead: an
    entry's share lies between its bin's two cumulative shares, at a seeded uniform position.
    """
    out = torch.empty(w.shape)
    _scores_into(out, w, sample, seed)
    return out


def _scores_into(out: torch.Tensor, w: torch.Tensor, sample: torch.Tensor | None, seed: int, centre: bool = False,
                 scratch: tuple[torch.Tensor, torch.Tensor] | None = None) -> float:
    """`normal_scores` written into `out` (any float dtype: a bfloat16 batch row for the Krylov solve),
    centred if asked; returns their mean square. Without ties the mean and mean square come from the
    histogram and the per-bin table, and the table is centred before the lookup, so each entry is
    read once and written once. `scratch`: float32 and int32 buffers of w's shape, for callers that
    score many same-sized matrices (fresh memory costs page faults)."""
    n = w.numel()
    tmp, idx = scratch or (out if out.dtype == torch.float32 else torch.empty(w.shape),
                           torch.empty(w.shape, dtype=torch.int32))
    if sample is None:
        g = torch.Generator().manual_seed(seed)
        sample = w.reshape(-1)[torch.randint(n, (8192,), generator=g)].sort().values
    lo, hi = float(sample[0]), float(sample[-1])
    if hi <= lo:  # more than ~all of the sample is one value: fall back to the full range
        lo, hi = (float(v) for v in torch.aminmax(w))
        if hi <= lo:
            out.zero_()
            return 0.0
    lo, hi = lo - (hi - lo) / 4, hi + (hi - lo) / 4  # so that few entries lie beyond the end bins
    torch.mul(w, SCORE_BINS / (hi - lo), out=tmp).sub_(lo * SCORE_BINS / (hi - lo)).clamp_(0, SCORE_BINS - 1)
    idx = idx.copy_(tmp).view(-1)  # (truncation: the bin)
    counts = torch.bincount(idx, minlength=SCORE_BINS)
    if int(counts.max()) <= TIE_SHARE * n:
        # Each bin's middle share in erfinv's (-1, 1) coordinates (empty end bins kept finite).
        mid = (2 * counts.cumsum(0) - counts).double().mul_(1 / n).sub_(1).clamp_(-1 + 1 / n, 1 - 1 / n)
        z = mid.float().erfinv_().mul_(math.sqrt(2.0)).double()
        share = counts.double() / n
        if centre:
            z -= share @ z
        torch.index_select(z.to(out.dtype), 0, idx, out=out.view(-1))
        return float(share @ z.square())
    cdf = torch.zeros(SCORE_BINS + 1, dtype=torch.float64)
    cdf[1:] = counts.cumsum(0).double() / n
    v = (2 * cdf - 1).float()
    # Two 1-D lookups: gathering rows of a (bins, 2) table is ~10x slower per entry on CPU.
    start, width = v[:-1].index_select(0, idx), (v[1:] - v[:-1]).index_select(0, idx)
    flat = tmp.view(-1)
    torch.addcmul(start, _jitter(n, seed, torch.float32), width, out=flat)
    flat.clamp_(-1 + 1.0 / n, 1 - 1.0 / n).erfinv_().mul_(math.sqrt(2.0))
    if centre:
        flat -= flat.mean()
    if out is not tmp:
        out.copy_(tmp)
    return float(torch.dot(flat, flat)) / n  # (not var_mean: its Welford loop is ~50x slower)


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
    """A seeded window of at most max_side consecutive rows and columns at a random place (a view).

    Any choice of entries made without looking at them keeps an i.i.d. matrix i.i.d., so the null
    stays exact, and training structure shows in any large block. A window is read as a few
    sequential runs: random rows of a memory-mapped file would page in most of the matrix.
    """
    for dim, start in enumerate(_window_starts(tuple(w.shape[:2]), max_side, seed)):
        if w.shape[dim] > max_side:
            w = w.narrow(dim, start, max_side)
    return w


@lru_cache(maxsize=64)
def _window_starts(shape: tuple[int, int], max_side: int, seed: int) -> tuple[int, int]:
    """`sub_block`'s seeded window offsets for a shape (cached: a ViT repeats a few shapes many times)."""
    g = torch.Generator().manual_seed(seed + 17)
    return tuple(int(torch.randint(side - max_side + 1, (1,), generator=g)) if side > max_side else 0
                 for side in shape)


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
        d = {k: jsonable(v) for k, v in self.__dict__.items() if k not in ("eigenvalues", "raw")}
        d["shape"], d["block"] = list(self.shape), list(self.block)
        d["raw"] = None if self.raw is None else {k: jsonable(v) for k, v in self.raw.items()}
        d["top_eigenvalues"] = [jsonable(v) for v in self.eigenvalues[:max_eigs]]
        return d


def _tail_alphas(eigs: torch.Tensor) -> list[float]:
    """Power-law exponent of the eigenvalue density's tail (Hill estimator on the top eigenvalues), per row of
    descending eigenvalues.

    Trained layers have heavy tails (alpha about 2-6); an MP bulk gives large alphas, since its top
    eigenvalues are nearly equal.
    """
    k = min(eigs.shape[-1], 20, max(eigs.shape[-1] // 4, 5))
    top = eigs[:, :k].double()
    if k < 3:
        return [math.nan] * len(eigs)
    sums = torch.log(top[:, :-1] / top[:, -1:]).sum(-1).tolist()
    return [math.nan if last <= 0 else 1.0 + (k - 1) / s if s > 0 else math.inf
            for last, s in zip(top[:, -1].tolist(), sums)]


def raw_spectrum_stats(x: torch.Tensor, eigs: torch.Tensor) -> dict[str, float]:
    """The untransformed matrix (centred) against MP for its shape and entry variance."""
    m, n = x.shape
    var = float((x * x).mean())
    edge, s = mp_edge(m, n, var), tw_scale(m, n, var)
    top = float(eigs[0])
    return {"variance": var, "top": top, "mp_edge": edge, "top_over_edge": top / edge, "z_mp": (top - edge) / s,
            "n_outliers": int((eigs > edge + 4 * s).sum()), "tail_alpha": _tail_alphas(eigs[None])[0],
            "flatness": _flatness(eigs)}


def _flatness(eigs: torch.Tensor) -> float:
    """5th over 95th percentile of the eigenvalues (descending input): 1 when all singular values are
    equal (an orthogonal init), near 0 for an MP bulk; percentiles ignore the one eigenvalue that
    centring an orthogonal matrix moves."""
    k = len(eigs)
    hi, lo = float(eigs[int(0.05 * (k - 1))]), float(eigs[int(0.95 * (k - 1))])
    return lo / hi if hi > 0 else math.nan


def _spectra_of(shapes: list[tuple[int, ...]], block: tuple[int, int], method: str, eigs: torch.Tensor,
                svars: list[float], twin_tops: list[float], structures: list[float], cuts: list[float],
                raws: list[dict[str, float] | None]) -> list[Spectrum]:
    """The readings of same-sized (sub-)matrices from their eigenvalues (rows, descending), read for all rows at
    once."""
    m, n = block
    values = eigs.tolist()
    outliers = (eigs > torch.tensor(cuts, dtype=eigs.dtype)[:, None]).sum(-1).tolist()
    out = []
    for shape, e, svar, twin_top, structure, count, alpha, raw in zip(
            shapes, values, svars, twin_tops, structures, outliers, _tail_alphas(eigs), raws):
        top, edge = e[0], mp_edge(m, n, svar)
        out.append(Spectrum(
            shape=tuple(shape), block=(m, n), method=method, top=top, second=e[1] if len(e) > 1 else math.nan,
            mp_edge=edge, tw_scale=tw_scale(m, n, svar), twin_top=twin_top, top_over_edge=top / edge,
            top_over_twin=top / twin_top if twin_top > 0 else math.inf,
            log_top_vs_twin=math.log(top / twin_top) if twin_top > 0 and top > 0 else math.nan,
            n_outliers=count, tail_alpha=alpha, structure=structure, raw=raw, eigenvalues=e))
    return out


def _exact_spectrum(w: torch.Tensor, sample: torch.Tensor | None, seed: int) -> Spectrum | None:
    """A matrix with a small side, solved in full: its normal scores against the MP edge (and their
    shuffled twins, for display), the raw matrix against MP for its shape and variance."""
    x = w.double() if min(w.shape) <= 128 else w.float()  # float32 Gram eigenvalues: ~1e-6 of the top
    scores = torch.empty(w.shape, dtype=x.dtype)
    svar = _scores_into(scores, w, sample, seed, centre=True)
    if svar == 0:  # a constant matrix
        return None
    x = x - float(x.mean())  # a shared offset is not structure (it adds one spike to any i.i.d. matrix)
    m, n = x.shape
    eigs = gram_eigenvalues(scores)
    twin_top = float(gram_eigenvalues(shuffled(scores, SCORE_TWINS if m * n <= 1 << 14 else 1, seed))[:, 0].mean())
    edge, s = mp_edge(m, n, svar), tw_scale(m, n, svar)
    return _spectra_of([w.shape], w.shape, "exact", eigs[None], [svar], [twin_top], [(float(eigs[0]) - edge) / s],
                       [edge + 4 * s], [raw_spectrum_stats(x, gram_eigenvalues(x))])[0]


def _krylov_spectra(shapes: list[tuple[int, ...]], blocks: list[torch.Tensor], samples: list[torch.Tensor | None],
                    seed: int) -> list[Spectrum | None]:
    """Same-sized sub-blocks of bigger matrices, with the top of their spectra from block Krylov.

    The normal scores go straight into one bfloat16 batch (the solve reads them so) through scratch
    buffers reused block after block; the batch is solved in near-equal chunks of at most
    KRYLOV_BATCH, each small enough to stay in cache while it is re-read, and cut from the list alone,
    so a matrix's eigenvalues depend only on the list it comes in. The null is the Krylov estimate for
    an i.i.d. Gaussian matrix of the block's shape, which carries the same estimation error.
    """
    batch = torch.empty(len(blocks), *blocks[0].shape, dtype=torch.bfloat16)
    scratch = torch.empty(blocks[0].shape), torch.empty(blocks[0].shape, dtype=torch.int32)
    svars = [_scores_into(row, block, sample, seed, centre=True, scratch=scratch)
             for row, block, sample in zip(batch, blocks, samples)]
    count = -(-len(blocks) // KRYLOV_BATCH)
    eigs = torch.cat([top_eigenvalues(batch[j * len(blocks) // count:(j + 1) * len(blocks) // count], seed=seed)
                      for j in range(count)])
    m, n = batch.shape[1:]
    live = [i for i, svar in enumerate(svars) if svar != 0]  # (a constant block has no spectrum)
    out: list[Spectrum | None] = [None] * len(blocks)
    if not live:
        return out
    twin, tops = _gaussian_twin_top(m, n, seed), eigs[:, 0].tolist()
    twin_tops = [twin * svars[i] for i in live]
    scales = [tw_scale(m, n, svars[i]) for i in live]
    structures = [(tops[i] - t) / max(TW1_SD * s, KRYLOV_REL_SD * t) for i, t, s in zip(live, twin_tops, scales)]
    cuts = [max(mp_edge(m, n, svars[i]) + 4 * s, t * (1 + 3 * KRYLOV_REL_SD))
            for i, t, s in zip(live, twin_tops, scales)]
    for i, spec in zip(live, _spectra_of([shapes[i] for i in live], (m, n), "krylov", eigs[live],
                                         [svars[i] for i in live], twin_tops, structures, cuts, [None] * len(live))):
        out[i] = spec
    return out


@one_thread()
def spectra(ws: list[torch.Tensor], *, seed: int = 0, exact: bool | None = None,
            samples: list[torch.Tensor | None] | None = None) -> list[Spectrum | None]:
    """Spectral readings of weights (>2-D: flattened to (out, rest)); None where too small or constant.

    `samples`: per weight, a sorted random sample of its entries (the prior fits already drew one):
    the bins of the normal scores span its range. Matrices with a side of at most EXACT_MAX_DIM are
    solved in full, bigger ones on a sub-block, same-sized sub-blocks (a ViT's blocks repeat every
    shape) together.
    """
    samples = samples or [None] * len(ws)
    out: list[Spectrum | None] = [None] * len(ws)
    krylov: dict[tuple[int, ...], list[int]] = defaultdict(list)
    shapes: dict[int, tuple[int, ...]] = {}
    blocks: dict[int, torch.Tensor] = {}
    for i, w in enumerate(ws):
        w = w.detach() if w.ndim == 2 else w.detach().reshape(w.shape[0], -1)
        w = w if w.dtype.itemsize >= 4 else w.float()
        if min(w.shape) < MIN_SPECTRAL_DIM:
            continue
        if min(w.shape) <= EXACT_MAX_DIM if exact is None else exact:
            out[i] = _exact_spectrum(w, samples[i], seed)
        else:
            shapes[i], blocks[i] = tuple(w.shape), sub_block(w, SPECTRAL_MAX_SIDE, seed)
            krylov[tuple(blocks[i].shape)].append(i)
    for idx in krylov.values():
        specs = _krylov_spectra([shapes[i] for i in idx], [blocks[i] for i in idx], [samples[i] for i in idx], seed)
        for i, spec in zip(idx, specs):
            out[i] = spec
    return out


def spectrum(w: torch.Tensor, *, seed: int = 0, exact: bool | None = None,
             sample: torch.Tensor | None = None) -> Spectrum | None:
    """Spectral reading of one weight: `spectra` of one."""
    return spectra([w], seed=seed, exact=exact, samples=[sample])[0]


@dataclass
class FullSpectrum:
    """All Gram eigenvalues of a matrix (or of its normal scores) and of one shuffled twin, with the
    shape and entry variance that set its Marchenko-Pastur law: what the page plots."""

    eigenvalues: np.ndarray
    twin: np.ndarray
    shape: tuple[int, int]
    variance: float


def full_spectrum(w: torch.Tensor, seed: int = 0, scores: bool = False) -> FullSpectrum:
    if w.ndim != 2:
        w = w.reshape(w.shape[0], -1)
    x = w.detach().double()
    x = x - x.mean()
    if scores:
        x = normal_scores(x, seed=seed).double()
        x = x - x.mean()
    return FullSpectrum(gram_eigenvalues(x).numpy(), gram_eigenvalues(shuffled(x, 1, seed)[0]).numpy(),
                        tuple(x.shape), float((x * x).mean()))
