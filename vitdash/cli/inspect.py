"""`python -m vitdash inspect PATH [--json]`: what the checkpoint is, without any analysis."""
from __future__ import annotations

from vitdash.cli.common import add_json_flag, emit, load_or_exit
from vitdash.identity.family import describe

HELP = "describe a checkpoint: format, layout, tensors, metadata, mapping report"


def add_arguments(parser) -> None:
    parser.add_argument("path", help="checkpoint file or folder, timm:<name>, or hf-hub:<repo>")
    add_json_flag(parser)


def run(args) -> int:
    ckpt = load_or_exit(args.path)
    result = ckpt.to_dict() | describe(ckpt)
    tables = (f" ({ckpt.num_learned_params / 1e6:.2f} M learned; computed tables: "
              + ", ".join(f"{b.name} ({b.kind})" for b in ckpt.buffers[:3])
              + (f" and {len(ckpt.buffers) - 3} more" if len(ckpt.buffers) > 3 else "") + ")") if ckpt.buffers else ""
    family = result.get("family") or {}
    summary = (f"{ckpt.name}: {ckpt.format} file, {ckpt.layout} layout, {len(ckpt.tensors)} tensors, "
               f"{ckpt.num_params / 1e6:.2f} M params{tables}, ViT: {'yes' if ckpt.is_vit else 'no'}\n"
               + (f"{family['summary']}\n" if family.get("summary") else "")
               + f"sha256 {ckpt.sha256}"
               + "".join(f"\nnote: {n}" for n in ckpt.metadata.get("mapping_notes", []) if ckpt.layout == "structure")
               + "".join(f"\nwarning: {w}" for w in ckpt.warnings))
    emit(result, args, summary)
    return 0
