"""CPUs and torch threads, counted and set one way everywhere: the CPUs this process may use (the affinity mask,
which containers and `taskset` set, not the host's total), and torch's intra-op threads for a block of work,
restored after it."""
from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch


def cpu_count() -> int:
    """Cores this process may use, not the host's total."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def threads_per_worker(workers: int) -> int:
    """torch threads for each of `workers` processes sharing this process's cores."""
    return max(1, cpu_count() // max(1, workers))


def init_worker(workers: int) -> None:
    """Initializer of each of `workers` worker processes: its share of the cores as torch threads."""
    torch.set_num_threads(threads_per_worker(workers))


@contextmanager
def torch_threads(n: int) -> Iterator[int]:
    """torch's intra-op threads set to `n` inside the block (also a decorator); yields the count it replaced."""
    before = torch.get_num_threads()
    if n != before:
        torch.set_num_threads(n)
    try:
        yield before
    finally:
        if n != before:
            torch.set_num_threads(before)


def one_thread():
    """Work on small tensors (all of an audit's, after sub-blocking) gains nothing from threads inside each op, and
    spinning OpenMP workers on a shared machine make it 5-10x slower: one thread, and the count it replaced for
    callers that parallelize over tensors instead."""
    return torch_threads(1)
