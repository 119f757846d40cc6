"""TODO"""
from __future__ import annotations

from contextlib import contextmanager

import torch


@contextmanager
def one_thread():
    """Work on small tensors (all of an audit's, after sub-blocking) gains nothing from threads inside
    each op, and spinning OpenMP workers on a shared machine make it 5-10x slower. Yields the thread
    count it replaced (for callers that parallelize over tensors instead) and restores it after."""
    n = torch.get_num_threads()
    if n > 1:
        torch.set_num_threads(1)
    try:
        yield n
    finally:
        if n > 1:
            torch.set_num_threads(n)
