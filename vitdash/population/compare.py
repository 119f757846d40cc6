"""Two checkpoints side by side, tensor by tensor, on canonical names.

Layouts are mapped before comparing, so a torchvision file and its timm twin hold the same names and
compare as the same weights. Tensors are read one pair at a time (memory stays at two tensors), and
"same weights" means equal values after promoting both to a common dtype (an exact test). The change
in what the verdict reads (std, kurtosis, spectral structure, per-tensor verdict) comes from
`vitdash.trained.verdict`.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from vitdash.common.ordering import natural_key, natural_sorted
from vitdash.common.results import finite_float
from vitdash.errors import VitdashError
from vitdash.identity.architecture import infer_architecture
from vitdash.load.checkpoint import Checkpoint
from vitdash.trained.roles import TensorRole, assign_roles
from vitdash.trained.verdict import audit

# A head whose weights keep less than this cosine to the other's was re-initialized, not fine-tuned: fine-tuning
# moves a trained head by a fraction of its norm; a fresh head is nearly orthogonal to the old one.
REPLACED_COSINE = 0.2
# Norms and dot products in float64 up to this many entries (every ViT matrix), float32 beyond (memory).
EXACT_NUMEL = 1 << 24
# The verdict statistics carried per tensor (from `TensorReport.scalar`).
VERDICT_STATS = ("std", "excess_kurtosis", "structure")


@dataclass
class TensorChange:
    """One tensor both checkpoints hold. `rel_change` = ||B - A|| / ||A||; None when shapes differ."""

    name: str
    group: str
    shape_a: list[int]
    shape_b: list[int]
    rel_change: float | None
    cosine: float | None
    max_abs_diff: float | None
    equal: bool
    norm_a: float | None = None
    norm_b: float | None = None
    verdict_a: dict[str, Any] = field(default_factory=dict)  # {'verdict', 'std', 'excess_kurtosis', 'structure'}
    verdict_b: dict[str, Any] = field(default_factory=dict)

    @property
    def resized(self) -> bool:
        return self.shape_a != self.shape_b

    def stat_change(self, stat: str) -> float | None:
        a, b = self.verdict_a.get(stat), self.verdict_b.get(stat)
        return b - a if isinstance(a, (int, float)) and isinstance(b, (int, float)) else None

    def to_dict(self) -> dict[str, Any]:
        d = {"name": self.name, "group": self.group, "shape_a": self.shape_a, "shape_b": self.shape_b,
             "rel_change": finite_float(self.rel_change), "cosine": finite_float(self.cosine),
             "max_abs_diff": finite_float(self.max_abs_diff), "equal": self.equal, "resized": self.resized,
             "norm_a": finite_float(self.norm_a), "norm_b": finite_float(self.norm_b)}
        if self.verdict_a or self.verdict_b:
            d["verdict_a"], d["verdict_b"] = dict(self.verdict_a), dict(self.verdict_b)
            d["verdict_change"] = {s: finite_float(self.stat_change(s)) for s in VERDICT_STATS}
        return d


@dataclass
class GroupChange:
    """A block (or the head, an embedding, ...) as one unit: sqrt(sum ||dW||^2) / sqrt(sum ||W||^2)."""

    group: str
    rel_change: float | None
    tensors: int

    def to_dict(self) -> dict[str, Any]:
        return {"group": self.group, "rel_change": finite_float(self.rel_change), "tensors": self.tensors}


@dataclass
class HeadChange:
    """What happened to the classification head: unchanged, fine-tuned, replaced, resized, added, removed, none."""

    status: str
    name: str | None
    classes_a: int | None
    classes_b: int | None
    cosine: float | None
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "name": self.name, "classes_a": self.classes_a,
                "classes_b": self.classes_b, "cosine": finite_float(self.cosine), "detail": self.detail}


@dataclass
class Comparison:
    name_a: str
    name_b: str
    layout_a: str
    layout_b: str
    canonical: bool  # both mapped to timm names, so the names compared are canonical
    same_file: bool
    same_weights: bool
    rel_change: float | None  # over every tensor both hold with the same shape
    only_in_a: list[str]
    only_in_b: list[str]
    tensors: list[TensorChange]
    groups: list[GroupChange]  # in model order
    head: HeadChange
    model_verdict_a: str | None = None
    model_verdict_b: str | None = None
    notes: list[str] = field(default_factory=list)
    architectures: str | None = None  # how the two architectures differ; None when they are the same

    @property
    def matched(self) -> list[TensorChange]:
        """The tensors both hold with the same shape: the only ones a change can be measured on."""
        return [t for t in self.tensors if not t.resized]

    @property
    def most_moved(self) -> list[GroupChange]:
        return sorted((g for g in self.groups if g.rel_change is not None), key=lambda g: -g.rel_change)

    @property
    def resized(self) -> list[str]:
        return [t.name for t in self.tensors if t.resized]

    def summary(self) -> str:
        """One paragraph in words: what the CLI prints and the page leads with."""
        layouts = f"{self.layout_a} vs {self.layout_b}"
        if self.same_weights:
            how = "different layouts" if self.layout_a != self.layout_b else "the same layout"
            return (f"Same weights: all {len(self.tensors)} tensors are identical ({how}: {layouts})"
                    + ("; even the files are identical." if self.same_file else "."))
        if self.architectures:
            parts = [f"Different architectures ({self.architectures}; {layouts}): not one model fine-tuned from "
                     f"the other. Only the {len(self.matched)} of {len(self.tensors)} shared tensors whose shapes "
                     "match are compared, one by one; no overall change is given across different shapes."]
        else:
            parts = [f"Different weights ({layouts})."]
            if self.rel_change is not None:
                parts.append(f"Overall relative change ||B-A||/||A|| = {self.rel_change:.3g}.")
            top = [f"{g.group} ({g.rel_change:.3g})" for g in self.most_moved[:3] if g.rel_change > 0]
            if top:
                parts.append("Moved most: " + ", ".join(top) + ".")
        parts.append(f"Head: {self.head.detail}.")
        if self.only_in_a or self.only_in_b:
            parts.append(f"{len(self.only_in_a)} tensor(s) only in A, {len(self.only_in_b)} only in B.")
        if self.model_verdict_a and self.model_verdict_b:
            parts.append(f"Model verdict: A {self.model_verdict_a}, B {self.model_verdict_b}.")
        return " ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {"a": self.name_a, "b": self.name_b, "layout_a": self.layout_a, "layout_b": self.layout_b,
                "canonical": self.canonical, "same_file": self.same_file, "same_weights": self.same_weights,
                "rel_change": finite_float(self.rel_change), "only_in_a": list(self.only_in_a),
                "only_in_b": list(self.only_in_b), "resized": self.resized,
                "head": self.head.to_dict(), "groups": [g.to_dict() for g in self.groups],
                "most_moved": [g.group for g in self.most_moved[:5]],
                "model_verdict_a": self.model_verdict_a, "model_verdict_b": self.model_verdict_b,
                "architectures": self.architectures, "matched": len(self.matched),
                "summary": self.summary(), "notes": list(self.notes),
                "tensors": [t.to_dict() for t in self.tensors]}


def _relative(d2: float, a2: float) -> float | None:
    """sqrt(d2 / a2): None for a change from all zeros (no scale to measure it against)."""
    return math.sqrt(d2 / a2) if a2 > 0 else (None if d2 else 0.0)


def _pair(name: str, ta: torch.Tensor, tb: torch.Tensor, group: str) -> tuple[TensorChange, float, float]:
    """The change of one tensor, plus (||dW||^2, ||W_a||^2) for group sums (0, 0 when resized)."""
    shape_a, shape_b = list(ta.shape), list(tb.shape)
    if shape_a != shape_b:
        return TensorChange(name, group, shape_a, shape_b, None, None, None, False,
                            float(ta.double().norm()), float(tb.double().norm())), 0.0, 0.0
    common = torch.promote_types(ta.dtype, tb.dtype)
    equal = torch.equal(ta.detach().to(common), tb.detach().to(common))  # exact, whatever the two dtypes
    work = torch.float64 if ta.numel() <= EXACT_NUMEL else torch.float32
    x, y = ta.detach().to(work).reshape(-1), tb.detach().to(work).reshape(-1)
    d = y - x
    na2, nb2, nd2 = float(x @ x), float(y @ y), float(d @ d)
    na, nb = math.sqrt(na2), math.sqrt(nb2)
    rel = _relative(nd2, na2)
    cos = float(x @ y) / (na * nb) if na > 0 and nb > 0 else None
    max_abs = float(d.abs().max()) if d.numel() else 0.0
    return TensorChange(name, group, shape_a, shape_b, rel, cos, max_abs, equal, na, nb), nd2, na2


def _head_of(roles: dict[str, TensorRole]) -> str | None:
    """The classifier weight: canonical `head.weight`, else the first weight the roles call a head."""
    heads = [n for n, r in roles.items() if r.role == "head" and r.param == "weight"]
    return "head.weight" if "head.weight" in heads else (heads[0] if heads else None)


def _head_change(a: Checkpoint, b: Checkpoint, roles_a: dict[str, TensorRole], roles_b: dict[str, TensorRole],
                 changes: dict[str, TensorChange]) -> HeadChange:
    ha, hb = _head_of(roles_a), _head_of(roles_b)
    ca = a.tensors.shape(ha)[0] if ha else None
    cb = b.tensors.shape(hb)[0] if hb else None
    if ha is None and hb is None:
        return HeadChange("none", None, None, None, None, "neither checkpoint has a classification head")
    if hb is None:
        return HeadChange("removed", ha, ca, None, None, f"A has a {ca}-class head ({ha}), B has none")
    if ha is None:
        return HeadChange("added", hb, None, cb, None, f"B has a {cb}-class head ({hb}), A has none")
    t = changes.get(hb) if ha == hb else None
    if t is None:
        return HeadChange("renamed", hb, ca, cb, None, f"the heads are different tensors ({ha} in A, {hb} in B)")
    if t.resized:
        if ca != cb:
            return HeadChange("resized", hb, ca, cb, None,
                              f"resized ({ca} -> {cb} classes): a new head for a new label set")
        return HeadChange("resized", hb, ca, cb, None, f"resized ({tuple(t.shape_a)} -> {tuple(t.shape_b)}): same "
                                                       f"{ca} classes on features of another width")
    if t.equal:
        return HeadChange("unchanged", hb, ca, cb, t.cosine, f"unchanged ({ca} classes)")
    if t.cosine is None or abs(t.cosine) < REPLACED_COSINE:
        cos = "undefined (one head is all zeros)" if t.cosine is None else f"{t.cosine:.2f}"
        return HeadChange("replaced", hb, ca, cb, t.cosine,
                          f"replaced: same {ca} classes but cosine {cos} to the old head, a re-initialized head")
    return HeadChange("fine-tuned", hb, ca, cb, t.cosine,
                      f"fine-tuned ({ca} classes, cosine {t.cosine:.2f}, relative change {t.rel_change:.3g})")


def _architecture_difference(a: Checkpoint, b: Checkpoint, roles: dict[str, TensorRole],
                             changes: dict[str, TensorChange]) -> str | None:
    """How A's and B's networks differ (width, depth, patch, ...), None when one could be tuned from the other.
    A new head or another input resolution (a resized head or position embedding) is fine-tuning, not another
    architecture; layouts vitdash does not map are judged by their shapes alone."""
    if a.canonical and b.canonical:
        try:
            x, y = infer_architecture(a), infer_architecture(b)
        except VitdashError:
            x = y = None
        if x is not None and y is not None:
            fields = (("width", "embed_dim"), ("depth", "depth"), ("patch", "patch_size"),
                      ("MLP hidden", "mlp_hidden"), ("input channels", "in_chans"), ("attention width", "attn_dim"))
            diffs = [f"{label} {getattr(x, f)} vs {getattr(y, f)}" for label, f in fields
                     if getattr(x, f) != getattr(y, f)]
            return ", ".join(diffs) or None
    core = [t.name for t in changes.values() if t.resized and roles[t.name].role not in ("head", "pos_embed")]
    return f"{len(core)} shared tensors differ in shape, e.g. {core[0]}" if core else None


def _verdict_readings(ckpt: Checkpoint) -> tuple[str, dict[str, dict[str, Any]]]:
    aud = audit(ckpt)
    return aud.verdict, {t.name: {"verdict": t.verdict, **{s: t.stats.scalar(s) for s in VERDICT_STATS}}
                         for t in aud.tensors}


def compare(a: Checkpoint, b: Checkpoint, *, verdicts: bool = True,
            on_pair: Callable[[str, torch.Tensor, torch.Tensor], None] | None = None) -> Comparison:
    """Compare B against A (A is the reference: relative changes are relative to A's norms).

    `verdicts=False` skips the two verdict audits (the expensive part) when only distances are
    wanted, as in a population audit. `on_pair(name, tensor_a, tensor_b)` sees every shared tensor pair while
    it is in memory, so a caller measuring more (lineage) reads each tensor once.
    """
    if not len(a.tensors) or not len(b.tensors):
        raise VitdashError("cannot compare: one of the checkpoints holds no tensors")
    notes = []
    if a.canonical != b.canonical:
        odd = "A" if not a.canonical else "B"
        notes.append(f"{odd} is not in a recognized ViT layout, so its names were compared as they are; "
                     "names rarely match across layouts")
    names_a, names_b = natural_sorted(a.tensors), natural_sorted(b.tensors)
    set_a, set_b = set(names_a), set(names_b)
    shared = [n for n in names_a if n in set_b]
    roles_a = assign_roles(names_a, a.tensors.shape, a.canonical, a.tensors.loader)
    roles_b = assign_roles(names_b, b.tensors.shape, b.canonical, b.tensors.loader)

    changes: dict[str, TensorChange] = {}
    sums: dict[str, list[float]] = {}  # group -> [sum ||dW||^2, sum ||W_a||^2, same-shape tensors, tensors]
    for name in shared:
        group = roles_a[name].group
        ta, tb = a.tensors[name], b.tensors[name]
        change, d2, a2 = _pair(name, ta, tb, group)
        if on_pair is not None:
            on_pair(name, ta, tb)
        changes[name] = change
        s = sums.setdefault(group, [0.0, 0.0, 0, 0])
        s[0] += d2
        s[1] += a2
        s[2] += not change.resized
        s[3] += 1
    groups = [GroupChange(g, _relative(d2, a2) if same else None, int(k))
              for g, (d2, a2, same, k) in sorted(sums.items(), key=lambda kv: natural_key(kv[0]))]
    architectures = _architecture_difference(a, b, roles_a, changes)
    comparable = any(s[2] for s in sums.values()) and architectures is None
    rel_total = _relative(sum(s[0] for s in sums.values()), sum(s[1] for s in sums.values())) if comparable else None

    verdict_a = verdict_b = None
    if verdicts:
        verdict_a, read_a = _verdict_readings(a)
        verdict_b, read_b = _verdict_readings(b)
        for name, change in changes.items():
            change.verdict_a, change.verdict_b = read_a.get(name, {}), read_b.get(name, {})

    only_a = [n for n in names_a if n not in set_b]
    only_b = [n for n in names_b if n not in set_a]
    same = (not only_a and not only_b and bool(changes) and all(c.equal for c in changes.values()))
    dtypes_a, dtypes_b = a.tensors.dtypes, b.tensors.dtypes
    if same and dtypes_a != dtypes_b:
        notes.append(f"stored in different dtypes ({', '.join(dtypes_a)} vs {', '.join(dtypes_b)}) with equal values")
    return Comparison(
        name_a=a.name or a.source, name_b=b.name or b.source, layout_a=a.layout, layout_b=b.layout,
        canonical=a.canonical and b.canonical, same_file=bool(a.sha256) and a.sha256 == b.sha256,
        same_weights=same, rel_change=rel_total, only_in_a=only_a, only_in_b=only_b,
        tensors=[changes[n] for n in shared], groups=groups,
        head=_head_change(a, b, roles_a, roles_b, changes), model_verdict_a=verdict_a,
        model_verdict_b=verdict_b, notes=notes, architectures=architectures)
