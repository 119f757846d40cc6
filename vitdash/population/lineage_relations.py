"""Two checkpoints, one relation: identical, derived_from, sibling, unrelated or incomparable, with the evidence.

`relate(it, query)` reads each shared tensor pair once (through `compare`), and measures per tensor: equality at
the lower of the two precisions (an fp16 or bf16 re-save of fp32 weights is the same weights), the correlation and
its z under the unit-permutation null (`lineage_null`), the relative change, and the Pythagorean balance that
reads direction. A position embedding on another grid is compared after resampling it with timm's
`resample_abs_pos_embed`, both ways.

Direction is the hard part, and pairs of weights alone often cannot settle it. Three cues are read:
- Resampling is lossy: when one grid resampled to the other's reproduces it and the reverse does not, the
  resampled one is the descendant (strong).
- Training adds an update nearly orthogonal to the weights it starts from (high dimension; the gradient of a
  layer followed by a normalization is exactly orthogonal), so a child B of A has |B|^2 = |A|^2 + |B-A|^2: the
  balance (|B|^2 - |A|^2) / |B-A|^2 is near +1 when B descends from A, near -1 when A descends from B, and in
  between when both moved away from a common ancestor (siblings: a parent's own update makes the angle acute
  at both ends). Weight decay adds a radial shrink that, for a fine-tune of a few dozen steps, is as large as
  the update itself: the balance then scatters across tensors, and it is not read (strong when readable).
- A head added where the other has none, the larger label set of two resized heads, and blocks dropped point
  to the descendant, but each edit also happens the other way (a backbone exported from a classifier), so they
  decide only when nothing else does (weak).
"""
from __future__ import annotations

import math
import re
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from timm.layers import resample_abs_pos_embed

from vitdash.common.compute import one_thread
from vitdash.common.results import finite_float
from vitdash.load.checkpoint import Checkpoint
from vitdash.population.compare import Comparison, HeadChange, TensorChange, compare
from vitdash.population.lineage_fingerprint import comparability, core
from vitdash.population.lineage_null import RELATED_Z, column_seed, permutation_z, stouffer, unit_axis
from vitdash.trained.roles import TOKEN_ROLES, TensorRole, assign_roles

RELATIONS = ("identical", "derived_from", "sibling", "unrelated", "incomparable")
# The balance beyond which one checkpoint is the other's descendant, and within which both moved. Measured
# on real pairs (tests/test_lineage.py): fine-tunes and trainings from a saved init read 0.9-1.1, siblings
# (two fine-tunes of one parent, two trainings from one init) 0.35-0.45.
DERIVED_BALANCE = 0.75
SIBLING_BALANCE = 0.6
# When the balance can be read at all. A random alignment of the update with the weights moves a tensor's balance
# by about 2 / (relative change * sqrt(entries)); weight decay's shrink lambda (steps * lr * decay, up to ~1e-3
# for a fine-tune) moves it by -2 lambda / relative change^2, so the update must be larger than sqrt(2e-3). A
# DINOv2-S fine-tuned for 24 steps (relative change 0.002-0.005) fails both: its balance reads anything from
# -1 to 2 across runs; the digits fine-tunes (0.1-0.2) pass. Past these, a spread (inter-quartile range over
# tensors) above READABLE_SPREAD still says the tensors disagree.
MAX_BALANCE_NOISE = 0.25
MIN_READABLE_CHANGE = 0.045
READABLE_SPREAD = 0.75
MIN_BALANCE_TENSORS = 4
# Resampling one grid to the other reproduces it (relative residual below the first) this many times better
# than the reverse: the resampled one descends.
POS_RESIDUAL = 0.5
POS_ASYMMETRY = 2.0
# float mantissa bits: two dtypes are compared at the coarser one.
_MANTISSA = {torch.float64: 52, torch.float32: 23, torch.float16: 10, torch.bfloat16: 7}
# fp16 and bf16 hold different subsets of fp32 (rounding one to the other rounds twice), so two half-precision
# re-saves of one fp32 file agree to within one bf16 step (2^-7 relative), or fp16's smallest subnormal.
CROSS_HALF_RTOL = 2.0 ** -7
CROSS_HALF_ATOL = 2.0 ** -24
_BLOCK = re.compile(r"blocks\.(\d+)\.")


