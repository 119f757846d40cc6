"""The whole library as a family tree: checkpoints are nodes, "derived from" relations are edges.

Every entry is searched against every other by fingerprint (one vectorized search per entry), and only the pairs
the fingerprints flag are compared exactly. Each checkpoint hangs from its nearest ancestor (the smallest change);
identical copies and siblings are kept as their own kinds of edges.
"""
from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from vitdash.errors import VitdashError
from vitdash.history import AuditHistory
from vitdash.load.library import LibraryEntry
from vitdash.load.sources import load
from vitdash.common.results import Progress, ProgressFn
from vitdash.population.lineage import FingerprintBook, StopFn, open_history
from vitdash.population.lineage_fingerprint import Fingerprint, FingerprintIndex
from vitdash.population.lineage_relations import relate


@dataclass
class TreeEdge:
    """`source` -> `target`: for 'derived_from', the ancestor and its descendant; `nearest` marks the edge to a
    checkpoint's closest ancestor (the tree itself; the others reach further back)."""

    source: str
    target: str
    relation: str
    score: float
    rel_change: float | None
    strength: str = ""
    nearest: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class FamilyTree:
    """`nodes`: one per distinct content (identical copies are one node, named by its first copy; `copies` lists
    the rest) with its `generation` (0 for a root); `edges` between nodes."""

    nodes: list[dict[str, Any]]
    edges: list[TreeEdge]
    pairs_compared: int
    skipped: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"nodes": self.nodes, "edges": [e.to_dict() for e in self.edges], "pairs_compared": self.pairs_compared,
                "skipped": list(self.skipped)}


def _copies(names: list[str], edges: list[TreeEdge]) -> dict[str, str]:
    """Each name -> the first (in `names`' order of preference) of its identical copies."""
    rep = {n: n for n in names}
    order = {n: i for i, n in enumerate(names)}

    def find(n: str) -> str:
        while rep[n] != n:
            n = rep[n]
        return n

    for e in edges:
        if e.relation == "identical":
            a, b = sorted((find(e.source), find(e.target)), key=order.get)
            rep[b] = a
    return {n: find(n) for n in names}


def _tree_edges(names: list[str], edges: list[TreeEdge]) -> list[TreeEdge]:
    """Edges between copy groups: each node hangs from its nearest ancestor (the smallest change). Kin within one
    tree is shown by the tree, so a sibling link is kept only between trees (their common ancestor is not in the
    library), and a weak direction between two children of one parent (a head added, say) is not read as a
    descent: the parent is the nearer of the two, as `lineage` reads it too."""
    order = {n: i for i, n in enumerate(names)}
    by_pair: dict[tuple[str, str], TreeEdge] = {}
    for e in edges:
        if e.relation != "identical" and e.source != e.target:
            by_pair.setdefault((e.source, e.target), e)
    parent: dict[str, TreeEdge] = {}
    for e in sorted((e for e in by_pair.values() if e.relation == "derived_from"),
                    key=lambda e: (e.rel_change if e.rel_change is not None else 1e9, order[e.source])):
        parent.setdefault(e.target, e)
    def root(n: str, seen: frozenset = frozenset()) -> str:
        p = parent.get(n)
        return n if p is None or p.source in seen else root(p.source, seen | {n})

    kept = []
    for e in by_pair.values():
        shared = e.source in parent and e.target in parent and parent[e.source].source == parent[e.target].source
        if e.relation == "derived_from":
            e.nearest = parent.get(e.target) is e
            if e.nearest or not (e.strength == "weak" and shared):
                kept.append(e)
        elif root(e.source) != root(e.target):  # kin the tree does not show: an ancestor outside the library
            kept.append(e)
    return kept


def _precision(fp: Fingerprint) -> int:
    """Mantissa bits of a checkpoint's least precise floating-point tensor."""
    bits = {"float64": 52, "float32": 23, "float16": 10, "bfloat16": 7}
    return min((bits[d] for d in fp.dtypes if d in bits), default=0)


def _generations(names: list[str], edges: list[TreeEdge]) -> dict[str, int]:
    parent = {e.target: e.source for e in edges if e.nearest}
    gen: dict[str, int] = {}

    def depth(n: str, seen: frozenset = frozenset()) -> int:
        if n not in gen:
            p = parent.get(n)
            gen[n] = 0 if p is None or p in seen else depth(p, seen | {n}) + 1
        return gen[n]

    return {n: depth(n) for n in names}


def family_tree(library: Sequence[LibraryEntry], *, history: AuditHistory | None = None,
                book: FingerprintBook | None = None, progress: ProgressFn | None = None,
                should_stop: StopFn | None = None) -> FamilyTree:
    """Relations among all library entries that are built (see the module docstring); stopped early (the job
    queue's cancel), the tree holds what was compared until then."""
    say = progress or (lambda p: None)
    book = book or FingerprintBook(open_history(history))
    entries = [e for e in library if e.ready]
    skipped = [{"name": e.name, "path": e.source, "reason": "not built yet"} for e in library if not e.ready]
    prints, errors = book.library(entries, progress, should_stop)
    skipped += [{"name": e.name, "path": e.source, "reason": errors[e.source]} for e in entries if e.source in errors]
    entries = [e for e in entries if e.source in prints]
    index = FingerprintIndex([prints[e.source] for e in entries])
    pairs = [(i, j) for i, e in enumerate(entries) for j, m in enumerate(index.search(prints[e.source]))
             if i < j and m.candidate]
    loaded = functools.lru_cache(maxsize=4)(load)
    edges: list[TreeEdge] = []
    for k, (i, j) in enumerate(pairs):
        if should_stop is not None and should_stop():
            break
        a, b = entries[i], entries[j]
        say(Progress(k, len(pairs), f"comparing {a.name} with {b.name} ({k + 1} of {len(pairs)} related pairs)",
                     stage="comparing related pairs"))
        try:
            rel = relate(loaded(a.source), loaded(b.source), name=a.name, path=a.source)
        except (VitdashError, OSError, RuntimeError, ValueError):
            continue
        if rel.relation == "derived_from":
            parent, child = (a, b) if rel.ancestor == "it" else (b, a)
            edges.append(TreeEdge(parent.name, child.name, "derived_from", rel.score, rel.rel_change,
                                  rel.direction.strength if rel.direction else ""))
        elif rel.relation in ("identical", "sibling"):
            edges.append(TreeEdge(a.name, b.name, rel.relation, rel.score, rel.rel_change))
    say(Progress(1, 1, "done", stage="done"))
    by_name = {e.name: e for e in entries}
    names = [e.name for e in entries]
    # The copy that names a group: the most precise (an fp32 original before its fp16 re-save), then by name.
    rep = _copies(sorted(names, key=lambda n: (-_precision(prints[by_name[n].source]), n)), edges)
    groups = [n for n in names if rep[n] == n]
    grouped = [TreeEdge(rep[e.source], rep[e.target], e.relation, e.score, e.rel_change, e.strength) for e in edges]
    tree_edges = _tree_edges(groups, grouped)
    gens = _generations(groups, tree_edges)
    nodes = [{"name": n, "path": by_name[n].source, "origin": by_name[n].origin, "generation": gens[n],
              "copies": [c for c in names if rep[c] == n and c != n]} for n in groups]
    return FamilyTree(nodes, tree_edges, len(pairs), skipped)
