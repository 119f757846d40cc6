"""The shared byte-bounded LRU, and 8 sessions at once on different checkpoints through it.

The concurrency test drives `vitdash.cache` directly from 8 threads (one per session) rather than through
AppTest: AppTest swaps process globals (st.secrets, the runtime) per run and is not meant to run
concurrently, while a Streamlit server runs each session's script in its own thread calling exactly these
functions (`ui.state` passes its session's upload bytes and keeps only the returned checkpoint).
"""
from __future__ import annotations

import gc
import hashlib
import threading
import weakref
from pathlib import Path

import pytest
import torch
from safetensors.torch import save

from vitdash import cache as C
from vitdash import pipeline as P
from vitdash.errors import VitdashError
from vitdash.identity import heads
from vitdash.identity.architecture import infer_architecture
from vitdash.load.sources import load

MB = 1 << 20


def test_lru_evicts_least_recently_used_by_bytes():
    lru = C.ByteLRU(100)
    assert lru.put("a", "A", 40) and lru.put("b", "B", 40)
    assert lru.get("a") == "A"  # a is now the most recent
    lru.put("c", "C", 40)  # 120 > 100: b (least recent) goes
    assert lru.keys() == ["a", "c"] and lru.total_bytes == 80
    lru.put("a", "A2", 10)  # replacing an entry re-counts its bytes
    assert lru.total_bytes == 50 and lru.get("a") == "A2"
    assert not lru.put("huge", "H", 101)  # larger than the bound: returned by callers, never kept
    assert "huge" not in lru and lru.keys() == ["c", "a"]
    s = lru.stats()
    assert (s.evictions, s.uncached, s.bytes, s.peak_bytes) == (1, 1, 50, 80)
    lru.discard("c")
    assert lru.total_bytes == 10 and len(lru) == 1
    lru.clear()
    assert lru.total_bytes == 0 and len(lru) == 0


def test_get_or_load_is_single_flight_per_key_and_parallel_across_keys():
    lru = C.ByteLRU(1000)
    calls: list[str] = []
    both_inside = threading.Barrier(2, timeout=10)

    def loader(key):
        def load():
            calls.append(key)
            if key in ("x", "y"):
                both_inside.wait()  # x and y must be loading at the same time, or this times out
            return key.upper()
        return load

    results = []
    threads = [threading.Thread(target=lambda k=k: results.append(lru.get_or_load(k, loader(k), lambda v: 1)))
               for k in ["x"] * 4 + ["y"] * 4]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(calls) == ["x", "y"] and sorted(results) == ["X"] * 4 + ["Y"] * 4
    assert lru.stats().misses == 2 and lru.stats().hits == 6


def test_a_failed_load_is_not_cached_and_can_be_retried():
    lru = C.ByteLRU(10)

    def bad():
        raise VitdashError("bad file")

    with pytest.raises(VitdashError):
        lru.get_or_load("k", bad, lambda v: 1)
    assert lru.get_or_load("k", lambda: "ok", lambda v: 1) == "ok"


def test_nbytes_counts_checkpoint_tensors_and_model_parameters(tiny_vit_ckpt):
    from vitdash.identity.model import build_model

    expected = sum(t.numel() * t.element_size() for t in tiny_vit_ckpt.tensors.materialize().values())
    assert C.nbytes(tiny_vit_ckpt) == expected
    model = build_model(tiny_vit_ckpt)
    assert C.nbytes(model) == expected  # a built model holds the same tensors
    tied = torch.nn.Sequential(torch.nn.Linear(8, 8, bias=False), torch.nn.Linear(8, 8, bias=False))
    tied[1].weight = tied[0].weight
    assert C.nbytes(tied) == 8 * 8 * 4
    with pytest.raises(TypeError):
        C.nbytes("not sized")


def test_bound_from_environment(monkeypatch):
    monkeypatch.delenv("VITDASH_CACHE_MB", raising=False)
    monkeypatch.setenv("VITDASH_MEMORY_MB", "100000")
    assert C.bound_from_env() == 4096 * MB
    monkeypatch.setenv("VITDASH_MEMORY_MB", "3000")  # a small server: the cache leaves two thirds to jobs
    assert C.bound_from_env() == 1000 * MB
    monkeypatch.setenv("VITDASH_CACHE_MB", "512")
    assert C.bound_from_env() == 512 * MB
    for bad in ("lots", "-1", "0"):
        monkeypatch.setenv("VITDASH_CACHE_MB", bad)
        with pytest.raises(VitdashError, match="VITDASH_CACHE_MB"):
            C.bound_from_env()


def test_audits_are_run_once_per_content_and_counted_in_the_bound(tiny_vit_ckpt):
    lru = C.ByteLRU(64 * MB)
    reports = []
    first = P.cached_audit(tiny_vit_ckpt, progress=reports.append, cache=lru)
    again = P.cached_audit(tiny_vit_ckpt, progress=reports.append, cache=lru)
    assert again is first and reports[-1].done == reports[-1].total  # the second call ran nothing
    assert len(reports) == len(first.tensors) + 1 and lru.stats().hits == 1
    assert C.pickled_size(first) > 1000 and lru.total_bytes == C.pickled_size(first)


def test_head_evidence_goes_through_the_shared_cache(shared_dir, monkeypatch):
    lru = C.ByteLRU(64 * MB)
    monkeypatch.setattr(heads, "shared_cache", lambda: lru)
    runs = []
    real = heads.head_split_evidence
    monkeypatch.setattr(heads, "head_split_evidence", lambda *a, **k: runs.append(1) or real(*a, **k))
    ckpt = load(shared_dir / "checkpoints" / "mnist_vit_torchvision_layout.pth")
    assert infer_architecture(ckpt).num_heads == infer_architecture(ckpt).num_heads == 2
    assert len(runs) == 1 and [k[0] for k in lru.keys()] == ["head_evidence"]


