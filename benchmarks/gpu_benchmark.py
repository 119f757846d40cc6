"""GPU throughput of vitdash's eval engine against timm's own benchmark method, same GPU, same process.

timm's method is the inference runner of timm's `benchmark.py` (InferenceBenchmarkRunner): the model created by
name, moved to the GPU (channels_last when asked), a random batch, `torch.no_grad()`, 10 warm-up steps, then 40
timed steps, each ended by `torch.cuda.synchronize()`, samples/s = images / wall time of the 40 steps. It is
run twice: with autocast (`--amp --amp-dtype bfloat16`, what vitdash does) and with the model cast to bf16
(`--precision bfloat16`). vitdash's side is `prepare_forward` + `measure_model_throughput` (bf16 autocast,
channels_last, inference_mode) with the same warm-up and step counts, and optionally `evaluate` end to end
on a data folder (decode and transform in DataLoader workers, pinned memory, non-blocking copies).

    .venv/bin/python benchmarks/gpu_benchmark.py [--model vit_base_patch16_224] [--batch-size 256]
        [--data FOLDER] [--compile]

Prints a markdown block for docs/benchmarks.md (with the GPU's name) and the raw numbers as JSON.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from contextlib import nullcontext

import torch

from vitdash.data.samples import sample_dir
from vitdash.identity.model import build_model
from vitdash.load.sources import load_timm
from vitdash.perform.engine import EngineOptions, measure_model_throughput, prepare_forward
from vitdash.perform.evaluate import evaluate

WARMUP, STEPS = 10, 40  # timm benchmark.py defaults (--num-warm-iter, --num-bench-iter)


def timm_inference_benchmark(model_name: str, batch_size: int, amp_bf16: bool, channels_last: bool = True) -> float:
    """timm's InferenceBenchmarkRunner procedure: per-step synchronized timing over 40 steps after 10 warm-up."""
    import timm

    device = torch.device("cuda")
    model_dtype = torch.float32 if amp_bf16 else torch.bfloat16
    model = timm.create_model(model_name, pretrained=False).to(
        device=device, dtype=model_dtype, memory_format=torch.channels_last if channels_last else None).eval()
    input_size = timm.data.resolve_data_config({}, model=model)["input_size"]
    x = torch.randn((batch_size, *input_size), device=device, dtype=model_dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if amp_bf16 else nullcontext()

    def step():
        with autocast:
            model(x)
        torch.cuda.synchronize(device)

    with torch.no_grad():
        for _ in range(WARMUP):
            step()
        start = time.perf_counter()
        for _ in range(STEPS):
            step()
        elapsed = time.perf_counter() - start
    del model, x
    torch.cuda.empty_cache()
    return STEPS * batch_size / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vit_base_patch16_224")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data", default=str(sample_dir() or ""), help="folder for the end-to-end run ('' skips)")
    parser.add_argument("--compile", action="store_true", help="also measure vitdash with torch.compile")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA GPU here: this benchmark needs one (the CPU benchmark is bench_throughput.py)")
        return 2

    torch.backends.cudnn.benchmark = True  # as timm's benchmark.py sets it
    gpu = torch.cuda.get_device_name(0)
    device = torch.device("cuda")
    ckpt = load_timm(args.model)
    opts = EngineOptions(device="cuda", batch_size=args.batch_size, precision="bf16")
    input_size = (3, 224, 224)

    results: dict[str, list[float]] = {"timm amp bf16": [], "timm pure bf16": [], "vitdash bf16 autocast": []}
    if args.compile:
        results["vitdash bf16 autocast + compile"] = []
    variants = {"vitdash bf16 autocast": prepare_forward(build_model(ckpt), device, torch.bfloat16, opts)}
    if args.compile:
        variants["vitdash bf16 autocast + compile"] = prepare_forward(
            build_model(ckpt), device, torch.bfloat16, EngineOptions(device="cuda", compile=True))
    for _ in range(args.repeats):  # alternate so clock and thermal drift hit every side alike
        results["timm amp bf16"].append(timm_inference_benchmark(args.model, args.batch_size, amp_bf16=True))
        results["timm pure bf16"].append(timm_inference_benchmark(args.model, args.batch_size, amp_bf16=False))
        for name, forward in variants.items():
            results[name].append(measure_model_throughput(forward, input_size, args.batch_size, device,
                                                          warmup=WARMUP, iters=STEPS, max_seconds=float("inf")))
    medians = {k: statistics.median(v) for k, v in results.items()}

    e2e = None
    if args.data:
        r = evaluate(ckpt, args.data, opts)
        e2e = {"images_per_s": r.images_per_s, "model_images_per_s": r.model_images_per_s, "n_images": r.n_images,
               "num_workers": r.num_workers, "data": args.data}

    base = medians["timm amp bf16"]
    print(f"\n### {gpu}: {args.model}, batch {args.batch_size}, 224 px "
          f"(torch {torch.__version__}, timm {__import__('timm').__version__})\n")
    print("| method | images/s (median of %d) | vs timm amp bf16 |" % args.repeats)
    print("|---|---|---|")
    for name, value in medians.items():
        print(f"| {name} | {value:,.0f} | {value / base:.3f}x |")
    if e2e:
        print(f"| vitdash evaluate end to end ({e2e['n_images']} images, {e2e['num_workers']} workers) | "
              f"{e2e['images_per_s']:,.0f} | {e2e['images_per_s'] / base:.3f}x |")
    print("\n" + json.dumps({"gpu": gpu, "model": args.model, "batch_size": args.batch_size, "runs": results,
                             "medians": medians, "end_to_end": e2e}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
