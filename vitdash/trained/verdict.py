"""Is it trained? Per-tensor readings and one model verdict, each with its reasons in words.

The verdict rests on structure no i.i.d. initialization has (spectral outliers of the normal-score
matrix, position embeddings that follow the patch grid, smooth patch filters): that separates trained
from random for any init, including ones no prior knows and checkpoints whose entries were shuffled.
Priors and init constants then say *which* parts are still at init: a part counts as at init only
when its whole group (a block, the head, the patch embedding, a token) is consistent with an init
and part of it positively reads as one (a constant, a known prior with no structure), so a trained
small model whose weights kept their init's histogram is not called partial.

A fused qkv weight is read as one (3D, D) matrix: every known init draws q, k and v from the same
distribution, so the i.i.d. null holds for the whole, and training in any of the three shows.
"""
from __future__ import annotations

import math
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import torch

from vitdash.common.compute import one_thread
from vitdash.common.ordering import natural_sorted
from vitdash.common.results import Progress, ProgressFn, finite_float, jsonable
from vitdash.errors import VitdashError
from vitdash.identity.architecture import infer_architecture
from vitdash.load.buffers import Buffer, find_buffers
from vitdash.load.checkpoint import Checkpoint, TensorStore
from vitdash.trained import priors as P
from vitdash.trained.filters import FilterStructure, filter_structure
from vitdash.trained.moments import MOMENTS_SAMPLE, Moments, distances_from_constants, moments_many, random_entries
from vitdash.trained.norm_gains import GainStructure, gain_structure
from vitdash.trained.pos_embed import PosEmbedStructure, pos_embed_structure
from vitdash.trained.roles import MATRIX_ROLES, TensorRole, audit_view, weight_of
from vitdash.trained.spectra import EXACT_MAX_DIM, SPECTRAL_MAX_SIDE, Spectrum, spectra

# Structure z-scores (normal-score spectra: Tracy-Widom units; grid and filter tests: permutation z).
# Under i.i.d. entries the spectral statistic stayed below 3.5 in simulations (normal, uniform,
# Laplace, Student-t 2.5/3, sparse, Bernoulli, int8-quantized and shuffled DINOv2 entries; 10x32 to
# 3072x768, both code paths); trained MNIST-sized matrices reach 5-40, DINOv2's 40-3000.
TRAINED_Z = 5.0
NO_STRUCTURE_Z = 4.0
# A matrix at least this wide on both sides shows outliers when trained (every trained matrix of the
# shared checkpoints does from 128 up), so "no structure" there is evidence of init on its own.
POWERFUL_DIM = 128
# Init scales above this are large against training updates (a randn token moves by a few percent):
# matching such a prior does not show that the tensor is untouched.
LARGE_INIT_STD = 0.1
TINY_INIT_STD = 1e-4
FLAT_SPECTRUM = 0.9
# Below this many values the distribution tests are weak (a 10-class head of a 64-wide model has 640): such a
# tensor is called at init only when it fits one scheme exactly, together with the rest of its group.
SMALL_TENSOR = 4096
# Below this share of structural tensors showing structure, a "trained" verdict says its evidence is thin.
THIN_EVIDENCE = 0.25
LAYERSCALE_INITS = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 0.1, 0.5, 1.0)  # timm/DINOv2/CaiT/HF init_values

VERDICTS = ("trained", "init", "unclear")
# One word for one thing: a model whose weights are all still at their initialization reads "init", as every
# tensor at its initialization does; "partial" is a model with some groups at init.
MODEL_VERDICTS = ("trained", "init", "partial")


