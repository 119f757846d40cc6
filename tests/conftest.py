"""Shared fixtures: the real data beside the checkout, and small canonical checkpoints built on the spot."""
from __future__ import annotations

import os
import sys
from pathlib import Path

# Spinning OpenMP workers starve each other when test processes share 2 cores; set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"

torch.set_num_threads(max(1, torch.get_num_threads()))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not (SHARED / "checkpoints").is_dir():
        pytest.skip(f"real test data not found at {SHARED} (a fresh clone has no ../shared); "
                    "these tests run in CI and on dev machines where it exists")
    return SHARED


@pytest.fixture(scope="session")
def tiny_vit_ckpt():
    """A tiny timm ViT at init, as a canonical Checkpoint (fast enough for any test)."""
    from vitdash.load.sources import load_timm

    return load_timm("vit_tiny_patch16_224", img_size=32, patch_size=8, depth=2)


_MAIN = sys.modules["__main__"]


@pytest.fixture(autouse=True)
def _restore_main_module():
    """AppTest.from_function leaves its generated script as `__main__`; spawned worker processes (the zoo's pool)
    re-run `__main__` by path, so a later test would start workers that execute that script."""
    yield
    sys.modules["__main__"] = _MAIN


from tests.demo_utils import demo_pair  # noqa: E402,F401  (session fixture: the demo pair, trained once)
from tests.lineage_cases import digits_family, dino_family  # noqa: E402,F401  (session fixtures: real relatives)
