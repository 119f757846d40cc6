"""A per-user quota on uploaded bytes held in a server's memory.

An upload lives in the server's memory (the uploader keeps the file, the session keeps the checkpoint read from
it) until it is saved to the library or the session ends; nothing on disk holds it. Without a bound one person
with several tabs could fill the server. So each session says what it holds, keyed by the signed-in user
(everyone shares '' on a laptop, where the quota is one person's anyway), and a new upload that would take the
user past $VITDASH_UPLOAD_QUOTA_MB (default 2048) is refused with what is held and how to free it.
"""
from __future__ import annotations

import threading
from collections.abc import Callable

from vitdash.common.memory import MB, megabytes_from_env
from vitdash.errors import VitdashError

DEFAULT_QUOTA_MB = 2048


class UploadQuota:
    """What each session holds, per user, under one limit per user. Thread-safe (sessions are threads)."""

    def __init__(self, limit_bytes: int):
        if limit_bytes <= 0:
            raise VitdashError(f"the upload quota must be positive, got {limit_bytes} bytes")
        self.limit = int(limit_bytes)
        self._held: dict[str, tuple[str, int]] = {}  # session -> (user, bytes)
        self._lock = threading.Lock()

    def used(self, user: str, besides: str | None = None) -> int:
        """Bytes `user` holds across sessions (leaving out session `besides`)."""
        with self._lock:
            return sum(n for s, (u, n) in self._held.items() if u == user and s != besides)

    def hold(self, user: str, session: str, nbytes: int) -> None:
        """Record that `session` of `user` holds `nbytes` now (replacing what it held before); VitdashError,
        and nothing recorded, when that would take the user past the quota. 0 releases the session."""
        with self._lock:
            others = sum(n for s, (u, n) in self._held.items() if u == user and s != session)
            if nbytes > 0 and others + nbytes > self.limit:
                raise VitdashError(
                    f"This upload ({nbytes / MB:,.1f} MB) would take your uploads held in the server's memory to "
                    f"{(others + nbytes) / MB:,.1f} MB, past the {self.limit / MB:,.0f} MB each person may hold "
                    f"(VITDASH_UPLOAD_QUOTA_MB). Your other tabs hold {others / MB:,.1f} MB: save those uploads to "
                    "the library or close the tabs, then try again.")
            if nbytes > 0:
                self._held[session] = (user, int(nbytes))
            else:
                self._held.pop(session, None)

    def prune(self, alive: Callable[[str], bool]) -> None:
        """Forget sessions that ended (their uploads went with them)."""
        with self._lock:
            for session in [s for s in self._held if not alive(s)]:
                del self._held[session]


_SHARED: UploadQuota | None = None
_SHARED_LOCK = threading.Lock()


def shared_quota() -> UploadQuota:
    """The process-wide quota every session reports to ($VITDASH_UPLOAD_QUOTA_MB per user)."""
    global _SHARED
    with _SHARED_LOCK:
        if _SHARED is None:
            _SHARED = UploadQuota(megabytes_from_env("VITDASH_UPLOAD_QUOTA_MB", DEFAULT_QUOTA_MB))
        return _SHARED