@dataclass
class _Reading:
    """What one tensor shows by itself, before the model context turns it into a verdict."""

    structure: float | None = None  # strongest structure z over the tests that apply
    structure_text: str = ""
    texts: dict[str, str] = field(default_factory=dict)  # per test: 'spectrum', 'pos_embed', 'filters'
    constant: bool = False
    tiny: bool = False  # matches a prior of std <= TINY_INIT_STD (timm's 1e-6 tokens and jax biases)
    flat: bool = False  # all singular values equal (orthogonal init)
    best: P.PriorFit | None = None  # best matching prior, if any matches
    has_priors: bool = False
    powerful: bool = False
    schemes: frozenset[str] = frozenset()  # the schemes of every prior it matches
    numel: int = 0

    @property
    def structured(self) -> bool:
        return self.structure is not None and self.structure >= TRAINED_Z

    @property
    def unstructured(self) -> bool:
        return self.flat or (self.structure is not None and self.structure <= NO_STRUCTURE_Z)

    @property
    def departs(self) -> bool:
        """Moved off every init this tensor could have (no constant, no known prior explains it)."""
        return self.structured or (not self.constant and self.best is None and not self.flat)


@dataclass
class TensorStats:
    """The numbers behind one tensor's verdict: its moments, every applicable prior's fit (best first), and
    each structure test that applies (None where none does); `structure` is the strongest test's z."""

    moments: Moments
    priors: list[P.PriorFit] = field(default_factory=list)
    from_init_constant: dict[str, float] | None = None
    pos_embed: PosEmbedStructure | None = None
    filters: FilterStructure | None = None
    spectrum: Spectrum | None = None
    structure: float | None = None

    @property
    def best_fit(self) -> P.PriorFit | None:
        return self.priors[0] if self.priors else None

    def scalar(self, key: str) -> float | None:
        """A statistic by its short name, for tables and heatmaps: the structure z, then a moment, a spectrum
        reading or the best prior's fit; None when it does not apply or is not finite."""
        for where in (self, self.moments, self.spectrum, self.best_fit):
            v = getattr(where, key, None)
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                return finite_float(v)
        return None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"moments": self.moments.to_dict()}
        if self.priors:
            d["priors"] = [f.to_dict() for f in self.priors]
            d["best_fit"] = self.priors[0].to_dict()
        for key in ("from_init_constant", "pos_embed", "filters", "spectrum", "structure"):
            v = getattr(self, key)
            if v is not None:
                d[key] = v.to_dict() if hasattr(v, "to_dict") else v
        return d


@dataclass
class TensorReport:
    """One tensor's verdict ('trained' | 'init' | 'unclear'), its reason in words, and the numbers."""

    name: str
    role: str
    param: str
    block: int | None
    slot: str
    group: str
    matters: bool
    shape: list[int]
    verdict: str
    reason: str
    stats: TensorStats

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "role": self.role, "param": self.param, "block": self.block,
                "slot": self.slot, "group": self.group, "matters": self.matters, "shape": self.shape,
                "verdict": self.verdict, "reason": self.reason, "stats": jsonable(self.stats.to_dict())}


@dataclass
class Audit:
    """The answer to "is it trained?": a model verdict, what is at init, and every tensor's reading."""

    verdict: str
    confidence: float
    summary: str
    evidence: list[str]
    at_init: list[str]
    at_init_groups: list[str]
    likely_init: str | None  # the init scheme most at-init tensors match, when any
    tensors: list[TensorReport]
    layout: str
    canonical: bool
    name: str
    seconds: float
    counts: dict[str, int] = field(default_factory=dict)
    buffers: list[Buffer] = field(default_factory=list)  # computed tables, kept out of the evidence
    norm_gains: GainStructure | None = None  # the cross-layer test on the norm gains, where it applies

    def tensor(self, name: str) -> TensorReport:
        for t in self.tensors:
            if t.name == name:
                return t
        raise KeyError(name)

    def most_telling(self) -> str:
        """The tensor to look at first: the first one still at init, else the most structured."""
        if self.at_init:
            return self.at_init[0]
        return max(self.tensors, key=lambda t: -math.inf if t.stats.structure is None else t.stats.structure).name

    def to_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "confidence": self.confidence, "summary": self.summary,
                "evidence": list(self.evidence), "at_init": list(self.at_init),
                "at_init_groups": list(self.at_init_groups), "likely_init": self.likely_init,
                "counts": dict(self.counts), "layout": self.layout, "canonical": self.canonical,
                "name": self.name, "seconds": self.seconds, "buffers": [b.to_dict() for b in self.buffers],
                "norm_gains": self.norm_gains.to_dict() if self.norm_gains else None,
                "tensors": [t.to_dict() for t in self.tensors]}


