"""Accuracy-check throughput on CPU, measured against baselines in the same process.

Targets (issue 5):
  1. end to end (decode, transform, forward, scoring: `evaluate`'s images_per_s) >= 0.8x model-only throughput
     (`measure_model_throughput`, which `evaluate` reports as model_images_per_s: synthetic batch, warm-up,
     synchronized timing) on the same model, batch size and thread count;
  2. model-only throughput of vitdash's forward path (`prepare_forward`: inference_mode, autocast wrapper)
     >= 0.95x a plain timm loop (`with torch.no_grad(): model(x)`) on the same model object and batch.
Runs alternate (end to end, model only, ...; and batch by batch, ours, plain, ours, ...) so that load from
other processes hits both sides alike, and the best run of each side is compared (as `timeit` does): on a
shared machine other processes only ever add time, so the fastest run is the estimate of the cost itself,
while medians move by 2x with the neighbours' bursts. Medians are printed too.
Data: the shared ImageNet sample when present (else the built-in digits); model: a timm ViT at init (the
cost does not depend on the weight values).

    .venv/bin/python benchmarks/bench_throughput.py [--model vit_small_patch16_224] [--batch-size 16]
        [--repeats 3] [--pairs 16] [--limit 96]
"""
from __future__ import annotations

import argparse
import statistics
import sys

import torch
from timing import timed  # benchmarks/timing.py (scripts run with benchmarks/ on sys.path)

from vitdash.common.compute import cpu_count
from vitdash.data.samples import sample_dir
from vitdash.identity.model import build_model
from vitdash.load.sources import load_timm
from vitdash.perform.engine import EngineOptions, cpu_threads, measure_model_throughput, prepare_forward
from vitdash.perform.evaluate import evaluate

END_TO_END_TARGET, LOOP_TARGET = 0.8, 0.95


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vit_small_patch16_224")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3, help="end-to-end / model-only pairs")
    parser.add_argument("--pairs", type=int, default=16, help="alternating single-batch pairs, ours / plain timm")
    parser.add_argument("--limit", type=int, default=96, help="images per end-to-end run")
    args = parser.parse_args()

    cpu = torch.device("cpu")
    data = str(sample_dir() or "digits")
    ckpt = load_timm(args.model)
    opts = EngineOptions(device="cpu", batch_size=args.batch_size, limit=args.limit)
    print(f"{args.model} at init, batch {args.batch_size}, data {data} ({args.limit} images), "
          f"{cpu_count()} CPU threads during the calls")

    # 1. evaluate() end to end against the same engine's model-only figure, alternating.
    model = build_model(ckpt)
    e2e, model_only = [], []
    for i in range(args.repeats):
        r = evaluate(ckpt, data, opts, measure_throughput=False)
        input_size = tuple(r.preprocessing["input_size"])
        with cpu_threads(cpu):
            forward = prepare_forward(model, cpu, torch.float32, opts)
            model_only.append(measure_model_throughput(forward, input_size, args.batch_size, cpu, warmup=1,
                                                       iters=max(1, args.limit // args.batch_size),
                                                       max_seconds=float("inf")))
        e2e.append(r.images_per_s)
        print(f"  round {i + 1}: end to end {r.images_per_s:.2f} images/s ({r.n_images} images, "
              f"{r.n_skipped} skipped), model only {model_only[-1]:.2f} images/s")
    e2e_ratio = max(e2e) / max(model_only)
    e2e_median = statistics.median(e2e) / statistics.median(model_only)

    # 2. vitdash's forward path against a plain timm call, one batch each in turn.
    x = torch.randn(args.batch_size, *input_size)
    ours, plain = [], []
    with cpu_threads(cpu):
        forward = prepare_forward(model, cpu, torch.float32, opts)

        def vitdash_batch():
            with torch.inference_mode():
                forward(x)

        def timm_batch():  # the loop anyone would write
            with torch.no_grad():
                model(x)

        vitdash_batch(), timm_batch()  # warm-up
        for _ in range(args.pairs):
            ours.append(timed(vitdash_batch))
            plain.append(timed(timm_batch))
    loop_ratio = min(plain) / min(ours)
    loop_median = statistics.median(plain) / statistics.median(ours)
    print(f"  per batch, vitdash: {', '.join(f'{t:.2f}' for t in ours)} s")
    print(f"  per batch, plain timm: {', '.join(f'{t:.2f}' for t in plain)} s")

    ok1, ok2 = e2e_ratio >= END_TO_END_TARGET, loop_ratio >= LOOP_TARGET
    print(f"end to end / model only: best {e2e_ratio:.3f} (median {e2e_median:.3f})  target >= {END_TO_END_TARGET}"
          f"  {'PASS' if ok1 else 'FAIL'}")
    print(f"vitdash model-only / plain timm loop: best {loop_ratio:.3f} (median {loop_median:.3f})  "
          f"target >= {LOOP_TARGET}  {'PASS' if ok2 else 'FAIL'}")
    return 0 if ok1 and ok2 else 1


if __name__ == "__main__":
    sys.exit(main())
