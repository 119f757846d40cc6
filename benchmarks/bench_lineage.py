"""Lineage at library scale: what a fingerprint costs against reading the tensors, and how long a search takes
against 10, 100 and 1,000 library entries.

[1] One checkpoint (the shared DINOv2-S when ../shared is there, else timm's vit_small_patch16_224 at init saved
    as safetensors): reading every tensor through vitdash, every value touched (the baseline, as in
    bench_audit.py), then computing its fingerprint (which gets every tensor once more and keeps 64 values of
    each; a memory-mapped file's untouched pages are not even read). Best of `--repeats`, interleaved.
[2] Libraries of N synthesized fingerprints of the same architecture (random samples: unrelated to the query,
    as nearly every entry of a real library is), stored in a fresh history database with their files' hashes:
    - search: the vectorized scoring of the query against an index already built;
    - lookup: fetching the N fingerprints from the database, parsing them, building the index and searching;
    - lineage(): the whole call on a library of N files on disk (walked, stat'ed, their hashes found in the
      database, fingerprints fetched, searched), none of them read: what "answers in under a second after
      fingerprinting" means.
    Ratios are against [1]'s read of one checkpoint, measured in this process.

Run: `OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_lineage.py [--repeats 5] [--sizes 10 100 1000]`.
"""
from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np

from timing import timed  # benchmarks/timing.py (scripts run with benchmarks/ on sys.path)
from vitdash.common.paths import SHARED_DIR
from vitdash.history import AuditHistory
from vitdash.load.library import ORIGIN_FOLDER, LibraryEntry
from vitdash.load.sources import load, load_timm
from vitdash.population.lineage import FingerprintBook, lineage
from vitdash.population.lineage_fingerprint import VERSION, Fingerprint, FingerprintIndex, fingerprint


def _checkpoint(tmp: Path) -> str:
    shared = SHARED_DIR / "checkpoints" / "dinov2-small-hf"
    if shared.is_dir():
        return str(shared)
    from safetensors.torch import save_file

    path = tmp / "vit_small.safetensors"
    save_file({k: v.contiguous() for k, v in load_timm("vit_small_patch16_224").tensors.materialize().items()},
              str(path))
    return str(path)


def _best(fn, repeats: int) -> float:
    return min(timed(fn) for _ in range(repeats))


def _synthesized(query: Fingerprint, i: int) -> Fingerprint:
    """A fingerprint of the query's architecture with independent random samples: an unrelated checkpoint."""
    samples = np.random.default_rng(i).standard_normal(len(query.samples)).astype(np.float16)
    return Fingerprint(f"{i:064x}", f"synthetic-{i}", query.layout, query.canonical, query.plan, samples)


def _library(root: Path, query: Fingerprint, n: int, history: AuditHistory) -> list[LibraryEntry]:
    """N one-byte files whose hashes and fingerprints the database already holds (as after a first scan)."""
    folder = root / f"library-{n}"
    folder.mkdir()
    entries = []
    for i in range(n):
        path = folder / f"model-{i:04d}.safetensors"
        path.write_bytes(b"\0")
        fp = _synthesized(query, i)
        history.save_fingerprint(fp.sha256, VERSION, fp.name, fp.to_bytes())
        stat = path.stat()
        history.remember_hash(os.path.realpath(path), stat.st_size, stat.st_mtime_ns, fp.sha256)
        entries.append(LibraryEntry(f"library-{n}/{path.name}", str(path), "file", 1, ORIGIN_FOLDER))
    return entries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        source = _checkpoint(root)
        ckpt = load(source)
        ckpt.sha256  # the content hash every vitdash read computes once (the key of the stored fingerprint)
        read = fp_time = float("inf")
        for _ in range(args.repeats):  # interleaved, so both see the same machine
            read = min(read, timed(lambda: [float(ckpt.tensors[n].sum()) for n in ckpt.tensors]))
            fp_time = min(fp_time, timed(lambda: fingerprint(ckpt)))
        query = fingerprint(ckpt)
        size = len(query.to_bytes())
        print(f"[1] {Path(source).name}: {ckpt.num_params / 1e6:.1f} M params, {len(ckpt.tensors)} tensors, "
              f"best of {args.repeats}")
        print(f"  read every tensor (baseline)   : {read:8.3f} s")
        print(f"  fingerprint (reads them again) : {fp_time:8.3f} s   RATIO fingerprint / read = {fp_time / read:.2f}"
              f"   (target: about one more read)")
        print(f"  fingerprint stored             : {size / 1024:8.1f} KB")
        print(f"[2] search against N library entries (unrelated fingerprints), best of {args.repeats}; "
              "ratios against the read above")
        for n in args.sizes:
            history = AuditHistory(root / f"history-{n}.sqlite")
            entries = _library(root, query, n, history)
            prints = [_synthesized(query, i) for i in range(n)]
            index = FingerprintIndex(prints)
            search = _best(lambda: index.search(query), args.repeats)
            hashes = [p.sha256 for p in prints]
            lookup = _best(lambda: FingerprintIndex(list(FingerprintBook(history).lookup(hashes).values()))
                           .search(query), args.repeats)
            whole = _best(lambda: lineage(ckpt, entries, history=history), args.repeats)
            related = sum(m.candidate for m in index.search(query))
            print(f"  N={n:5d}: search {search:7.4f} s ({search / read:5.2f}x read) | lookup from the database "
                  f"{lookup:7.4f} s ({lookup / read:5.2f}x) | lineage() {whole:7.4f} s ({whole / read:5.2f}x; "
                  f"target < 1 s: {'PASS' if whole < 1 else 'FAIL'}) | false candidates {related}")


if __name__ == "__main__":
    main()
