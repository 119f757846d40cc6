"""Recompute the computed columns of vitdash/identity/family.csv from timm's own definition of each row's model.

The shape, token, parameter, GFLOPs, timm class, position-encoding and `structure` columns are read off the
model built on the meta device (no weights), through the same inference the dashboard runs. The family, name,
timm name, head size (`num_classes`), Hugging Face ids, top-1 and sources are written by hand. Run after adding
or editing a row; tests/test_family.py checks every row against timm the same way.

    .venv/bin/python scripts/family_columns.py            # rewrite family.csv in place
    .venv/bin/python scripts/family_columns.py --check    # exit 1 if a computed column is stale
"""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vitdash.identity.architecture import ArchSpec, infer_architecture  # noqa: E402
from vitdash.identity.complexity import macs_by_component  # noqa: E402
from vitdash.identity.family import STRUCTURE_ARGS, STRUCTURE_FIELDS, row_spec  # noqa: E402
from vitdash.identity.family_table import FAMILY_CSV, parse_row  # noqa: E402
from vitdash.load.checkpoint import Checkpoint, TensorStore  # noqa: E402
from vitdash.load.layouts import detect  # noqa: E402


def _text(value) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (list, tuple)):
        return " ".join(str(v) for v in value)
    return str(value)


def timm_arch(timm_name: str, num_classes: int) -> tuple[ArchSpec, int, int]:
    """(inferred spec, parameter count, image size) of timm's definition, as load_timm would read it at init."""
    import timm

    with torch.device("meta"):
        model = timm.create_model(timm_name, pretrained=False, num_classes=num_classes)
    sd = model.state_dict()
    meta = {"timm_model": timm_name, "pretrained": False,
            "pretrained_cfg": {"input_size": (3, *model.patch_embed.img_size)} if hasattr(model, "patch_embed")
            else dict(model.pretrained_cfg)}
    found = detect(TensorStore.from_tensors(sd), meta)
    ckpt = Checkpoint(tensors=found.tensors, source=timm_name, format="memory", layout=found.layout, canonical=True,
                      metadata={**meta, **found.metadata}, is_vit=True)
    size = model.patch_embed.img_size[0] if hasattr(model, "patch_embed") else None
    arch = infer_architecture(ckpt)
    return arch, sum(p.numel() for p in model.parameters()), size or arch.img_size[0]


def columns(row: dict[str, str]) -> dict[str, str]:
    arch, count, img_size = timm_arch(row["timm_name"], int(row["num_classes"]))
    out = {
        "layers": arch.depth, "width": arch.embed_dim, "mlp_size": arch.mlp_hidden, "heads": arch.num_heads,
        "patch": arch.patch_size, "img_size": img_size, "class_token": arch.has_class_token,
        "dist_token": arch.has_dist_token, "reg_tokens": arch.num_reg_tokens, "layer_scale": arch.layer_scale,
        "pre_norm": arch.pre_norm, "mlp_type": arch.mlp_type, "no_embed_class": arch.no_embed_class,
        "params_m": f"{count / 1e6:.2f}", "gflops": f"{sum(macs_by_component(arch).values()) / 1e9:.2f}",
        "timm_class": arch.timm_class, "pos_embed": arch.pos_embed, "structure": ""}
    out = {k: _text(v) for k, v in out.items()}
    base = row_spec(parse_row({**row, **out}))
    pairs = [f"{f}={_text(getattr(arch, f))}" for f in STRUCTURE_FIELDS if getattr(arch, f) != getattr(base, f)]
    pairs += [f"args.{k}={_text(arch.model_args[k])}" for k in STRUCTURE_ARGS
              if k in arch.model_args and arch.model_args[k] not in (None, False) and
              (k != "rope_type" or arch.model_args[k] == "mixed") and (k != "pos_embed" or
                                                                      arch.model_args[k] == "factorized")]
    out["structure"] = "|".join(pairs)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    with FAMILY_CSV.open(newline="") as f:
        reader = csv.DictReader(f)
        header, rows = list(reader.fieldnames or []), list(reader)
    for col in ("timm_class", "pos_embed", "structure"):
        if col not in header:
            header.insert(header.index("timm_name"), col)
    stale = []
    for row in rows:
        new = columns(row)
        if any(row.get(k) != v for k, v in new.items()):
            stale.append(row["name"])
        row.update(new)
    if args.check:
        print("\n".join(f"stale: {n}" for n in stale) or "family.csv is up to date")
        return 1 if stale else 0
    with FAMILY_CSV.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=header, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    print(f"{len(rows)} rows written, {len(stale)} changed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