# ---- reading one tensor ------------------------------------------------------------------------------------------

def _pos_layout(ckpt: Checkpoint) -> tuple[int | None, tuple[int, int] | None]:
    """(prefix tokens inside pos_embed, patch grid) from the architecture, for non-square grids."""
    if not ckpt.canonical:
        return None, None
    try:

        arch = infer_architecture(ckpt)
    except (VitdashError, KeyError, ValueError, ImportError):
        return None, None
    return (0 if arch.no_embed_class else arch.num_prefix_tokens), tuple(arch.grid_size)


def _initializer_range(ckpt: Checkpoint) -> float:
    cfg = ckpt.metadata.get("config")
    if isinstance(cfg, dict) and isinstance(cfg.get("initializer_range"), (int, float)):
        return float(cfg["initializer_range"])
    return 0.02


Fitted = tuple[Moments, torch.Tensor, list[P.PriorFit]]
Tests = list[tuple[str, float, str]]  # structure tests as (kind, z, text)


def _fits(ts: list[torch.Tensor], roles: list[TensorRole], weight_shape: tuple[int, ...] | None, init_range: float,
          seed: int) -> list[Fitted]:
    """Per tensor: moments, a sorted random sample of the entries, and every applicable prior's fit (best
    first). The tensors share role, param and shape, so they share priors but for those that depend on the
    block (timm's Eva and Beit scale each block's output projections by its depth): each prior is fitted to
    every tensor that has it at once."""
    entries = torch.stack([random_entries(t, MOMENTS_SAMPLE, seed) for t in ts])
    moms = moments_many(ts, entries)
    samples = P.sample_sorted(entries, seed=seed)
    role = roles[0]
    by_block = {r.block: P.priors_for(role.role, role.param, tuple(ts[0].shape), weight_shape=weight_shape,
                                      initializer_range=init_range, block=r.block) for r in roles}
    rows_of: dict[P.Prior, list[int]] = {}
    for j, r in enumerate(roles):
        for prior in by_block[r.block]:
            rows_of.setdefault(prior, []).append(j)
    fits: list[list[P.PriorFit]] = [[] for _ in ts]
    for rows, got in zip(rows_of.values(), P.fit_each(
            list(rows_of.items()), samples, numel=[m.sampled for m in moms], mean=[m.mean for m in moms],
            std=[m.std for m in moms], constant=[m.constant for m in moms], entries=entries,
            bounds=[(m.min, m.max) for m in moms])):
        for j, f in zip(rows, got):
            fits[j].append(f)
    return [(mom, sample, sorted(f, key=lambda f: (not f.matches, f.ks, f.wasserstein)))
            for mom, sample, f in zip(moms, samples, fits)]


def tensor_fits(ckpt: Checkpoint, name: str, seed: int = 0) -> list[P.PriorFit]:
    """Every known prior's fit to one tensor, best first: what the page draws over its histogram."""
    store, roles = audit_view(ckpt)
    w = weight_of(name, roles)
    return _fits([store[name]], [roles[name]], store.shape(w) if w else None, _initializer_range(ckpt), seed)[0][2]


_TOKENS = ("cls_token", "dist_token", "reg_token", "mask_token")


def spectral_matrix(t: torch.Tensor, role: str) -> torch.Tensor:
    """The matrix a tensor's spectrum is read on: a position embedding as positions x width (its leading batch
    dim folded in); any other tensor as it is (the spectra fold a conv's filter dims into columns)."""
    return t.reshape(-1, t.shape[-1]) if role == "pos_embed" else t


