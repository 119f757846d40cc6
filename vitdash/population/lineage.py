"""What was it made from? One checkpoint against every checkpoint vitdash knows, from the weights alone.

Every library entry gets a fingerprint (`lineage_fingerprint`) the first time it is seen, kept in the history
database under its content hash (a file's hash is remembered by path, size and modification time, so it is not
read again until it changes). A search scores the query's fingerprint against all of them at once and compares
exactly (`lineage_relations.relate`) only the few whose samples correlate beyond chance; the rest are reported
as unrelated (or incomparable) from their fingerprints. The file's own claims about its lineage are then checked
against what the weights show (`lineage_claims`).
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vitdash.common.results import Progress, ProgressFn, finite_float
from vitdash.errors import VitdashError
from vitdash.history import AuditHistory
from vitdash.load.checkpoint import Checkpoint
from vitdash.load.library import ORIGIN_FOLDER, LibraryEntry, scan_folder
from vitdash.load.sources import load
from vitdash.population.lineage_claims import ClaimCheck, aliases, check_claims
from vitdash.population.lineage_fingerprint import (
    VERSION,
    Fingerprint,
    FingerprintIndex,
    Match,
    TensorPlan,
    fingerprint,
)
from vitdash.population.lineage_null import RELATED_Z, false_positive_rate
from vitdash.population.lineage_relations import Relation, incomparable, relate

StopFn = Callable[[], bool]
STOPPED = "not compared: the search was stopped"
_ORDER = {"identical": 0, "derived_from": 1, "sibling": 2, "unrelated": 3, "incomparable": 4}


@dataclass
class Lineage:
    """A checkpoint's relatives in the library, with the evidence, and its claims checked."""

    name: str
    source: str
    sha256: str
    relations: list[Relation]
    claims: list[ClaimCheck]
    library_size: int
    candidates: int  # entries the fingerprints picked for the exact comparison
    skipped: list[dict[str, str]] = field(default_factory=list)  # entries not compared, and why
    found_as: str | None = None  # the library entry that is this very checkpoint (skipped)
    timings: dict[str, float] = field(default_factory=dict)

    def of(self, relation: str) -> list[Relation]:
        return [r for r in self.relations if r.relation == relation]

    @property
    def stopped(self) -> bool:
        return any(s["reason"] == STOPPED for s in self.skipped)

    @property
    def ancestors(self) -> list[Relation]:
        """Checkpoints it descends from, nearest first (smallest overall change)."""
        found = [r for r in self.relations if r.relation == "derived_from" and r.ancestor == "it"]
        return sorted(found, key=lambda r: (r.rel_change is None, r.rel_change or 0.0))

    @property
    def descendants(self) -> list[Relation]:
        return [r for r in self.relations if r.relation == "derived_from" and r.ancestor == "query"]

    def summary(self) -> str:
        parts = []
        if self.of("identical"):
            parts.append("the same weights as " + ", ".join(r.name for r in self.of("identical")))
        if self.ancestors:
            a = self.ancestors[0]
            parts.append(f"derived from {a.name} ({a.direction.strength if a.direction else 'strong'} evidence)"
                         + (f", and further back from {', '.join(r.name for r in self.ancestors[1:])}"
                            if len(self.ancestors) > 1 else ""))
        if self.descendants:
            parts.append("the ancestor of " + ", ".join(r.name for r in self.descendants))
        if self.of("sibling"):
            parts.append("a sibling of " + ", ".join(r.name for r in self.of("sibling")))
        compared = len(self.relations)
        if not parts:
            return (f"No relative among the {compared} library checkpoints compared: every one scores as unrelated "
                    f"or has another architecture.")
        return f"{self.name} is " + "; ".join(parts) + f" ({compared} library checkpoints compared)."

    def to_dict(self) -> dict[str, Any]:
        return {"checkpoint": {"name": self.name, "source": self.source, "sha256": self.sha256},
                "summary": self.summary(), "found_in_library_as": self.found_as,
                "relations": [r.to_dict() for r in sorted(self.relations, key=_rank)],
                "claims": [c.to_dict() for c in self.claims], "library_size": self.library_size,
                "candidates": self.candidates, "skipped": list(self.skipped), "stopped": self.stopped,
                "related_z": RELATED_Z, "false_positive_rate_per_pair": false_positive_rate(),
                "timings_s": {k: finite_float(v) for k, v in self.timings.items()}}


def _rank(r: Relation) -> tuple[int, int, float]:
    """Identical first, then ancestors nearest first, descendants, siblings, and the rest by score."""
    if r.relation == "derived_from":
        return _ORDER[r.relation], int(r.ancestor != "it"), r.rel_change if r.rel_change is not None else 1e9
    return _ORDER[r.relation], 0, -(r.score or 0.0)


