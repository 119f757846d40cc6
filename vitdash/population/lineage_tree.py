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
from vitdash.population.lineage import FingerprintBook, ProgressFn, open_history
from vitdash.population.lineage_fingerprint import FingerprintIndex
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
    nodes: list[dict[str, Any]]  # name, path, origin, generation (0 for a root)
    edges: list[TreeEdge]
    pairs_compared: int
    skipped: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"nodes": self.nodes, "edges": [e.to_dict() for e in self.edges], "pairs_compared": self.pairs_compared,
                "skipped": list(self.skipped)}


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
                book: FingerprintBook | None = None, progress: ProgressFn | None = None) -> FamilyTree:
    """Relations among all library entries that are built (see the module docstring)."""
    say = progress or (lambda done, total, message: None)
    book = book or FingerprintBook(open_history(history))
    entries = [e for e in library if e.ready]
    skipped = [{"name": e.name, "path": e.source, "reason": "not built yet"} for e in library if not e.ready]
    prints, errors = book.library(entries, progress)
    skipped += [{"name": e.name, "path": e.source, "reason": errors[e.source]} for e in entries if e.source in errors]
    entries = [e for e in entries if e.source in prints]
    index = FingerprintIndex([prints[e.source] for e in entries])
    pairs = [(i, j) for i, e in enumerate(entries) for j, m in enumerate(index.search(prints[e.source]))
             if i < j and m.candidate]
    loaded = functools.lru_cache(maxsize=4)(load)
    edges: list[TreeEdge] = []
    for k, (i, j) in enumerate(pairs):
        a, b = entries[i], entries[j]
        say(k, len(pairs), f"comparing {a.name} with {b.name} ({k + 1} of {len(pairs)} related pairs)")
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
    say(1, 1, "done")
    nearest: dict[str, TreeEdge] = {}
    for e in edges:
        if e.relation == "derived_from":
            best = nearest.get(e.target)
            if best is None or (e.rel_change or 0.0) < (best.rel_change or 0.0):
                nearest[e.target] = e
    for e in nearest.values():
        e.nearest = True
    gens = _generations([e.name for e in entries], edges)
    nodes = [{"name": e.name, "path": e.source, "origin": e.origin, "generation": gens[e.name]} for e in entries]
    return FamilyTree(nodes, edges, len(pairs), skipped)