def test_shrink_drops_least_recently_used_first():
    lru = C.ByteLRU(100)
    for key in "abcd":
        lru.put(key, key, 20)
    lru.get("a")
    assert lru.shrink(30) == 40 and lru.keys() == ["d", "a"] and lru.total_bytes == 40
    assert lru.shrink(1000) == 40 and len(lru) == 0 and lru.shrink(1) == 0


# ---- 8 sessions at once -----------------------------------------------------------------------------------

N_SESSIONS = 8


def _rss() -> int:
    import os

    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.fixture(scope="module")
def fixed_mmap_threshold():
    """Make RSS follow live objects: glibc otherwise raises its mmap threshold after the first large free and
    keeps later freed tensors in its arenas, so RSS would measure the allocator's cache, not vitdash's."""
    import ctypes

    if not Path("/proc/self/statm").exists():
        pytest.skip("RSS is read from /proc (Linux only)")
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        pytest.skip("not glibc: the allocator cannot be told to return freed tensors to the OS")
    M_MMAP_THRESHOLD = -3
    assert libc.mallopt(M_MMAP_THRESHOLD, 128 * 1024) == 1


@pytest.fixture(scope="module")
def uploads() -> list[bytes]:
    """8 different ViT files of ~16 MB each, all uploaded under the same name (as browsers often do)."""
    import timm

    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=8, embed_dim=256, depth=5,
                              num_heads=4, num_classes=10)
    base = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    return [save({k: v + i * 1e-3 for k, v in base.items()}) for i in range(N_SESSIONS)]


def _run_sessions(lru: C.ByteLRU, uploads: list[bytes]) -> tuple[list[dict], list[weakref.ref]]:
    """Each thread is one session: it uploads its file, opens it, builds the model, runs it, then lets go."""
    start = threading.Barrier(N_SESSIONS, timeout=60)
    seen: list[dict] = [{} for _ in uploads]
    refs: list[weakref.ref] = []

    def session(i: int) -> None:
        torch.set_num_threads(1)
        data = uploads[i]
        digest = hashlib.sha256(data).hexdigest()
        start.wait()  # all eight open their files at the same moment
        ckpt = P.cached_upload(data, "model.safetensors", digest, cache=lru)
        model = P.cached_model(ckpt, cache=lru)
        with torch.inference_mode():
            logits = model(torch.zeros(1, 3, 32, 32))
        refs.extend([weakref.ref(ckpt), weakref.ref(model)])
        seen[i] = {"sha256": ckpt.sha256, "digest": digest, "bias": float(ckpt.tensors["head.bias"][0]),
                   "classes": logits.shape[1], "bytes_in_cache": lru.total_bytes}

    threads = [threading.Thread(target=session, args=(i,)) for i in range(N_SESSIONS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return seen, refs


def _retained(bound: int, uploads: list[bytes]) -> tuple[int, list[dict], list[weakref.ref], C.ByteLRU]:
    """RSS still held once all sessions are done, with a cache of `bound` bytes."""
    gc.collect()
    before = _rss()
    lru = C.ByteLRU(bound)
    seen, refs = _run_sessions(lru, uploads)
    gc.collect()
    return _rss() - before, seen, refs, lru


def test_eight_sessions_stay_under_the_bound_and_see_only_their_own_upload(fixed_mmap_threshold, uploads):
    from vitdash.load.sources import load_bytes

    one_file = C.nbytes(load_bytes(uploads[0], "model.safetensors"))
    per_session = 2 * one_file  # the checkpoint and its built model weigh the same
    bound = int(1.5 * per_session)  # room for one session and a half, not eight
    fits = bound // one_file
    _retained(bound, uploads)  # warm-up: thread stacks and first-use allocations are not the cache's
    retained, seen, refs, lru = _retained(bound, uploads)

    # Every session got its own file back, though all eight were named model.safetensors.
    assert len({s["digest"] for s in seen}) == N_SESSIONS
    for i, s in enumerate(seen):
        assert s["sha256"] == s["digest"], f"session {i} got another session's upload"
        assert s["bias"] == pytest.approx(i * 1e-3, abs=1e-6), f"session {i} sees another file's weights"
        assert s["bytes_in_cache"] <= bound and s["classes"] == 10
    stats = lru.stats()
    assert stats.peak_bytes <= bound and len(lru) <= fits and stats.evictions >= 2 * N_SESSIONS - fits

    # Once the sessions let go, only what the cache holds is alive, and RSS follows it, not the session count.
    alive = [r() for r in refs if r() is not None]
    assert len(alive) == len(lru) <= fits
    assert retained < bound + 16 * MB

    # The same workload with an unbounded cache keeps every session's checkpoint and model. Resident are the
    # models (the checkpoints' mapped pages are handed back once a model is built): RSS grows by at least half
    # of the models the bound would have dropped (half: resident sizes move by some MB on a busy machine).
    unbounded_retained, _, unbounded_refs, unbounded = _retained(1 << 40, uploads)
    assert unbounded.total_bytes == N_SESSIONS * per_session
    assert sum(r() is not None for r in unbounded_refs) == 2 * N_SESSIONS
    assert unbounded_retained - retained > (N_SESSIONS - fits) * one_file / 2