def library_in(folders: Sequence[str | os.PathLike]) -> list[LibraryEntry]:
    """The checkpoints under these folders only (the CLI's and report's `--library`)."""
    entries = []
    for folder in folders:
        path = Path(folder).expanduser()
        if not path.is_dir():
            raise VitdashError(f"library folder {path} does not exist")
        entries += scan_folder(path, ORIGIN_FOLDER, prefix=f"{path.name}/")
    return entries


def _stamp(path: Path) -> tuple[int, int]:
    """(size, newest modification) of a file or of every file under a folder: what says it changed."""
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    stats = [p.stat() for p in files]
    return sum(s.st_size for s in stats), max((s.st_mtime_ns for s in stats), default=0)


class FingerprintBook:
    """Fingerprints by content hash: in this process, then the history database, else computed and saved."""

    def __init__(self, history: AuditHistory | None):
        self.history = history
        self._cache: dict[str, Fingerprint] = {}
        self._plans: dict[str, TensorPlan] = {}  # parsed once per architecture

    def of(self, ckpt: Checkpoint) -> Fingerprint:
        """The checkpoint's fingerprint, computed (one read of its tensors) only if never stored."""
        sha = ckpt.sha256
        found = self.lookup([sha]).get(sha)
        if found is None:
            found = fingerprint(ckpt)
            self._cache[sha] = found
            if self.history is not None:
                self.history.save_fingerprint(sha, VERSION, found.name, found.to_bytes())
        return found

    def lookup(self, hashes: Sequence[str]) -> dict[str, Fingerprint]:
        missing = [h for h in hashes if h not in self._cache]
        if missing and self.history is not None:
            for sha, blob in self.history.fingerprints(missing, VERSION).items():
                self._cache[sha] = Fingerprint.from_bytes(blob, self._plans)
        return {h: self._cache[h] for h in hashes if h in self._cache}

    def library(self, entries: Sequence[LibraryEntry], progress: ProgressFn | None = None,
                should_stop: StopFn | None = None) -> tuple[dict[str, Fingerprint], dict[str, str]]:
        """Fingerprints of the entries (by source), computing what is missing; and the errors (by source). Once
        `should_stop()` says so, entries not fingerprinted yet are in neither."""
        stamps: dict[str, tuple[str, int, int]] = {}
        errors: dict[str, str] = {}
        for e in entries:
            try:
                real = os.path.realpath(e.source)
                stamps[e.source] = (real, *_stamp(Path(real)))
            except OSError as exc:
                errors[e.source] = f"could not be read: {exc.strerror or exc}"
        known = self.history.known_hashes(list(stamps.values())) if self.history is not None else {}
        hashes = {src: known[s[0]] for src, s in stamps.items() if s[0] in known}
        prints = self.lookup(list(hashes.values()))
        out = {src: prints[h] for src, h in hashes.items() if h in prints}
        todo = [e for e in entries if e.source in stamps and e.source not in out]
        for i, e in enumerate(todo):
            if should_stop is not None and should_stop():
                break
            if progress is not None:
                progress(Progress(i, len(todo), f"fingerprinting {e.name} ({i + 1} of {len(todo)} not seen before)",
                                  stage="fingerprinting the library"))
            try:
                ckpt = load(e.source)
                out[e.source] = self.of(ckpt)
            except (VitdashError, OSError, RuntimeError, ValueError) as exc:
                errors[e.source] = f"could not be read: {exc}"
                continue
            if self.history is not None:
                self.history.remember_hash(*stamps[e.source], ckpt.sha256)
        return out, errors


def open_history(history: AuditHistory | None) -> AuditHistory | None:
    if history is not None:
        return history
    try:
        return AuditHistory()
    except VitdashError:
        return None  # no writable database: fingerprints are computed for this call only


