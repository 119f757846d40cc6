"""Speed of the full "is it trained?" audit on a ViT-B/16-sized checkpoint, as ratios measured in one run.

Loading is lazy in vitdash (safetensors and zip pickles are memory-mapped), so "the time of loading
its tensors" is measured three ways, each getting every value into reach, in the same run:
- `read`: `load(path)` plus one read of every tensor (a sum): the least any analysis must do;
- `copy`: `load(path)` plus a copy of every tensor into memory, as loading into a model does;
- `torch.load`: the same weights as a `.pth`, deserialized eagerly (the classic checkpoint load).
The audit is `audit(load(path))` on the safetensors file. Target: <= 4x loading on 2 CPU cores.
Where `weightwatcher` is installed, its `analyze()` on the same weights as a timm model is timed too
(target: vitdash >= 5x faster).

Run: `python benchmarks/bench_audit.py [--threads 2] [--repeats 5] [--model vit_base_patch16_224 ...]`.
Contenders alternate and the best run of each is compared (the machine may be shared); several models are
timed in the same turns, so their ratios are measured under the same load (ViT-B/16 beside a DINOv3 or
EVA-02 of the same size: `--model vit_base_patch16_224 vit_base_patch16_dinov3 eva02_base_patch14_224`). The
checkpoint is a timm model at init (timing does not depend on the values: every tensor gets the same tests).
"""
from __future__ import annotations

import os

# The 2 cores may be shared: spinning OpenMP workers would then stall each other (and the loader).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from vitdash.load.sources import load
from vitdash.trained import priors
from vitdash.trained.moments import sample_runs
from vitdash.trained.spectra import _gaussian_twin_top, _jitter, _permutations, _window_starts
from vitdash.trained.verdict import audit


def _clear_caches() -> None:
    """Every run pays for its own shuffles and references."""
    for cached in (_permutations, _jitter, _gaussian_twin_top, _window_starts, sample_runs, priors._quantiles,
                   priors._ks_critical, priors._stored_bounds):
        cached.cache_clear()


def _interleaved(fns: dict, repeats: int) -> dict[str, list[float]]:
    """Run the contenders in turns, so a busy moment on a shared machine hits all of them alike."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            _clear_caches()
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    return times


def _load_read(path: Path) -> int:
    ckpt = load(path)
    total = 0
    for n in ckpt.tensors:
        t = ckpt.tensors[n]
        float(t.sum())
        total += t.numel()
    return total


def _load_copy(path: Path) -> None:
    ckpt = load(path)
    for n in ckpt.tensors:
        t = ckpt.tensors[n]
        torch.empty(t.shape, dtype=t.dtype).copy_(t)


def _report(name: str, numel: int, size_mb: float, tensors: int, verdict: str, times: dict[str, list[float]],
            args: argparse.Namespace) -> float:
    best = {k: min(v) for k, v in times.items()}
    print(f"model {name}: {numel / 1e6:.1f} M params, {size_mb:.0f} MB, {args.threads} threads, "
          f"best of {args.repeats} interleaved runs (median in brackets)")
    for key, label in (("read", "load + read every tensor"), ("copy", "load + copy every tensor"),
                       ("torch.load", "torch.load of the .pth")):
        print(f"{label:<26}: {best[key]:7.3f} s ({statistics.median(times[key]):.3f})")
    print(f"{'load + full audit':<26}: {best['audit']:7.3f} s ({statistics.median(times['audit']):.3f}); "
          f"{tensors} tensors, verdict {verdict}")
    for key in ("read", "copy", "torch.load"):
        ratio = best["audit"] / best[key]
        print(f"audit / {key:<18}: {ratio:7.2f}x  (target <= 4x: {'PASS' if ratio <= 4 else 'FAIL'})")
    return best["audit"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--model", nargs="+", default=["vit_base_patch16_224"])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    import timm
    from safetensors.torch import save_file

    fns, facts, models = {}, {}, {}
    with tempfile.TemporaryDirectory(prefix="vitdash-bench-") as tmp:
        for name in args.model:
            model = models[name] = timm.create_model(name)
            path, pth = Path(tmp) / f"{name}.safetensors", Path(tmp) / f"{name}.pth"
            sd = {k: v.contiguous() for k, v in model.state_dict().items()}
            save_file(sd, str(path))
            torch.save(sd, pth)
            numel = _load_read(path)  # warm the page cache
            result = audit(load(path))
            facts[name] = (numel, path.stat().st_size / 2**20, len(result.tensors), result.verdict)
            fns.update({
                (name, "read"): lambda path=path: _load_read(path),
                (name, "copy"): lambda path=path: _load_copy(path),
                (name, "torch.load"): lambda pth=pth: torch.load(pth, map_location="cpu", weights_only=True),
                (name, "audit"): lambda path=path: audit(load(path)),
            })
        times = _interleaved(fns, args.repeats)
    audits = {}
    for name in args.model:
        audits[name] = _report(name, *facts[name], {k: v for (n, k), v in times.items() if n == name}, args)
    first = args.model[0]
    for name in args.model[1:]:
        print(f"audit {name} / audit {first}: {audits[name] / audits[first]:.2f}x")
    t_audit = audits[first]

    try:
        import weightwatcher as ww
    except ImportError:
        print("weightwatcher not installed: WeightWatcher comparison skipped")
        return 0
    watcher = ww.WeightWatcher(model=models[first])
    t = time.perf_counter()
    watcher.analyze()
    t_ww = time.perf_counter() - t
    speedup = t_ww / t_audit
    print(f"{'WeightWatcher analyze()':<26}: {t_ww:7.3f} s")
    print(f"{'WeightWatcher / audit':<26}: {speedup:7.2f}x  (target >= 5x: {'PASS' if speedup >= 5 else 'FAIL'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