@dataclass
class TensorEvidence:
    """One tensor both hold. `r`/`z`: correlation and its permutation z (after resampling when `resampled`);
    `balance`: (|B|^2 - |A|^2) / |B-A|^2 for a moved matrix; `equal`: same values at the lower precision."""

    name: str
    group: str
    slot: str
    shape_it: list[int]
    shape_query: list[int]
    equal: bool
    r: float | None
    z: float | None
    rel_change: float | None
    cosine: float | None
    balance: float | None = None
    resampled: bool = False

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("r", "z", "rel_change", "cosine", "balance"):
            d[k] = finite_float(d[k])
        return d


@dataclass
class PosEmbedEvidence:
    """Position embeddings on two grids, each resampled to the other's: the residual relative to the target."""

    grid_it: list[int]
    grid_query: list[int]
    residual_it_to_query: float
    residual_query_to_it: float
    ancestor: str | None  # 'it' | 'query' | None (no clear asymmetry)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Direction:
    """Which of the two is the ancestor ('it' = the library checkpoint, 'query' = the one examined), how sure
    ('strong' | 'weak' | 'none'), and every cue in words."""

    ancestor: str | None
    strength: str
    both_moved: bool
    balance: float | None
    balance_spread: float | None
    cues: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"ancestor": self.ancestor, "strength": self.strength, "both_moved": self.both_moved,
                "balance": finite_float(self.balance), "balance_spread": finite_float(self.balance_spread),
                "cues": list(self.cues)}


@dataclass
class Relation:
    """How one library checkpoint ('it') relates to the query. `score` is the combined z of relatedness
    (above `RELATED_Z`: related); `stage` says whether it comes from the exact comparison or the fingerprint."""

    name: str
    path: str
    relation: str
    score: float | None
    summary: str
    stage: str = "exact"
    ancestor: str | None = None
    rel_change: float | None = None  # ||query - it|| / ||it|| over every same-shape tensor
    tensors: list[TensorEvidence] = field(default_factory=list)
    direction: Direction | None = None
    pos_embed: PosEmbedEvidence | None = None
    head: dict[str, Any] | None = None
    moved: list[dict[str, Any]] = field(default_factory=list)  # per group: rel_change, r, z (natural order)
    blocks_only_in_it: list[int] = field(default_factory=list)
    blocks_only_in_query: list[int] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    fingerprint: dict[str, Any] | None = None

    @property
    def related(self) -> bool:
        return self.relation in ("identical", "derived_from", "sibling")

    def to_dict(self) -> dict[str, Any]:
        evidence = {
            "stage": self.stage, "ancestor": self.ancestor, "rel_change": finite_float(self.rel_change),
            "direction": self.direction.to_dict() if self.direction else None,
            "pos_embed": self.pos_embed.to_dict() if self.pos_embed else None, "head": self.head,
            "groups": self.moved, "blocks_only_in_it": self.blocks_only_in_it,
            "blocks_only_in_query": self.blocks_only_in_query, "notes": list(self.notes),
            "fingerprint": self.fingerprint, "tensors": [t.to_dict() for t in self.tensors]}
        return {"path": self.path, "name": self.name, "relation": self.relation,
                "score": finite_float(self.score), "summary": self.summary, "evidence": evidence}


