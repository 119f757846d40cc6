"""Wall-clock timing shared by the benchmark scripts (run as `python benchmarks/<script>.py`)."""
from __future__ import annotations

import time


def timed(fn) -> float:
    """Seconds one call of `fn` takes."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start
