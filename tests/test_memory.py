"""What a server does to hand memory back: the pages of a mapped checkpoint leave the resident size and its values
stay readable."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from vitdash.common.memory import page_out_mapped_files

MB = 1 << 20


def _rss_file() -> int:
    """Resident bytes of this process's file mappings (Linux)."""
    line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith("RssFile:"))
    return int(line.split()[1]) * 1024


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc and MADV_PAGEOUT are Linux's")
def test_a_read_checkpoints_pages_are_handed_back_and_read_again_on_use(tmp_path):
    path = tmp_path / "w.safetensors"
    save_file({"w": torch.randn(16 * MB)}, str(path))  # 64 MB of float32
    tensor = safe_open(str(path), "pt").get_tensor("w")  # a view of the mapped file, as the readers use it
    total = float(tensor.double().sum())
    before = _rss_file()
    assert page_out_mapped_files() >= 64 * MB
    after = _rss_file()
    assert before - after > 32 * MB, (before, after)
    assert float(tensor.double().sum()) == total  # read again from the page cache: nothing was lost
