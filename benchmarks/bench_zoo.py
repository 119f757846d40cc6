"""Population audit throughput on a zoo of ViT-S-sized checkpoints: models per minute by backend, in one run.

Backends: 1 worker (in this process), 2 spawned worker processes, and Ray tasks on a local Ray instance
started here with 2 CPUs (startup not timed: `--ray` means an existing cluster). Every worker uses one
torch thread, so the runs scale by cores, not by intra-op threads (which on a busy machine oversubscribe
the cores and slow down many times over). Ratios are against the 1-worker run. The worker processes'
peak resident memory is reported beside a bare worker's (imports only) and the checkpoint size: each
task holds one checkpoint at a time, so it does not grow with the population.

The zoo is written in the ViT Model Zoo layout: one pretrained parent and `--children` fine-tuned
children, each with an initial and a final `checkpoint_0000XY/checkpoints` (timm keys under `vit.`).
Values are a timm init plus seeded low-rank updates (timing does not depend on what the weights show).

Run: `python benchmarks/bench_zoo.py [--children 7] [--model vit_small_patch16_224] [--no-ray]`.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import torch

from vitdash.common.compute import cpu_count
from vitdash.population.discover import discover
from vitdash.population.member import peak_rss_mb
from vitdash.population.zoo import audit_zoo


def _trained_like(sd: dict[str, torch.Tensor], scale: float, seed: int) -> dict[str, torch.Tensor]:
    """Add a seeded rank-4 update to every matrix and noise to the rest: a stand-in for training."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, v in sd.items():
        if v.ndim == 2 and min(v.shape) >= 4:
            u, w = torch.randn(v.shape[0], 4, generator=g), torch.randn(4, v.shape[1], generator=g)
            out[k] = v + scale * v.std() * (u @ w) / 2
        else:
            out[k] = v + scale * 0.01 * torch.randn(v.shape, generator=g)
    return out


def _write_trial(folder: Path, states: list[dict[str, torch.Tensor]], config: dict, acc: float) -> None:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "result.json").write_text(json.dumps({"test_acc": acc, "training_iteration": len(states) - 1}) + "\n")
    for i, sd in enumerate(states):
        (folder / f"checkpoint_{i:06d}").mkdir()
        torch.save({f"vit.{k}": v.contiguous() for k, v in sd.items()}, folder / f"checkpoint_{i:06d}" / "checkpoints")


def build_zoo(root: Path, model: str, children: int) -> float:
    """Write the zoo; returns one checkpoint's size in MB."""
    import timm

    torch.manual_seed(0)
    init = {k: v.detach() for k, v in timm.create_model(model, num_classes=100).state_dict().items()}
    parent = _trained_like(init, 0.5, 0)
    _write_trial(root / "pretraining" / "p0", [init, parent], {"optim::lr": 1e-3, "seed": 0}, 0.6)
    head = timm.create_model(model, num_classes=10).state_dict()
    for i in range(children):
        start = {**parent, "head.weight": head["head.weight"], "head.bias": head["head.bias"]}
        lr = 10 ** (-4 + i % 3)
        _write_trial(root / "finetuning" / "p0" / f"ft{i}", [start, _trained_like(start, lr * 100, i + 1)],
                     {"optim::lr": lr, "seed": i}, 0.5 + 0.1 * (i % 3))
    return (root / "pretraining" / "p0" / "checkpoint_000001" / "checkpoints").stat().st_size / 2**20


def _bare_worker_rss_mb() -> float | None:
    """Peak RSS of a process that has imported what a worker imports and audited nothing."""
    import vitdash.load.sources  # noqa: F401
    import vitdash.population.compare  # noqa: F401
    import vitdash.trained.verdict  # noqa: F401

    return peak_rss_mb()


def _timed(label: str, root: Path, **kwargs) -> tuple[float, float | None]:
    """(seconds, the largest worker high-water mark in MB) for one audit of the zoo."""
    population = discover(root)
    start = time.perf_counter()
    report = audit_zoo(population, **kwargs)
    seconds = time.perf_counter() - start
    failed = [a.model.name for a in report.models if a.error]
    if failed:
        raise SystemExit(f"{label}: audit failed for {failed}")
    n = len(report.models)
    peaks = [a.peak_rss_mb for a in report.models if a.peak_rss_mb is not None]
    print(f"{label:<28}: {seconds:8.1f} s for {n} models = {60 * n / seconds:6.2f} models/min", flush=True)
    return seconds, max(peaks) if peaks else None


def _report(base: float, seconds: float, peak: float | None, bare: float | None, size_mb: float) -> None:
    print(f"{'  speed-up vs 1 worker':<28}: {base / seconds:8.2f}x")
    if peak is not None:
        print(f"{'  peak RSS of a worker':<28}: {peak:8.0f} MB (bare worker {bare or float('nan'):.0f} MB; "
              f"one checkpoint {size_mb:.0f} MB)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--children", type=int, default=7, help="fine-tuned children (the zoo has one more model)")
    ap.add_argument("--model", default="vit_small_patch16_224")
    ap.add_argument("--no-ray", action="store_true", help="skip the Ray run")
    args = ap.parse_args()
    cpus = cpu_count()
    with tempfile.TemporaryDirectory(prefix="vitdash-bench-zoo-") as tmp:
        root = Path(tmp) / "zoo"
        size_mb = build_zoo(root, args.model, args.children)
        print(f"zoo: {args.children + 1} x {args.model} ({size_mb:.0f} MB per checkpoint, 2 checkpoints per model), "
              f"{cpus} CPU cores (load average {os.getloadavg()[0]:.1f}), 1 torch thread per worker")
        torch.set_num_threads(1)
        with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
            bare = pool.submit(_bare_worker_rss_mb).result()
        base, _ = _timed("1 worker (in-process)", root, workers=1)
        _report(base, *_timed("2 worker processes", root, workers=2), bare, size_mb)
        if args.no_ray:
            return 0
        try:
            import ray
        except ImportError:
            print("ray not installed: Ray run skipped")
            return 0
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        try:
            on_ray = _timed("Ray (local, 2 CPUs)", root, ray="auto")
        finally:
            ray.shutdown()
        _report(base, *on_ray, bare, size_mb)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
