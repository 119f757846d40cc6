"""CPUs counted from the affinity mask, torch threads set for a block and restored."""
from __future__ import annotations

import os

import torch

from vitdash.common import compute


def test_cpu_count_follows_the_affinity_mask_not_the_host(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2}, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    assert compute.cpu_count() == 3
    assert [compute.threads_per_worker(w) for w in (1, 2, 3, 8)] == [3, 1, 1, 1]


def test_torch_threads_are_set_inside_the_block_only():
    before = torch.get_num_threads()
    with compute.torch_threads(before + 1) as replaced:
        assert replaced == before and torch.get_num_threads() == before + 1
        with compute.one_thread() as inner:
            assert inner == before + 1 and torch.get_num_threads() == 1
        assert torch.get_num_threads() == before + 1
    assert torch.get_num_threads() == before