def _matrix(t: torch.Tensor, role: TensorRole, mom: Moments) -> torch.Tensor | None:
    """The matrix whose spectrum is read, for tensors that have one (not mixed RoPE's frequencies: a table of
    fixed magnitudes at random angles, structured from the start)."""
    if t.ndim < 2 or role.role in _TOKENS or role.role == "rope" or mom.constant:
        return None
    return spectral_matrix(t, role.role)


def _init_constant(role: TensorRole, mom: Moments) -> float:
    """The constant a norm gain / bias / LayerScale gamma starts at."""
    if role.role == "layerscale":  # init_values is per model: the nearest common one
        return min(LAYERSCALE_INITS, key=lambda c: abs(math.log(c) - math.log(max(abs(mom.mean), 1e-12))))
    return 1.0 if (role.role == "norm" and role.param == "weight") else 0.0


def _read(t: torch.Tensor, role: TensorRole, fitted: Fitted, from_constant: dict[str, float] | None,
          pos_layout: Callable[[], tuple[int | None, tuple[int, int] | None]], seed: int
          ) -> tuple[_Reading, TensorStats, Tests]:
    """Everything one tensor shows but its spectrum (solved with the other matrices of its group): the
    reading, its stats, and its grid/filter structure tests."""
    mom, _, fits = fitted
    stats = TensorStats(mom, fits, from_constant)
    r = _Reading(constant=mom.constant, has_priors=bool(fits), numel=mom.numel,
                 schemes=frozenset(s for f in fits if f.matches for s in f.prior.schemes))
    if fits and fits[0].matches:
        r.best = fits[0]
        r.tiny = fits[0].prior.family != "constant" and fits[0].prior.std <= TINY_INIT_STD
    tests = []
    if role.role == "pos_embed" and not mom.constant:
        pos = pos_embed_structure(t, seed=seed)  # a square grid, with or without prefix tokens
        if pos is None:
            prefix, grid = pos_layout()
            pos = pos_embed_structure(t, prefix, grid, seed=seed) if grid is not None else None
        if pos is not None:
            stats.pos_embed = pos
            tests.append(("pos_embed", pos.z, pos.describe()))
    if role.role == "patch_embed" and t.ndim == 4 and not mom.constant:
        filt = filter_structure(t, seed=seed)
        if filt is not None:
            stats.filters = filt
            tests.append(("filters", filt.z, f"patch filters have neighbouring-pixel correlation "
                          f"{filt.smoothness:.2f} (shuffled pixels: {filt.null_mean:.2f}; z={filt.z:.1f})"))
    return r, stats, tests


def _conclude(r: _Reading, stats: TensorStats, tests: Tests, spec: Spectrum | None) -> None:
    """Add the spectrum to a reading and take the strongest structure test as its structure."""
    if spec is not None:
        stats.spectrum = spec
        r.flat = spec.raw is not None and spec.raw["flatness"] >= FLAT_SPECTRUM
        r.powerful = min(spec.shape) >= POWERFUL_DIM
        tests = [("spectrum", spec.structure, _spectrum_text(spec))] + tests
    if tests:
        _, r.structure, r.structure_text = max(tests, key=lambda test: test[1])
        r.texts = {kind: text for kind, _, text in tests}
        stats.structure = r.structure


def _spectrum_text(spec: Spectrum) -> str:
    raw = f"; raw top eigenvalue {spec.raw['top_over_edge']:.2f}x its MP edge" if spec.raw else ""
    return (f"normal-score spectrum: top eigenvalue {spec.top_over_edge:.2f}x the Marchenko-Pastur edge and "
            f"{spec.top_over_twin:.2f}x its shuffled twin's, z={spec.structure:.1f}, {spec.n_outliers} "
            f"outlier(s){raw}")


# ---- from readings to verdicts -----------------------------------------------------------------------------------

def _describe_constant(role: TensorRole, value: float) -> str:
    what = {"norm": "the norm's init" if role.param == "weight" else "the norm bias's init",
            "layerscale": "LayerScale's init_values"}.get(role.role, "an init constant")
    return f"all entries equal {value:.6g} ({what}); training would have spread them"


