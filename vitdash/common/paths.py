"""Where the checkout is, and the developers' real test data beside it (`../shared`), for defaults only."""
from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_DIR = REPO_ROOT.parent / "shared"