def lineage(ckpt: Checkpoint, library: Sequence[LibraryEntry], *, history: AuditHistory | None = None,
            book: FingerprintBook | None = None, progress: ProgressFn | None = None,
            should_stop: StopFn | None = None) -> Lineage:
    """`ckpt`'s relatives among `library` (entries not built yet, like the demo pair before first use, are
    skipped). Fingerprints are kept in `history` (default: the audit history database). When `should_stop()`
    turns true (the job queue's cancel) the search ends early: what is left is listed as skipped."""
    say = progress or (lambda p: None)
    book = book or FingerprintBook(open_history(history))
    times: dict[str, float] = {}
    start = time.perf_counter()
    query = book.of(ckpt)
    times["fingerprint_query"] = time.perf_counter() - start
    own = os.path.realpath(ckpt.source) if Path(ckpt.source).exists() else None
    entries, skipped = [], []
    for e in library:
        if not e.ready:
            skipped.append({"name": e.name, "path": e.source, "reason": "not built yet (built on first use)"})
        elif own is not None and os.path.realpath(e.source) == own:
            skipped.append({"name": e.name, "path": e.source, "reason": "the checkpoint itself"})
        else:
            entries.append(e)
    start = time.perf_counter()
    prints, errors = book.library(entries, progress, should_stop)
    times["fingerprint_library"] = time.perf_counter() - start
    found_as = next((s["name"] for s in skipped if s["reason"] == "the checkpoint itself"), None)
    if own is None:  # an upload or a Hub download: the same content in the library is the checkpoint itself
        same = [e for e in entries if e.source in prints and prints[e.source].sha256 == query.sha256]
        for e in same:
            skipped.append({"name": e.name, "path": e.source, "reason": "the checkpoint itself (same content)"})
        found_as = same[0].name if same else found_as
        entries = [e for e in entries if e not in same]
    start = time.perf_counter()
    indexed = [e for e in entries if e.source in prints]
    matches = FingerprintIndex([prints[e.source] for e in indexed]).search(query)
    times["search"] = time.perf_counter() - start
    relations = [incomparable(e.name, e.source, errors[e.source]) for e in entries if e.source in errors]
    skipped += [{"name": e.name, "path": e.source, "reason": STOPPED} for e in entries
                if e.source not in prints and e.source not in errors]
    picked = [(e, m) for e, m in zip(indexed, matches) if m.candidate]
    relations += [_from_fingerprint(e, m) for e, m in zip(indexed, matches) if not m.candidate]
    start = time.perf_counter()
    for i, (e, m) in enumerate(sorted(picked, key=lambda em: -(em[1].z or 0.0))):
        if should_stop is not None and should_stop():
            skipped.append({"name": e.name, "path": e.source, "reason": STOPPED})
            continue
        say(Progress(i, len(picked), f"comparing with {e.name} ({i + 1} of {len(picked)} candidates)",
                     stage="comparing the candidates"))
        try:
            rel = relate(load(e.source), ckpt, name=e.name, path=e.source)
        except (VitdashError, OSError, RuntimeError, ValueError) as exc:
            rel = incomparable(e.name, e.source, f"could not be compared: {exc}")
        rel.fingerprint = m.to_dict()
        relations.append(rel)
    _settle_weak(relations)
    times["exact"] = time.perf_counter() - start
    say(Progress(1, 1, "done", stage="done"))
    relations.sort(key=_rank)
    library_names = [(e.name, aliases(e.name, e.source)) for e in entries]
    claims = check_claims(query.claims, relations, library_names)
    return Lineage(ckpt.name or ckpt.source, ckpt.source, query.sha256, relations, claims, len(library),
                   len(picked), skipped, found_as, times)


def _strong(r: Relation, ancestor: str) -> bool:
    return r.relation == "derived_from" and r.ancestor == ancestor and r.direction is not None and \
        r.direction.strength == "strong"


def _settle_weak(relations: list[Relation]) -> None:
    """A descent read from weak cues alone (a head added) is tested against the library: when the query and that
    checkpoint both descend, with strong evidence, from one library checkpoint that is nearer the query than it
    is, they are that parent's children, siblings (were it the query's parent instead, in a chain, it would be
    the nearer of the two)."""
    parents = [r for r in relations if _strong(r, "it")]
    for r in relations:
        if r.relation != "derived_from" or r.direction is None or r.direction.strength != "weak":
            continue
        for p in parents:
            if p.rel_change is None or r.rel_change is None or p.rel_change >= r.rel_change:
                continue
            try:
                shared = _strong(relate(load(p.path), load(r.path)), "it")
            except (VitdashError, OSError, RuntimeError, ValueError):
                continue
            if shared:
                r.relation, r.ancestor = "sibling", None
                r.direction.ancestor, r.direction.strength, r.direction.both_moved = None, "none", True
                r.direction.cues.append(f"both descend from {p.name} (strong evidence each), which is nearer the "
                                        "query than it is: children of one parent, so the weak cue is not read "
                                        "as a descent")
                r.summary = f"sibling: both descend from {p.name}, which is in the library (z {r.score:.0f})"
                break


def lineage_bytes(ckpt: Checkpoint, library: Sequence[LibraryEntry]) -> int:
    """The job queue's reservation for `lineage` and `family_tree`: two checkpoints read at once (the query, or a
    pair of the library, and the one compared with it) plus float64 scratch for the largest of them."""
    largest = max([ckpt.nbytes, *(e.size_bytes for e in library)], default=0)
    return 3 * largest + (64 << 20)


def _from_fingerprint(e: LibraryEntry, m: Match) -> Relation:
    """A relation settled by the fingerprints alone: another architecture, or no correlation beyond chance."""
    if not m.comparable:
        return incomparable(e.name, e.source, m.reason, fingerprint=m.to_dict())
    z = "n/a" if m.z is None else f"{m.z:.1f}"
    return Relation(e.name, e.source, "unrelated", m.z, f"unrelated: the fingerprints' samples correlate at chance "
                    f"level (z {z} over {m.shared} tensors)", stage="fingerprint", fingerprint=m.to_dict())