def _tensor_verdict(r: _Reading, role: TensorRole, model_structured: bool, group_moved: bool,
                    mean: float, shape: tuple[int, ...], group_agrees: bool = True) -> tuple[str, str]:
    if r.structured:
        return "trained", r.structure_text
    if r.constant:
        return "init", _describe_constant(role, mean)
    if r.tiny:
        return "init", (f"matches {r.best.prior.label} ({', '.join(r.best.prior.schemes)}): far too small to "
                        "have been trained")
    if r.flat:
        return "init", "all singular values are equal: an orthogonal init, untouched"
    match = (f"entries match {r.best.prior.label} ({', '.join(r.best.prior.schemes)}; KS {r.best.ks:.3f}, "
             f"std ratio {r.best.std_ratio:.3f})") if r.best is not None else ""
    weak = r.structure is not None and not r.unstructured
    if weak:
        return "unclear", f"weak structure only: {r.structure_text}"
    if not model_structured:
        base = f"no structure ({r.structure_text})" if r.structure is not None else "no structure test applies"
        return "init", base + "; " + (match or "its values match no known init, but nothing in the checkpoint "
                                               "shows training")
    if r.best is not None:
        if role.role in ("cls_token", "dist_token", "reg_token"):
            return "unclear", (f"{match}, but {math.prod(shape)} values of a token cannot tell an init draw from "
                               "a trained one")
        if role.role == "pos_embed" and r.best.prior.std > LARGE_INIT_STD:
            return "unclear", (f"{match}, but an init this large (std {r.best.prior.std:.3g}) moves little in "
                               "training: the values cannot tell")
        if group_moved and not (r.unstructured and r.powerful):
            return "unclear", f"{match}, but the rest of {role.group} has moved: it may just have moved little"
        if r.numel < SMALL_TENSOR and not (r.best.exact and group_agrees):
            return "unclear", (f"{match}, but {r.numel} values roughly fit a broad family of inits: it matches no "
                               "scheme exactly (its std for this layer's fan-in, the distribution's shape and what "
                               f"the rest of {role.group} did)")
        what = f"no structure ({r.structure_text}); " if r.structure is not None else ""
        return "init", what + match
    if r.structure is not None and r.unstructured and r.powerful:
        return "init", (f"no structure at a size where training always leaves outliers ({r.structure_text}); "
                        "its histogram matches no known init, so the init was a custom one")
    if r.structure is not None:
        return "unclear", f"no structure ({r.structure_text}), but its histogram matches no known init either"
    if not r.has_priors and role.role not in ("norm", "layerscale"):
        return "unclear", "no test applies to this tensor"
    return "trained", "moved away from every init it could have had (no init constant or known prior explains it)"


def _work(shape: tuple[int, ...]) -> int:
    """A rough cost of reading a tensor, for scheduling: a spectrum reads at most a window of
    SPECTRAL_MAX_SIDE squared entries, a full one (smaller side at most EXACT_MAX_DIM) costs about
    eight times as much per entry, and any tensor has a fixed overhead."""
    if len(shape) < 2:
        return 4096 + math.prod(shape)
    m, n = shape[0], math.prod(shape[1:])
    if min(m, n) <= EXACT_MAX_DIM:
        return 4096 + 8 * m * n
    return 4096 + min(m, SPECTRAL_MAX_SIDE) * min(n, SPECTRAL_MAX_SIDE)


def _confidence(share: float) -> float:
    return round(min(0.99, 0.5 + 0.5 * max(0.0, min(1.0, share))), 2)


def audit_bytes(ckpt: Checkpoint) -> int:
    """What a full audit adds to the process at its peak (the job queue's reservation): every tensor read once
    (a memory-mapped file's pages become resident), plus the largest group's scratch (normal scores and
    Krylov blocks of each matrix in the group, one float copy each) and a fixed overhead."""
    store = ckpt.tensors
    largest = max((store.info(n).numel for n in store), default=0)
    return store.nbytes + 8 * largest * 4 + (64 << 20)


