"""Rollout cost against a plain forward: ViT-B/16, one 224-px image, CPU, same process.

Target (issue 6): `explain` (unfused attention on a weight-sharing twin, every layer's map, rollout, top-5)
takes at most 1.5x the model's own fused forward. Runs alternate so that load from other processes hits
both sides alike; medians are compared.

    .venv/bin/python benchmarks/bench_rollout.py [--repeats 5] [--threads N]
"""
from __future__ import annotations

import argparse
import statistics
import sys

import torch
from timing import timed  # benchmarks/timing.py (scripts run with benchmarks/ on sys.path)

from vitdash.attention.explain import explain, preprocess
from vitdash.data.samples import sklearn_samples
from vitdash.identity.architecture import infer_architecture
from vitdash.identity.model import build_model
from vitdash.identity.preprocessing import resolve_preprocessing
from vitdash.load.sources import load_timm

TARGET = 1.5


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--model", default="vit_base_patch16_224")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    ckpt = load_timm(args.model)  # timm init weights: the cost does not depend on the values
    model = build_model(ckpt)
    image = sklearn_samples()[0].load()
    batch, _ = preprocess([image], resolve_preprocessing(ckpt, infer_architecture(ckpt)))
    fused = [blk.attn.fused_attn for blk in model.blocks]

    def forward():
        with torch.inference_mode():
            model(batch)

    cases = {
        "forward (fused, baseline)": forward,
        "rollout (mean, discard 0)": lambda: explain(model, batch),
        "rollout (max, discard 0.9)": lambda: explain(model, batch, head_fusion="max", discard_ratio=0.9),
        "gradient rollout (top-1)": lambda: explain(model, batch, method="grad_rollout"),
    }
    for fn in cases.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.repeats):
        for name, fn in cases.items():
            times[name].append(timed(fn))
    assert [blk.attn.fused_attn for blk in model.blocks] == fused, "the shared model was changed"

    base = statistics.median(times["forward (fused, baseline)"])
    h, w = batch.shape[-2:]
    print(f"{args.model}, 1 image {h}x{w}, CPU, {args.threads} threads, median of {args.repeats} (alternating runs)")
    print(f"fused attention in the model: {all(fused)}")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"  {name:30s} {med * 1000:8.1f} ms   x{med / base:5.2f}")
    ratio = statistics.median(times["rollout (mean, discard 0)"]) / base
    verdict = "PASS" if ratio <= TARGET else "FAIL"
    print(f"rollout / forward = {ratio:.2f} (target <= {TARGET}): {verdict}")
    return 0 if ratio <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
