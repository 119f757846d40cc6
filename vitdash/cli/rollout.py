"""`python -m vitdash rollout CHECKPOINT IMAGE`: where the model looks in one image (attention rollout)."""
from __future__ import annotations

from pathlib import Path

from vitdash.attention.capture import SOURCES
from vitdash.attention.explain import METHODS, explain_images
from vitdash.attention.artifacts import TREATMENTS
from vitdash.attention.overlay import COLORMAPS, to_png
from vitdash.attention.rollout import HEAD_FUSIONS
from vitdash.cli.common import add_json_flag, emit, load_or_exit
from vitdash.data.images import open_image
from vitdash.errors import VitdashError

HELP = "Attention rollout of one image: where the model looks (optionally as a PNG overlay)"


def _size(text: str) -> tuple[int, int]:
    """'224' or '224x320' (height x width)."""
    import argparse

    parts = text.lower().split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 224 or 224x320, got {text!r}") from None
    if len(values) not in (1, 2) or min(values) < 1:
        raise argparse.ArgumentTypeError(f"size must look like 224 or 224x320, got {text!r}")
    return (values[0], values[-1])


def add_arguments(parser) -> None:
    parser.add_argument("path", help="checkpoint file or folder (or timm:<name>)")
    parser.add_argument("image", help="JPEG, PNG or WebP image")
    parser.add_argument("-o", "--output", help="write the heatmap blended on the image to this PNG")
    parser.add_argument("--method", choices=METHODS, default="rollout",
                        help="plain rollout, or gradient-weighted rollout for --class (needs a classification head)")
    parser.add_argument("--head-fusion", choices=HEAD_FUSIONS, default="mean", help="how heads are merged per layer")
    parser.add_argument("--discard-ratio", type=float, default=0.0,
                        help="drop this fraction of the lowest attentions per layer and image (0 = Abnar & Zuidema)")
    parser.add_argument("--start-layer", type=int, default=0, help="first layer included in the rollout")
    parser.add_argument("--source", choices=SOURCES, default=None,
                        help="whose view is shown (default: what feeds the head: the attention pool's query, "
                             "else the class token, else all patches)")
    parser.add_argument("--class", dest="target_class", type=int, default=None,
                        help="class index for --method grad_rollout (default: the top-1 prediction)")
    parser.add_argument("--img-size", type=_size, default=None, help="input resolution, 224 or HxW (default: native)")
    parser.add_argument("--colormap", choices=COLORMAPS, default="Jet")
    parser.add_argument("--opacity", type=float, default=0.5, help="heatmap weight in the overlay, 0..1")
    parser.add_argument("--clip", type=float, default=1.0,
                        help="saturate the overlay above this quantile (e.g. 0.99), so one outlier patch does not "
                             "wash out the rest")
    parser.add_argument("--artifacts", choices=TREATMENTS, default="saturate",
                        help="patches that swamp the map (high-norm artifact tokens, hot pixels): capped at the rest's "
                             "maximum (default), left out, or shown as they are; marked in every case")
    add_json_flag(parser)


def _settings(d: dict) -> str:
    return (f"{d['method']}, {d['head_fusion']} heads, discard {d['discard_ratio']:g}, from layer {d['start_layer']}, "
            f"seen from {d['source']}, {d['input_size'][0]}x{d['input_size'][1]} px")


def run(args) -> int:

    ckpt = load_or_exit(args.path)
    if not ckpt.canonical:
        raise VitdashError(f"{ckpt.name}: not in a recognized ViT layout ({ckpt.layout}); attention cannot be read")
    image = open_image(args.image)
    result = explain_images(
        ckpt, [image], img_size=args.img_size, method=args.method, head_fusion=args.head_fusion,
        discard_ratio=args.discard_ratio, start_layer=args.start_layer, source=args.source,
        target_class=args.target_class)[0]
    out = result.to_dict()
    out["image"] = str(args.image)
    if args.output:
        overlay, _ = result.picture(artifacts=args.artifacts, colormap=args.colormap, opacity=args.opacity,
                                    clip=args.clip, caption=[f"{ckpt.name}: {Path(args.image).name}", _settings(out)])
        Path(args.output).write_bytes(to_png(overlay))
        out["output"] = str(args.output)
    emit(out, args, _summary(out))
    return 0


def _summary(d: dict) -> str:
    import numpy as np

    grid = np.asarray(d["map"])
    row, col = np.unravel_index(int(grid.argmax()), grid.shape)
    lines = [
        f"{d['method']} of {d['image']} at {d['input_size'][0]}x{d['input_size'][1]} px: "
        f"{d['grid'][0]}x{d['grid'][1]} patches, {d['num_prefix_tokens']} prefix token(s), seen from {d['source']}",
        f"head fusion {d['head_fusion']}, discard ratio {d['discard_ratio']}, layers {d['start_layer']}.."
        f"{d['depth'] - 1}",
        f"strongest patch: row {row}, column {col} ({grid.max():.3f}); "
        f"{d['prefix_share']:.1%} of the rollout ends in prefix tokens",
    ]
    found = d.get("artifacts") or {}
    if found.get("hot") or found.get("high_norm"):
        lines.append(f"outlier patches (row, column): hot {found['hot']}, high-norm {found['high_norm']}")
    if d.get("target_class") is not None:
        lines.append(f"gradients of class {d['target_class']}" + (f" ({d['target_label']})" if d["target_label"] else ""))
    if d.get("top5"):
        lines.append("top-5:")
        lines += [f"  {p['probability']:6.1%}  {p['index']:>5}  {p['label'] or ''}" for p in d["top5"]]
    if d.get("output"):
        lines.append(f"overlay written to {d['output']}")
    return "\n".join(lines)