def audit(ckpt: Checkpoint, progress: ProgressFn | None = None, seed: int = 0) -> Audit:
    """Read every floating-point tensor once, then decide per tensor and for the model."""
    start = time.perf_counter()
    store, roles = audit_view(ckpt)
    floats = natural_sorted(n for n in store if store.info(n).dtype.is_floating_point and len(store.shape(n)) >= 1
                            and store.info(n).numel > 0)  # every table and chart lists blocks.2 before blocks.10
    # Computed tables (sin-cos positions, masks) are no evidence either way: listed apart, not read.
    buffers = find_buffers(TensorStore({n: store.loader(n) for n in floats}, {n: store.info(n) for n in floats}))
    fixed = {b.name for b in buffers}
    names = [n for n in floats if n not in fixed]
    if not names:
        raise VitdashError("the checkpoint holds no floating-point tensors to audit")
    pos_layout = lru_cache(maxsize=1)(lambda: _pos_layout(ckpt))
    init_range = _initializer_range(ckpt)
    readings: dict[str, _Reading] = {}
    stats: dict[str, TensorStats] = {}

    def weight_shape(name: str) -> tuple[int, ...] | None:
        w = weight_of(name, roles)
        return store.shape(w) if w else None

    same_priors: dict[tuple, list[str]] = defaultdict(list)
    for n in names:
        same_priors[(roles[n].role, roles[n].param, store.shape(n), weight_shape(n))].append(n)

    def read(members: list[str]) -> list[tuple[_Reading, TensorStats]]:
        """The readings of a group of tensors with the same role and shape (a ViT repeats each in every
        block): prior fits, structure tests and the spectra of its matrices, solved as one batch."""
        ts = [store[n] for n in members]
        fitted = _fits(ts, [roles[n] for n in members], weight_shape(members[0]), init_range, seed)
        mats = [_matrix(t, roles[n], f[0]) for n, t, f in zip(members, ts, fitted)]
        specs = iter(spectra([m for m in mats if m is not None], seed=seed,
                               samples=[f[1] for m, f in zip(mats, fitted) if m is not None]))
        from_constants: list[dict[str, float] | None] = [None] * len(ts)
        if ts[0].ndim == 1 or roles[members[0]].role == "layerscale":
            from_constants = distances_from_constants(
                torch.stack(ts), [_init_constant(roles[n], f[0]) for n, f in zip(members, fitted)])
        out = []
        for n, t, f, m, c in zip(members, ts, fitted, mats, from_constants):
            reading, st, tests = _read(t, roles[n], f, c, pos_layout, seed)
            _conclude(reading, st, tests, None if m is None else next(specs))
            out.append((reading, st))
        return out

    # After sub-blocking every operation is small: one thread per op, and groups in parallel instead
    # (each reading is seeded on its own, so the result depends neither on the order nor on the
    # thread count). Progress is reported from the caller's thread, where a UI can draw it.
    if progress is not None:
        progress(Progress(0, len(names), "reading tensors"))
    with one_thread() as workers, ThreadPoolExecutor(max_workers=workers) as pool:
        # Costliest groups first, so that no big one is left to run alone at the end.
        groups = sorted(same_priors.values(), key=lambda ms: -sum(_work(store.shape(n)) for n in ms))
        futures = {pool.submit(read, members): members for members in groups}
        for fut in as_completed(futures):
            for n, (reading, st) in zip(futures[fut], fut.result()):
                readings[n], stats[n] = reading, st
                if progress is not None:
                    progress(Progress(len(readings), len(names), n))

    structural = [n for n in names if readings[n].structure is not None]
    structured = [n for n in structural if readings[n].structured]
    strongest = max((readings[n].structure for n in structured), default=0.0)
    gains = _gain_structure(names, roles, readings, store, seed)
    model_structured = (len(structured) >= 2 or strongest >= 2 * TRAINED_Z
                        or (gains is not None and gains.z >= TRAINED_Z))
    moved_groups = {roles[n].group for n in names if readings[n].departs}

    members_of: dict[str, list[str]] = defaultdict(list)
    for n in names:
        members_of[roles[n].group].append(n)

    def agrees(n: str) -> bool:
        """Every other member of its group that has priors matches one of the schemes this tensor matches."""
        return all(readings[n].schemes & readings[m].schemes for m in members_of[roles[n].group]
                   if m != n and readings[m].has_priors)

    reports = []
    for n in names:
        verdict, reason = _tensor_verdict(readings[n], roles[n], model_structured, roles[n].group in moved_groups,
                                          finite_float(stats[n].moments.mean) or 0.0, store.shape(n), agrees(n))
        ro = roles[n]
        reports.append(TensorReport(n, ro.role, ro.param, ro.block, ro.slot, ro.group, ro.matters,
                                    list(store.shape(n)), verdict, reason, stats[n]))
    by_name = {t.name: t for t in reports}

    groups: dict[str, list[str]] = defaultdict(list)
    for n in names:
        groups[roles[n].group].append(n)
    if not model_structured:
        at_init = [n for n in names if by_name[n].verdict == "init" and roles[n].matters]
        at_groups = sorted({roles[n].group for n in at_init})
    else:
        at_groups = sorted(
            g for g, members in groups.items()
            if g not in moved_groups and any(roles[n].matters for n in members)
            and any(by_name[n].verdict == "init" for n in members)
            and all(by_name[n].verdict == "init" or readings[n].best is not None for n in members))
        at_init = [n for n in names if roles[n].group in at_groups and by_name[n].verdict == "init"
                   and roles[n].matters]
    verdict = "init" if not model_structured else ("partial" if at_init else "trained")

    counts = Counter(t.verdict for t in reports)
    if buffers:
        counts["fixed"] = len(buffers)
    likely = _likely_init(at_init, readings)
    share_struct = len(structured) / max(len(structural), 1)
    if verdict == "init":
        conf = _confidence(sum(readings[n].unstructured for n in structural) / max(len(structural), 1))
    elif verdict == "trained":
        conf = _confidence(2 * share_struct)
    else:
        members = [n for g in at_groups for n in groups[g]]
        init_share = sum(by_name[n].verdict == "init" for n in members) / max(len(members), 1)
        rest = [n for n in structural if roles[n].group not in at_groups]
        trained_share = sum(readings[n].structured for n in rest) / max(len(rest), 1)
        conf = _confidence(min(init_share, 2 * trained_share))
    evidence = _evidence(verdict, names, roles, readings, by_name, structural, structured, at_groups, likely)
    if gains is not None:
        evidence.append(f"Norm gains: their deviations from 1 correlate channel by channel across {gains.layers} "
                        f"layers (mean |r| {gains.mean_abs_corr:.2f} against {gains.null_mean:.2f} for shuffled "
                        f"channels, z={gains.z:.1f}).")
    summary = _summary(verdict, structural, structured, at_groups, likely, gains)
    if buffers:
        evidence.append(f"Left out as computed, not learned: {', '.join(f'{b.name} ({b.kind})' for b in buffers[:6])}"
                        + (f" and {len(buffers) - 6} more" if len(buffers) > 6 else "") + ".")
    return Audit(verdict=verdict, confidence=conf, summary=summary, evidence=evidence, at_init=at_init,
                 at_init_groups=at_groups, likely_init=likely, tensors=reports, layout=ckpt.layout,
                 canonical=ckpt.canonical, name=ckpt.name, seconds=round(time.perf_counter() - start, 3),
                 counts=dict(counts), buffers=buffers, norm_gains=gains)


