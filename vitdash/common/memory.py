"""How much memory this process holds and may hold: resident size, the machine's (or container's) total, the
budget a server is given ($VITDASH_MEMORY_MB), and handing freed heap back to the system.

Freed tensors go back to the C allocator, not to the system: glibc keeps freed chunks below its mmap
threshold in per-thread arenas, so after a few batches on several threads the resident size stays near its
peak with nothing live. `give_back` asks it to return them (`malloc_trim`), which is what lets a finished or
cancelled job's memory show up as free again.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
import resource
from functools import cache
from pathlib import Path

from vitdash.errors import VitdashError

MB = 1 << 20


def process_rss() -> int:
    """Bytes this process has resident now (Linux /proc; elsewhere the peak so far, which only errs high)."""
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if os.uname().sysname == "Darwin" else peak * 1024


def machine_memory() -> int:
    """Physical memory, or the container's limit when cgroups set a smaller one."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(limit_file).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            total = min(total, int(text))
    return total


def megabytes_from_env(name: str, default_mb: float) -> int:
    """$name as a positive number of megabytes, in bytes; `default_mb` when unset."""
    text = os.environ.get(name, "").strip()
    if not text:
        return int(default_mb * MB)
    try:
        mb = float(text)
    except ValueError:
        raise VitdashError(f"{name} must be a number of megabytes, got {text!r}") from None
    if mb <= 0:
        raise VitdashError(f"{name} must be positive, got {text!r}")
    return int(mb * MB)


def memory_budget() -> int:
    """What one server process may hold in all: $VITDASH_MEMORY_MB, default half the machine."""
    return megabytes_from_env("VITDASH_MEMORY_MB", machine_memory() / 2 / MB)


@cache
def _libc():
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name) if name else None
    except OSError:
        return None


def give_back() -> None:
    """Collect garbage and return the allocator's free heap to the system (glibc; elsewhere a no-op)."""
    gc.collect()
    libc = _libc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)