def equal_at_lower_precision(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Same values once both are rounded to the coarser of their two float types (exact for other types)."""
    if a.shape != b.shape:
        return False
    if a.dtype == b.dtype or not (a.is_floating_point() and b.is_floating_point()):
        return torch.equal(a, b) if a.dtype == b.dtype else torch.equal(a.double(), b.double())
    low = min(a.dtype, b.dtype, key=lambda d: _MANTISSA.get(d, 52))
    x, y = a.to(low), b.to(low)
    if torch.equal(x, y):
        return True
    if {a.dtype, b.dtype} == {torch.float16, torch.bfloat16}:
        return torch.allclose(a.float(), b.float(), rtol=CROSS_HALF_RTOL, atol=CROSS_HALF_ATOL)
    return False


def _prefix_tokens(ckpt: Checkpoint) -> int:
    n = sum(1 for k in ("cls_token", "dist_token") if k in ckpt.tensors)
    if "reg_token" in ckpt.tensors:
        n += ckpt.tensors.shape("reg_token")[1]
    return n


def _grid(tokens: int, prefix: int) -> tuple[int, tuple[int, int]] | None:
    """(prefix tokens inside the embedding, square grid) for a position embedding of `tokens` rows."""
    for p in dict.fromkeys((prefix, 0)):
        side = math.isqrt(tokens - p) if tokens > p else 0
        if side and side * side == tokens - p:
            return p, (side, side)
    return None


def _resample(pos: torch.Tensor, grid: tuple[int, int], to: tuple[int, int], prefix: int) -> torch.Tensor:
    return resample_abs_pos_embed(pos.float(), list(to), list(grid), num_prefix_tokens=prefix, verbose=False)


def _residual(x: torch.Tensor, target: torch.Tensor) -> float:
    t = target.float()
    return float((x - t).norm() / t.norm()) if float(t.norm()) > 0 else math.inf


class _Measure:
    """The per-pair statistics gathered while `compare` holds each tensor pair in memory."""

    def __init__(self, it: Checkpoint, query: Checkpoint, roles: dict[str, TensorRole]):
        self.roles = roles
        self.prefix_it, self.prefix_query = _prefix_tokens(it), _prefix_tokens(query)
        self.stats: dict[str, dict[str, Any]] = {}  # name -> equal (None: same dtypes), r, z, resampled
        self.pos: PosEmbedEvidence | None = None

    def __call__(self, name: str, a: torch.Tensor, b: torch.Tensor) -> None:
        role = self.roles[name]
        s: dict[str, Any] = {"equal": None, "r": None, "z": None, "resampled": False}
        if a.dtype != b.dtype:  # (same dtypes: `compare`'s exact equality is the answer)
            s["equal"] = equal_at_lower_precision(a, b)
        self.stats[name] = s
        if a.shape != b.shape:
            if role.role != "pos_embed" or a.dim() != 3:
                return
            a = self._pos_embed(a, b)
            if a is None:
                return
            s["resampled"] = True
        axis = unit_axis(role, tuple(b.shape))
        if axis is not None:
            found = permutation_z(a, b, axis, column_seed(name, tuple(b.shape)))
            if found is not None:
                s["r"], s["z"] = found

    def _pos_embed(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor | None:
        """A (the library's) embedding resampled to B's grid, after measuring both directions."""
        ga, gb = _grid(a.shape[1], self.prefix_it), _grid(b.shape[1], self.prefix_query)
        if ga is None or gb is None or ga[0] != gb[0] or a.shape[2] != b.shape[2]:
            return None
        prefix = ga[0]
        a_to_b = _resample(a, ga[1], gb[1], prefix)
        res_ab = _residual(a_to_b, b)
        res_ba = _residual(_resample(b, gb[1], ga[1], prefix), a)
        ancestor = None
        if min(res_ab, res_ba) < POS_RESIDUAL:
            if res_ba >= POS_ASYMMETRY * res_ab:
                ancestor = "it"
            elif res_ab >= POS_ASYMMETRY * res_ba:
                ancestor = "query"
        self.pos = PosEmbedEvidence(list(ga[1]), list(gb[1]), res_ab, res_ba, ancestor)
        return a_to_b.to(b.dtype)


def _balance(t: TensorChange, role: TensorRole) -> float | None:
    """(|B|^2 - |A|^2) / |B-A|^2 of a moved matrix, from the float64 norms `compare` measured."""
    if (len(t.shape_a) < 2 or t.resized or not t.rel_change or not t.norm_a or t.norm_b is None
            or role.role in TOKEN_ROLES or role.role in ("head", "latent")):
        return None
    return (t.norm_b ** 2 - t.norm_a ** 2) / (t.rel_change * t.norm_a) ** 2


def _overall_change(cmp: Comparison) -> float | None:
    """||query - it|| / ||it|| over every tensor both hold with one shape (`compare` leaves its own total out when
    the depths differ; lineage still wants the distance over what they share)."""
    moved = [t for t in cmp.tensors if t.rel_change is not None and t.norm_a]
    base = sum(t.norm_a ** 2 for t in moved)
    return math.sqrt(sum((t.rel_change * t.norm_a) ** 2 for t in moved) / base) if base else None


def _blocks(names: list[str]) -> list[int]:
    return sorted({int(m.group(1)) for n in names if (m := _BLOCK.match(n))})


def _span(blocks: list[int]) -> str:
    """[0, 1, 2, 5] -> 'blocks 0-2, 5'."""
    runs: list[list[int]] = []
    for b in sorted(blocks):
        if runs and b == runs[-1][-1] + 1:
            runs[-1].append(b)
        else:
            runs.append([b])
    return ("block " if len(blocks) == 1 else "blocks ") + ", ".join(
        f"{r[0]}-{r[-1]}" if len(r) > 1 else str(r[0]) for r in runs)


def _direction(cmp: Comparison, measure: _Measure, evidence: list[TensorEvidence], only_it: list[int],
               only_query: list[int]) -> Direction:
    moved = [t for t in evidence if t.balance is not None]
    balances = [t.balance for t in moved]
    balance = spread = None
    strong: list[tuple[str, str]] = []  # (ancestor, cue)
    weak: list[tuple[str, str]] = []
    cues: list[str] = []
    both_moved = False
    if measure.pos is not None:
        p = measure.pos
        text = (f"position embedding on another grid ({p.grid_it[0]}x{p.grid_it[1]} vs "
                f"{p.grid_query[0]}x{p.grid_query[1]}): resampling it to the query's grid leaves "
                f"{p.residual_it_to_query:.1%}, the reverse {p.residual_query_to_it:.1%}")
        if p.ancestor is not None:
            who = "the query's was resampled from its" if p.ancestor == "it" else "its was resampled from the query's"
            strong.append((p.ancestor, f"{text}: {who}"))
        else:
            cues.append(f"{text}: no clear direction")
    if len(balances) >= MIN_BALANCE_TENSORS:
        q1, balance, q3 = (float(v) for v in np.quantile(balances, [0.25, 0.5, 0.75]))
        spread = q3 - q1
        change = float(np.median([t.rel_change for t in moved]))
        noise = float(np.median([2 / (t.rel_change * math.sqrt(math.prod(t.shape_it))) for t in moved]))
        text = f"Pythagorean balance {balance:+.2f} (spread {spread:.2f} over {len(balances)} matrices)"
        if change < MIN_READABLE_CHANGE or noise > MAX_BALANCE_NOISE:
            cues.append(f"{text}: not readable, the update is too small (median relative change {change:.2g}) "
                        "against the weights' own drift (weight decay) and noise")
        elif spread > READABLE_SPREAD:
            cues.append(f"{text}: too scattered across tensors to read")
        elif balance >= DERIVED_BALANCE:
            strong.append(("it", f"{text}: the query = it + an orthogonal update"))
        elif balance <= -DERIVED_BALANCE:
            strong.append(("query", f"{text}: it = the query + an orthogonal update"))
        elif abs(balance) <= SIBLING_BALANCE:
            both_moved = True
            cues.append(f"{text}: both moved away from a common point")
        else:
            cues.append(f"{text}: between descendant and sibling")
    head = cmp.head
    if head.status == "added":
        weak.append(("it", f"the query has a {head.classes_b}-class head and it has none (a head is added for a task)"))
    elif head.status == "removed":
        weak.append(("query", f"it has a {head.classes_a}-class head and the query has none"))
    elif head.status == "resized" and head.classes_a and head.classes_b and head.classes_a != head.classes_b:
        bigger = "it" if head.classes_a > head.classes_b else "query"
        weak.append((bigger, f"head resized {head.classes_a} -> {head.classes_b} classes (pretraining label sets are "
                             "the larger)"))
    if only_it and not only_query:
        weak.append(("it", f"the query lacks its {_span(only_it)}: dropped from it (or added to the query)"))
    elif only_query and not only_it:
        weak.append(("query", f"it lacks the query's {_span(only_query)}: dropped from the query (or added to it)"))
    cues += [c for _, c in strong] + [c for _, c in weak]
    sides = {a for a, _ in strong}
    if len(sides) == 1 and not both_moved:
        return Direction(sides.pop(), "strong", False, balance, spread, cues)
    if len(sides) > 1 or (sides and both_moved):
        cues.append("the cues disagree: read as siblings")
        return Direction(None, "none", True, balance, spread, cues)
    weak_sides = {a for a, _ in weak}
    if not both_moved and len(weak_sides) == 1:
        return Direction(weak_sides.pop(), "weak", False, balance, spread, cues)
    return Direction(None, "none", both_moved, balance, spread, cues)


def _groups(cmp: Comparison, evidence: list[TensorEvidence]) -> list[dict[str, Any]]:
    zs: dict[str, list[float]] = defaultdict(list)
    rs: dict[str, list[float]] = defaultdict(list)
    for t in evidence:
        if t.z is not None:
            zs[t.group].append(t.z)
            rs[t.group].append(t.r)
    return [{"group": g.group, "rel_change": finite_float(g.rel_change), "tensors": g.tensors,
             "mean_r": finite_float(sum(rs[g.group]) / len(rs[g.group])) if rs[g.group] else None,
             "z": finite_float(stouffer(zs[g.group]))} for g in cmp.groups]


def _moved_text(groups: list[dict[str, Any]]) -> str:
    """Which blocks moved and how far (relative change per block), and what else moved most."""
    blocks = [(int(g["group"].split(".")[1]), g["rel_change"]) for g in groups
              if _BLOCK.match(g["group"] + ".") and g["rel_change"] is not None]
    parts = []
    moved = [(b, c) for b, c in blocks if c > 0]
    if moved:
        top = max(moved, key=lambda bc: bc[1])
        lo, hi = min(c for _, c in moved), top[1]
        parts.append(f"{_span([b for b, _ in moved])} moved by {lo:.2g}-{hi:.2g} of their norm (most: block {top[0]})")
    still = [b for b, c in blocks if c == 0]
    if still:
        parts.append(f"{_span(still)} unchanged")
    others = sorted((g for g in groups if not _BLOCK.match(g["group"] + ".") and g["rel_change"]),
                    key=lambda g: -g["rel_change"])
    if others:
        parts.append("outside the blocks: " + ", ".join(f"{g['group']} {g['rel_change']:.2g}" for g in others[:3]))
    return "; ".join(parts)


def _head_edit(head: HeadChange) -> str | None:
    return {"added": f"a {head.classes_b}-class head added",
            "removed": f"its {head.classes_a}-class head removed",
            "resized": f"head resized {head.classes_a} -> {head.classes_b} classes",
            "replaced": "head replaced (re-initialized, same classes)",
            "renamed": "the heads are different tensors"}.get(head.status)


def incomparable(name: str, path: str, reason: str, fingerprint: dict[str, Any] | None = None) -> Relation:
    return Relation(name, path, "incomparable", None, reason, stage="fingerprint" if fingerprint else "exact",
                    fingerprint=fingerprint)


def relate(it: Checkpoint, query: Checkpoint, *, name: str = "", path: str = "") -> Relation:
    """How `it` (a library checkpoint) relates to `query`, from their weights (see the module docstring)."""
    with one_thread():
        return _relate(it, query, name or it.name or it.source, path or it.source)


def _relate(it: Checkpoint, query: Checkpoint, name: str, path: str) -> Relation:
    shapes_it = {n: it.tensors.shape(n) for n in it.tensors}
    shapes_q = {n: query.tensors.shape(n) for n in query.tensors}
    ok, why = comparability(core(shapes_it), core(shapes_q))
    if not ok:
        return incomparable(name, path, why)
    roles = assign_roles(list(it.tensors), it.tensors.shape, it.canonical, it.tensors.loader)
    measure = _Measure(it, query, roles)
    cmp = compare(it, query, verdicts=False, on_pair=measure)
    evidence = []
    for t in cmp.tensors:
        s, role = measure.stats[t.name], roles[t.name]
        evidence.append(TensorEvidence(
            t.name, t.group, role.slot, t.shape_a, t.shape_b, t.equal if s["equal"] is None else s["equal"],
            s["r"], s["z"], t.rel_change, t.cosine, _balance(t, role), s["resampled"]))
    score = stouffer([t.z for t in evidence if t.z is not None])
    groups = _groups(cmp, evidence)
    only_it, only_query = _blocks(cmp.only_in_a), _blocks(cmp.only_in_b)
    roles_q = assign_roles(list(query.tensors), query.tensors.shape, query.canonical, query.tensors.loader)
    one_sided = [n for n in cmp.only_in_a if roles[n].matters] + [n for n in cmp.only_in_b if roles_q[n].matters]
    rel = Relation(name, path, "unrelated", score, "", rel_change=_overall_change(cmp), tensors=evidence,
                   pos_embed=measure.pos,
                   head=cmp.head.to_dict(), moved=groups, blocks_only_in_it=only_it,
                   blocks_only_in_query=only_query, notes=list(cmp.notes))
    if score is None:
        rel.relation, rel.summary = "incomparable", "no tensor pair could be tested (all constant or resized)"
        return rel
    if score < RELATED_Z:
        rel.summary = (f"unrelated: combined z {score:.1f} is below {RELATED_Z:g} "
                       f"(same architecture, independently trained or initialized weights)")
        return rel
    if evidence and all(t.equal for t in evidence) and not one_sided:
        dtypes = sorted(set(it.tensors.dtypes) | set(query.tensors.dtypes))
        how = [f"layouts {it.layout} and {query.layout}"] if it.layout != query.layout else []
        how += [f"dtypes {', '.join(dtypes)} (compared at the lower precision)"] if len(dtypes) > 1 else []
        rel.relation, rel.ancestor = "identical", None
        rel.summary = (f"identical: all {len(evidence)} shared tensors hold the same values"
                       + (f" across {' and '.join(how)}" if how else ""))
        return rel
    rel.direction = direction = _direction(cmp, measure, evidence, only_it, only_query)
    moved = _moved_text(groups)
    edits = [e for e in [_head_edit(cmp.head)] if e]
    if measure.pos is not None:
        edits.append(f"position embedding resampled {measure.pos.grid_it[0]}x{measure.pos.grid_it[1]} <-> "
                     f"{measure.pos.grid_query[0]}x{measure.pos.grid_query[1]}")
    if only_it or only_query:
        edits.append(f"blocks only in it: {_span(only_it)}" if only_it else f"blocks only in the query: "
                                                                              f"{_span(only_query)}")
    detail = "; ".join(x for x in [moved, *edits] if x)
    if direction.ancestor is not None:
        rel.relation, rel.ancestor = "derived_from", direction.ancestor
        who = "the query descends from it" if direction.ancestor == "it" else "it descends from the query"
        rel.summary = f"derived: {who} ({direction.strength} evidence; z {score:.0f})" + (f"; {detail}" if detail else "")
    else:
        rel.relation = "sibling"
        rel.summary = (f"sibling: related (z {score:.0f}) but neither shown to descend from the other"
                       + ("; both moved away from a common ancestor" if direction.both_moved else "")
                       + (f"; {detail}" if detail else ""))
    return rel