def _likely_init(at_init: list[str], readings: dict[str, _Reading]) -> str | None:
    """The init scheme most at-init tensors match ("orthogonal" when most matrices are flat); None
    unless it explains at least half of the at-init tensors that are not constants."""
    voters = [n for n in at_init if not readings[n].constant]
    if not voters:
        return None
    flat = sum(readings[n].flat for n in voters)
    votes = Counter(s for n in voters if readings[n].best is not None and not readings[n].flat
                    for s in readings[n].best.prior.schemes)
    if flat and flat >= max(votes.values(), default=0):
        return "orthogonal" if 2 * flat >= len(voters) else None
    if not votes:
        return None
    scheme, count = votes.most_common(1)[0]
    return scheme if 2 * count >= len(voters) else None


def _gain_structure(names: list[str], roles: dict[str, TensorRole], readings: dict[str, _Reading],
                    store: TensorStore, seed: int) -> GainStructure | None:
    """The cross-layer test on the norm gains of the most common width that have moved off their constant."""
    moved = [n for n in names if roles[n].role == "norm" and roles[n].param == "weight" and not readings[n].constant]
    widths = Counter(store.shape(n) for n in moved)
    if not widths:
        return None
    shape = widths.most_common(1)[0][0]
    return gain_structure([store[n] for n in moved if store.shape(n) == shape], seed=seed)


