"""A byte-bounded LRU shared by every session of one server process.

Several people opening different ViT-B files at once must not exhaust RAM: `st.cache_resource` bounds
entries, not bytes, and a ViT-H weighs as much as forty ViT-S. Entries here are counted by the bytes they
hold (a checkpoint: its tensors' bytes; a built model: its parameters' and buffers' bytes; a result such as
an audit: its pickled size) and the least recently used are dropped first once the bound ($VITDASH_CACHE_MB;
default 4096, or a third of the server's memory budget $VITDASH_MEMORY_MB when that is smaller, so the cache
leaves room for running jobs) would be passed. It knows nothing of what it holds: the stages' own modules
choose keys and sizes.

Loads are single-flight: sessions asking for the same key at once wait for one load instead of each
reading the file; different keys load in parallel. A value larger than the whole bound is returned but not
kept, so one huge file cannot flush everyone else's models.
"""
from __future__ import annotations

import pickle
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

from vitdash.common.memory import MB, megabytes_from_env, memory_budget
from vitdash.errors import VitdashError

DEFAULT_MB = 4096
V = TypeVar("V")


def nbytes(value: Any) -> int:
    """Bytes a cached value holds: a checkpoint's tensors (its `nbytes`), a module's parameters and buffers, a
    tensor's data, or the sum over a list/tuple/dict of such values."""
    import torch

    if isinstance(value, torch.nn.Module):
        tensors = {id(t): t for t in (*value.parameters(), *value.buffers())}  # tied weights counted once
        return sum(t.numel() * t.element_size() for t in tensors.values())
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(getattr(value, "nbytes", None), int):
        return value.nbytes
    raise TypeError(f"no byte size known for {type(value).__name__}; pass size= explicitly")


def pickled_size(value: Any) -> int:
    """Bytes of a result made of numbers and strings (an audit, head evidence), as its pickle: below what
    Python's objects take, but in proportion, which is what the LRU's order of eviction needs."""
    return len(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))


@dataclass
class CacheStats:
    entries: int
    bytes: int
    max_bytes: int
    hits: int
    misses: int
    evictions: int
    uncached: int  # values returned but too large to keep
    peak_bytes: int

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


class ByteLRU:
    """Thread-safe LRU mapping whose entries' byte sizes never sum past `max_bytes`."""

    def __init__(self, max_bytes: int):
        if max_bytes <= 0:
            raise VitdashError(f"cache bound must be positive, got {max_bytes} bytes")
        self.max_bytes = int(max_bytes)
        self._items: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self._loading: dict[Hashable, threading.Lock] = {}
        self._hits = self._misses = self._evictions = self._uncached = self._peak = 0

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._items

    @property
    def total_bytes(self) -> int:
        return self._bytes

    def keys(self) -> list[Hashable]:
        """Least recently used first."""
        with self._lock:
            return list(self._items)

    def get(self, key: Hashable, default: Any = None) -> Any:
        with self._lock:
            return self._get_locked(key, default)

    def _get_locked(self, key: Hashable, default: Any) -> Any:
        item = self._items.get(key)
        if item is None:
            return default
        self._items.move_to_end(key)
        self._hits += 1
        return item[0]

    def put(self, key: Hashable, value: Any, size: int) -> bool:
        """Keep `value` (dropping least recently used entries to make room); False when it alone exceeds the bound."""
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            if size > self.max_bytes:
                self._uncached += 1
                return False
            while self._items and self._bytes + size > self.max_bytes:
                _, (_, dropped) = self._items.popitem(last=False)
                self._bytes -= dropped
                self._evictions += 1
            self._items[key] = (value, size)
            self._bytes += size
            self._peak = max(self._peak, self._bytes)
            return True

    def shrink(self, free_bytes: int) -> int:
        """Drop least recently used entries until `free_bytes` are released or none is left; returns the bytes
        dropped. A job queue that needs room calls it: a dropped entry is simply reloaded on its next use."""
        dropped = 0
        with self._lock:
            while self._items and dropped < free_bytes:
                _, (_, size) = self._items.popitem(last=False)
                self._bytes -= size
                self._evictions += 1
                dropped += size
        return dropped

    def discard(self, key: Hashable) -> None:
        with self._lock:
            item = self._items.pop(key, None)
            if item is not None:
                self._bytes -= item[1]

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0

    def get_or_load(self, key: Hashable, load: Callable[[], V], size: Callable[[V], int] = nbytes) -> V:
        """The cached value, or `load()` run once however many threads ask for `key` at the same time."""
        marker = object()
        with self._lock:
            value = self._get_locked(key, marker)
            if value is not marker:
                return value
            key_lock = self._loading.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                value = self._get_locked(key, marker)
                if value is not marker:
                    return value
                self._misses += 1
            try:
                value = load()
                self.put(key, value, size(value))
            finally:
                with self._lock:
                    if self._loading.get(key) is key_lock:
                        del self._loading[key]
        return value

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(len(self._items), self._bytes, self.max_bytes, self._hits, self._misses,
                              self._evictions, self._uncached, self._peak)


def bound_from_env() -> int:
    """$VITDASH_CACHE_MB in bytes (default: 4096 MB or a third of the memory budget, whichever is less)."""
    return megabytes_from_env("VITDASH_CACHE_MB", min(DEFAULT_MB, memory_budget() / 3 / MB))


_SHARED: ByteLRU | None = None
_SHARED_LOCK = threading.Lock()


def shared_cache() -> ByteLRU:
    """The process-wide cache every session uses (created on first use with the bound from the environment)."""
    global _SHARED
    with _SHARED_LOCK:
        if _SHARED is None:
            _SHARED = ByteLRU(bound_from_env())
        return _SHARED


def or_shared(cache: ByteLRU | None) -> ByteLRU:
    """`cache`, or the process-wide one when None (not `or`: an empty cache is falsy, len 0)."""
    return cache if cache is not None else shared_cache()
