"""The demo pair for tests: trained once per machine into pytest's cache folder, reused by every test file.

The cache key hashes vitdash/demo.py and the recipe, so a changed training loop is retrained, never hidden
by an older build; a fresh checkout (CI) trains it once (about 20-40 s on 2 cores).
"""
from __future__ import annotations

from pathlib import Path

import pytest


def demo_cache_dir(config, name: str = "vitdash-demo-cache") -> Path:
    """A folder kept across test runs (pytest's cache), for what tests train once per machine."""
    cache = getattr(config, "cache", None)  # absent under `-p no:cacheprovider`
    if cache is None:
        import tempfile

        folder = Path(tempfile.gettempdir()) / f"vitdash-test-{name}"
        folder.mkdir(parents=True, exist_ok=True)
        return folder
    return Path(cache.mkdir(name))


@pytest.fixture(scope="session")
def demo_pair(request):
    from vitdash.load.demo import ensure_demo

    return ensure_demo(cache_dir=demo_cache_dir(request.config))