def _summary(verdict: str, structural: list[str], structured: list[str], at_groups: list[str],
             likely: str | None, gains: GainStructure | None = None) -> str:
    if verdict == "init":
        tail = f"; its values match {likely}'s init" if likely else ""
        return f"At init (untrained): none of {len(structural)} structural tensors shows training{tail}."
    if verdict == "partial":
        return (f"Partial: {', '.join(at_groups)} {'is' if len(at_groups) == 1 else 'are'} at init; "
                f"{len(structured)} of {len(structural)} structural tensors elsewhere show training.")
    if len(structured) < THIN_EVIDENCE * len(structural):
        moved = (f"; the norm gains of {gains.layers} layers share a channel pattern (z={gains.z:.1f}), which no "
                 "init or noise has" if gains is not None and gains.z >= TRAINED_Z else "")
        return (f"Trained, on thin evidence: only {len(structured)} of {len(structural)} structural tensors show "
                f"learned structure{moved}. The rest show neither training nor a known init: the model was trained, "
                "but how much cannot be read from its weights.")
    return f"Trained: {len(structured)} of {len(structural)} structural tensors show learned structure."


def _evidence(verdict, names, roles, readings, by_name, structural, structured, at_groups, likely) -> list[str]:
    lines = []
    mats = [n for n in structural if roles[n].role in MATRIX_ROLES]
    mats_struct = [n for n in mats if readings[n].structured]
    if mats:
        best = max(mats, key=lambda n: readings[n].structure)
        lines.append(f"{len(mats_struct)} of {len(mats)} weight matrices have singular values above the "
                     f"Marchenko-Pastur edge that no shuffling of their entries reproduces; strongest: {best} "
                     f"({readings[best].structure_text}).")
    for n in names:
        if roles[n].role == "pos_embed" and readings[n].structure is not None:
            text = readings[n].texts.get("pos_embed", readings[n].structure_text)
            lines.append(f"Position embedding: {text}.")
        f = by_name[n].stats.filters
        if roles[n].role == "patch_embed" and f is not None:
            lines.append(f"Patch filters: neighbouring-pixel correlation {f.smoothness:.2f} against "
                         f"{f.null_mean:.2f} for shuffled pixels (z={f.z:.1f}).")
    ones = [n for n in names if roles[n].role in ("norm", "layerscale") and roles[n].param == "weight"]
    if ones:
        moved = [n for n in ones if not readings[n].constant]
        lines.append(f"{len(moved)} of {len(ones)} norm/LayerScale gains have moved off their init constant.")
    if verdict == "init" and likely:
        lines.append(f"The values match {likely}'s initialization.")
    for g in at_groups:
        members = [n for n in names if roles[n].group == g and by_name[n].verdict == "init"]
        lines.append(f"At init: {g} ({'; '.join(f'{n}: {by_name[n].reason}' for n in members[:3])}"
                     f"{'; ...' if len(members) > 3 else ''}).")
    return lines
