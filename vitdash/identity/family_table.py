"""The known ViT family table (`family.csv`), parsed once: one row per published member."""
from __future__ import annotations

import csv
from functools import lru_cache
from pathlib import Path
from typing import Any

FAMILY_CSV = Path(__file__).with_name("family.csv")


FAMILY_KEYWORDS = {"ViT": "vit", "DeiT": "deit", "DeiT III": "deit3", "DINOv2": "dinov2", "CLIP": "clip",
                   "DINOv3": "dinov3", "EVA-02": "eva02", "SigLIP": "siglip", "SigLIP 2": "siglip2", "AIMv2": "aimv2",
                   "BEiT": "beit", "BEiT v2": "beitv2", "MAE": "mae", "PE": "pe", "RoPE-ViT": "rope"}


# The word timm's weight tags carry for a family whose keyword they lack: SigLIP 2's weights are `.v2_webli`.
TAG_WORDS = {**FAMILY_KEYWORDS, "SigLIP 2": "v2"}


_INT = ("layers", "width", "mlp_size", "heads", "patch", "img_size", "reg_tokens", "num_classes")


_BOOL = ("class_token", "dist_token", "layer_scale", "pre_norm", "no_embed_class")


_FLOAT = ("params_m", "gflops")


def parse_row(r: dict[str, str]) -> dict[str, Any]:
    """One csv row with typed columns."""
    row: dict[str, Any] = dict(r)
    for k in _INT:
        row[k] = int(r[k])
    for k in _BOOL:
        row[k] = r[k].strip().lower() in ("1", "true", "yes")
    for k in _FLOAT:
        row[k] = float(r[k])
    row["top1"] = _parse_pairs(r["top1"], float)
    row["hf_ids"] = _parse_pairs(r["hf_ids"], str)
    row["structure"] = _parse_pairs(r.get("structure", ""), str)
    row["label"] = f"{r['name']} @{row['img_size']}"
    return row


@lru_cache(maxsize=1)
def load_rows() -> tuple[dict[str, Any], ...]:
    with FAMILY_CSV.open(newline="") as f:
        return tuple(parse_row(r) for r in csv.DictReader(f))


def _parse_pairs(text: str, cast) -> dict[str, Any]:
    out = {}
    for item in filter(None, (s.strip() for s in text.split("|"))):
        key, _, value = item.partition("=")
        out[key.strip()] = cast(value.strip())
    return out


def family_rows() -> list[dict[str, Any]]:
    """Every family member as a dict (a fresh copy: callers may annotate it)."""
    return [dict(r) for r in load_rows()]


def heads_for_shape(embed_dim: int, depth: int, mlp_hidden: int, mlp_type: str = "mlp") -> tuple[int, str] | None:
    """Heads of a family member with this width, depth and MLP (ViT-H: 16 heads of 80, not 1280/64; DINOv3 H+,
    as wide and deep with a gated MLP of the same width, has 20)."""
    found = {(r["heads"], r["name"]) for r in load_rows()
             if (r["width"], r["layers"], r["mlp_size"], r["mlp_type"]) == (embed_dim, depth, mlp_hidden, mlp_type)}
    heads = {h for h, _ in found}
    if len(heads) != 1:
        return None
    return heads.pop(), sorted(n for _, n in found)[0]
