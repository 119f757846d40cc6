"""The shared, cached sequence behind every page, the report, the history and the CLI.

Loading, building, auditing: each result is kept once per content in the process-wide byte-bounded cache
(`vitdash.cache`), so sessions opening the same file share one copy and a page rerun costs nothing.
`run_pipeline` is the audit -> architecture -> accuracy sequence that the report, the History page and the
CLI all record.
"""
from __future__ import annotations

from vitdash.cache import ByteLRU, or_shared, pickled_size
from vitdash.common.results import ProgressFn
from vitdash.identity.model import build_model
from vitdash.load.sources import load, load_bytes
from vitdash.trained.verdict import Audit, audit


def cached_checkpoint(source: str, fingerprint: str = "", cache: ByteLRU | None = None):
    """`load(source)` through the cache; `fingerprint` (size/mtime) makes a rewritten file reload."""
    return or_shared(cache).get_or_load(("checkpoint", source, fingerprint), lambda: load(source))


def cached_upload(data: bytes, filename: str, digest: str, cache: ByteLRU | None = None):
    """An upload through the cache, keyed by its own sha256: only a session holding the same bytes can ask for it."""
    return or_shared(cache).get_or_load(("upload", digest, filename), lambda: load_bytes(data, filename))


def cached_model(ckpt, cache: ByteLRU | None = None):
    """`build_model(ckpt)` once per content hash, shared by sessions (eval mode; do not mutate)."""
    if not ckpt.sha256:
        return build_model(ckpt)
    return or_shared(cache).get_or_load(("model", ckpt.sha256), lambda: build_model(ckpt))


def cached_audit(ckpt, progress: ProgressFn | None = None, cache: ByteLRU | None = None) -> Audit:
    """`audit(ckpt)` once per content and source, shared by sessions and pages (`progress` is reported only
    by the call that runs it)."""
    if not ckpt.sha256:
        return audit(ckpt, progress)
    return or_shared(cache).get_or_load(("audit", ckpt.sha256, ckpt.source), lambda: audit(ckpt, progress),
                                        size=pickled_size)
