"""Peak memory per job kind, against the estimate the job queue reserves, and the DINOv2 few-shot probe against
how it ran before (the ~6 GB run of issue 17).

Each case runs in a fresh process: it loads its checkpoint, measures the resident size (the baseline, in that
same process), resets the kernel's high-water mark (/proc/self/clear_refs), runs the job, and reports the peak
above the baseline, what is still held after the job (before and after `give_back`), and the queue's estimate.

The few-shot baseline is the probe as it ran before: the checkpoint and its random twin both resident, each
batch of 64 518 px DINOv2 inputs (1,370 tokens an image) through one then the other. The probe now runs them
one after the other, its batch capped at 512 MB of activations (`EngineOptions.batch_mb`), fed to the model in
chunks of about a second of work on a CPU (`engine.run_images`), and hands freed memory back after the job.

Run: `OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_memory.py [--images 64] [--cases ...]` (Linux).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MB = 1 << 20
ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
CASES = ("fewshot-before", "fewshot", "accuracy", "audit", "zoo", "report")


def _status(field: str) -> int:
    with open("/proc/self/status") as f:
        return int(next(x for x in f if x.startswith(field + ":")).split()[1]) * 1024


def _dinov2():
    from vitdash.load.sources import load, load_timm

    folder = SHARED / "checkpoints" / "dinov2-small-hf"  # the file of the issue when it is here
    return load(folder) if folder.is_dir() else load_timm("vit_small_patch14_dinov2")


def _fewshot_before(ckpt, images: int) -> None:
    """The probe's forward as it ran before: both models resident, the whole batch of 64 through each in turn
    (today's engine feeds a CPU batch in chunks of about a second and caps it by memory; this does neither)."""
    import torch

    from vitdash.data.datasets import discover
    from vitdash.identity.architecture import infer_architecture
    from vitdash.identity.model import build_model, build_random_twin
    from vitdash.identity.preprocessing import resolve_preprocessing

    arch = infer_architecture(ckpt)
    prep = resolve_preprocessing(ckpt, arch)
    ds, transform = discover("digits").limited(images), prep.transform()
    models = [build_model(ckpt, arch), build_random_twin(ckpt, arch)]
    with torch.inference_mode():
        for start in range(0, len(ds), 64):
            x = torch.stack([transform(ds.load(i, prep.pil_mode)) for i in range(start, min(start + 64, len(ds)))])
            feats = [m.forward_head(m.forward_features(x), pre_logits=True) for m in models]
            del x, feats


def _case(name: str, images: int) -> dict:
    """Run one job in this process; returns its figures (bytes)."""
    import torch

    from vitdash.common.memory import give_back, process_rss
    from vitdash.identity.architecture import infer_architecture
    from vitdash.identity.preprocessing import resolve_preprocessing
    from vitdash.load.sources import load, load_timm
    from vitdash.perform.engine import EngineOptions
    from vitdash.perform.memory import estimate_forward
    from vitdash.population.zoo import zoo_bytes
    from vitdash.report import report_bytes
    from vitdash.trained.verdict import audit_bytes

    torch.set_num_threads(2)
    work, estimate, label = None, 0, ""
    if name.startswith("fewshot"):
        from vitdash.perform.fewshot import fewshot

        ckpt = _dinov2()
        arch = infer_architecture(ckpt)
        size = resolve_preprocessing(ckpt, arch).input_size
        label = f"{ckpt.name}, {arch.num_params / 1e6:.0f} M params, {size[1]} px, {images} digits images, twin"
        opts = EngineOptions(device="cpu", limit=images)
        estimate = estimate_forward(arch, size, opts, n_images=images, feature_sets=2)
        work = (lambda: _fewshot_before(ckpt, images)) if name == "fewshot-before" else (
            lambda: fewshot(ckpt, "digits", shots=(1,), n_splits=1, options=opts))
    elif name == "accuracy":
        from vitdash.perform.evaluate import evaluate

        ckpt = load_timm("vit_base_patch16_224")
        arch = infer_architecture(ckpt)
        label = f"ViT-B/16 at init, 224 px, {images} images"
        opts = EngineOptions(device="cpu", limit=images)
        estimate = estimate_forward(arch, (3, 224, 224), opts)
        data = SHARED / "images" / "imagenet-sample"
        work = lambda: evaluate(ckpt, str(data) if data.is_dir() else "digits", opts)
    elif name == "audit":
        from safetensors.torch import save_file

        from vitdash.trained.verdict import audit

        tmp = Path(tempfile.mkdtemp())
        src = load_timm("vit_base_patch16_224")
        save_file({k: v.contiguous() for k, v in src.tensors.materialize().items()}, tmp / "vit_b.safetensors")
        del src
        ckpt = load(tmp / "vit_b.safetensors")
        label = f"ViT-B/16 file, {ckpt.nbytes / MB:.0f} MB of tensors"
        estimate = audit_bytes(ckpt)
        work = lambda: audit(ckpt)
    elif name == "zoo":
        from safetensors.torch import save_file

        from vitdash.population.discover import discover
        from vitdash.population.zoo import audit_zoo

        tmp = Path(tempfile.mkdtemp())
        for seed in range(4):
            sd = load_timm("vit_small_patch16_224").tensors.materialize()
            save_file({k: v + 0.01 * seed for k, v in sd.items()}, tmp / f"member{seed}.safetensors")
        population = discover(tmp)
        label = "4 ViT-S/16 files, in this process"
        estimate = zoo_bytes(population, workers=1)
        work = lambda: audit_zoo(population, workers=1)
    elif name == "report":
        from vitdash.report import generate

        ckpt = load_timm("vit_small_patch16_224")
        label = f"ViT-S/16 at init, accuracy on {images} digits images, 3 attention maps"
        estimate = report_bytes(ckpt, data="digits", limit=images)
        work = lambda: generate(ckpt, data="digits", limit=images)
    else:
        raise SystemExit(f"unknown case {name!r}: one of {', '.join(CASES)}")
    give_back()
    baseline = process_rss()
    Path("/proc/self/clear_refs").write_text("5")  # the high-water mark starts again from here
    start = time.perf_counter()
    work()
    seconds = time.perf_counter() - start
    peak = _status("VmHWM")
    held = process_rss()
    give_back()
    return {"case": name, "label": label, "baseline": baseline, "peak_above": peak - baseline,
            "held_after": held - baseline, "after_give_back": process_rss() - baseline, "estimate": estimate,
            "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64, help="images per forward job (64 fills the old batch)")
    parser.add_argument("--cases", nargs="*", default=list(CASES), choices=CASES)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(_case(args.one, args.images)))
        return
    rows = {}
    for name in args.cases:
        out = subprocess.run([sys.executable, __file__, "--one", name, "--images", str(args.images)],
                             capture_output=True, text=True, cwd=ROOT, check=False,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})  # this checkout's vitdash
        if out.returncode:
            print(f"{name}: failed\n{out.stderr[-2000:]}")
            continue
        r = rows[name] = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{name:15s} {r['label']}\n{'':15s} baseline {r['baseline'] / MB:6.0f} MB | peak above it "
              f"{r['peak_above'] / MB:6.0f} MB | estimate {r['estimate'] / MB:6.0f} MB "
              f"({r['estimate'] / max(r['peak_above'], 1):.2f}x the peak) | held after {r['held_after'] / MB:5.0f} MB, "
              f"after give_back {r['after_give_back'] / MB:5.0f} MB | {r['seconds']:.0f} s", flush=True)
    if "fewshot-before" in rows and "fewshot" in rows:
        old, new = rows["fewshot-before"], rows["fewshot"]
        print(f"RATIO few-shot peak above baseline, before / now = {old['peak_above'] / new['peak_above']:.2f}x "
              f"({old['peak_above'] / MB:.0f} MB -> {new['peak_above'] / MB:.0f} MB); held after the job: "
              f"{old['held_after'] / MB:.0f} MB before, {new['after_give_back'] / MB:.0f} MB now")


if __name__ == "__main__":
    main()
