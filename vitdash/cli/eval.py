"""`python -m vitdash eval PATH --data DIR`: top-1/top-5 of the checkpoint's own head on labeled images."""
from __future__ import annotations

from vitdash.cli.common import add_json_flag, emit, load_or_exit
from vitdash.perform.engine import EngineOptions
from vitdash.perform.evaluate import evaluate

HELP = "score the checkpoint's own head on labeled images (folder, synset-named files, or 'digits')"


def add_engine_arguments(parser) -> None:
    """Data, device and preprocessing flags shared with `fewshot`."""
    parser.add_argument("path", help="checkpoint file or folder, timm:<name>, or hf-hub:<repo>")
    parser.add_argument("--data", required=True,
                        help="image folder (class subfolders or synset-named files) or 'digits' (built in)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--limit", type=int, default=None, help="use a random subset of N images (seed 0)")
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"),
                        help="auto: bf16 autocast on CUDA, fp32 on CPU")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model first")
    parser.add_argument("--workers", type=int, default=None, help="DataLoader workers (default: 8 on CUDA, 0 on CPU)")
    parser.add_argument("--img-size", type=int, default=None, help="override the input size (square)")
    parser.add_argument("--crop-pct", type=float, default=None)
    parser.add_argument("--interpolation", default=None)
    parser.add_argument("--mean", type=float, nargs="+", default=None)
    parser.add_argument("--std", type=float, nargs="+", default=None)
    add_json_flag(parser)


def engine_options(args):
    return EngineOptions(device=args.device, batch_size=args.batch_size, precision=args.precision,
                         compile=args.compile, num_workers=args.workers, limit=args.limit)


def overrides(args) -> dict:
    return {"img_size": args.img_size, "crop_pct": args.crop_pct, "interpolation": args.interpolation,
            "mean": args.mean, "std": args.std}


def add_arguments(parser) -> None:
    add_engine_arguments(parser)
    parser.add_argument("--no-throughput", action="store_true", help="skip the model-only throughput measurement")


def run(args) -> int:
    ckpt = load_or_exit(args.path)
    r = evaluate(ckpt, args.data, engine_options(args), overrides(args), measure_throughput=not args.no_throughput)
    ref = f" (published {r.reference_top1:.1%})" if r.reference_top1 is not None else ""
    model_ips = f", model only {r.model_images_per_s:.1f}" if r.model_images_per_s else ""
    summary = (f"{r.checkpoint} on {r.data['name']}: top-1 {r.top1:.2%}{ref}, top-{r.top5_k} {r.top5:.2%} "
               f"(chance {r.chance_top1:.2%})\n"
               f"{r.n_images} images, {r.n_classes} classes, {r.n_skipped} skipped; labels: "
               f"{r.label_mapping['method']}\n"
               f"{r.device} {r.dtype}: {r.images_per_s:.1f} images/s end to end{model_ips}"
               + "".join(f"\nwarning: {w}" for w in r.warnings))
    emit(r.to_dict(), args, summary)
    return 0
