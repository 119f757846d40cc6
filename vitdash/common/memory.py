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
    """Collect garbage, return the allocator's free heap to the system (glibc) and drop the resident pages of
    mapped checkpoint files (`page_out_mapped_files`); elsewhere than Linux a no-op."""
    gc.collect()
    libc = _libc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)
    page_out_mapped_files()


MADV_PAGEOUT = 21  # Linux 5.4+: reclaim these pages now


def page_out_mapped_files() -> int:
    """Ask the kernel to reclaim the resident pages of the data files this process has mapped (checkpoints
    opened by safetensors or `torch.load(mmap=True)`); returns the bytes of the mappings advised.

    A mapped file's pages count in the resident size once read and stay there until the kernel needs the
    memory: a server whose sessions have audited eight ViT-Bs holds 1.7 GB of them, which the job queue
    would count against its budget. Reclaiming loses nothing: a clean page is read again from the page cache
    on next use, and a page written to (copy-on-write) is only ever swapped, never dropped. Shared libraries
    and executable mappings are left alone."""
    libc = _libc()
    if libc is None or not hasattr(libc, "madvise"):
        return 0
    try:
        lines = Path("/proc/self/maps").read_text().splitlines()
    except OSError:
        return 0
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    advised = 0
    for line in lines:
        parts = line.split(maxsplit=5)
        if len(parts) < 6 or not parts[5].startswith("/") or "x" in parts[1] or ".so" in parts[5]:
            continue  # anonymous memory, [heap]/[stack], code, shared libraries
        start, end = (int(x, 16) for x in parts[0].split("-"))
        if libc.madvise(start, end - start, MADV_PAGEOUT) == 0:
            advised += end - start
    return advised
