"""Hand-written ViTs built on `nn.MultiheadAttention` (`in_proj_weight`), mapped by structure, not names.

A block is any `<container>.<i>.` holding an `in_proj_weight`; inside it the two 1-D norms (in name
order) and two Linear layers (H x D then D x H) fill timm's Block. Outside the blocks, the class token,
position embedding, conv patch embedding, final norm and head are found by shape. If any piece is
missing or ambiguous the layout is not claimed and the file stays a generic tensor set.
"""
from __future__ import annotations

import re
from collections import defaultdict

from vitdash.load.layouts.canon import Canon

NAME = "nn.MultiheadAttention"

_BLOCK = re.compile(r"^(?P<c>.+?)\.(?P<i>\d+)\.(?P<rest>.+)$")


def _blocks(src) -> tuple[str, dict[int, dict[str, str]]] | None:
    containers = {m.group("c") for k in src if (m := _BLOCK.match(k)) and m.group("rest").endswith("in_proj_weight")}
    if len(containers) != 1:
        return None
    container = containers.pop()
    blocks: dict[int, dict[str, str]] = defaultdict(dict)
    for k in src:
        m = _BLOCK.match(k)
        if m and m.group("c") == container:
            blocks[int(m.group("i"))][m.group("rest")] = k
    return container, dict(blocks)


def _map_block(canon: Canon, i: int, keys: dict[str, str], dim: int) -> bool:
    src = canon.src
    attn = next(r[: -len("in_proj_weight")] for r in keys if r.endswith("in_proj_weight"))
    canon.rename(f"blocks.{i}.attn.qkv.weight", keys[attn + "in_proj_weight"])
    if attn + "in_proj_bias" in keys:
        canon.rename(f"blocks.{i}.attn.qkv.bias", keys[attn + "in_proj_bias"])
    for kind in ("weight", "bias"):
        if f"{attn}out_proj.{kind}" in keys:
            canon.rename(f"blocks.{i}.attn.proj.{kind}", keys[f"{attn}out_proj.{kind}"])
    rest = {r: k for r, k in keys.items() if not r.startswith(attn)}
    norms = sorted(r for r in rest if r.endswith(".weight") and src.shape(rest[r]) == (dim,))
    linears = sorted((r for r in rest if r.endswith(".weight") and len(src.shape(rest[r])) == 2),
                     key=lambda r: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", r)])
    if len(norms) != 2 or len(linears) != 2:
        return False
    hidden = src.shape(rest[linears[0]])[0]
    if src.shape(rest[linears[0]]) != (hidden, dim) or src.shape(rest[linears[1]]) != (dim, hidden):
        return False
    for dst, r in (("norm1", norms[0]), ("norm2", norms[1]), ("mlp.fc1", linears[0]), ("mlp.fc2", linears[1])):
        base = r[: -len("weight")]
        for kind in ("weight", "bias"):
            if base + kind in rest:
                canon.rename(f"blocks.{i}.{dst}.{kind}", rest[base + kind])
    return True


def convert(src, meta) -> Canon | None:
    found = _blocks(src)
    if found is None:
        return None
    container, blocks = found
    outside = [k for k in src if not k.startswith(container + ".")]
    conv = [k for k in outside if k.endswith("weight") and len(src.shape(k)) == 4]
    if len(conv) != 1:
        return None
    dim = src.shape(conv[0])[0]
    canon = Canon(src)
    canon.rename("patch_embed.proj.weight", conv[0])
    if conv[0][: -len("weight")] + "bias" in src:
        canon.rename("patch_embed.proj.bias", conv[0][: -len("weight")] + "bias")
    tokens = [k for k in outside if len(src.shape(k)) == 3 and src.shape(k)[0] == 1 and src.shape(k)[2] == dim]
    cls = [k for k in tokens if src.shape(k)[1] == 1 and "cls" in k.lower()]
    pos = [k for k in tokens if "pos" in k.lower()]
    if len(pos) != 1 or len(cls) > 1:
        return None
    canon.rename("pos_embed", pos[0])
    if cls:
        canon.rename("cls_token", cls[0])
    if sorted(blocks) != list(range(len(blocks))) or not all(_map_block(canon, i, blocks[i], dim) for i in blocks):
        return None
    # Final norm (a 1-D pair of width dim) and head (a Linear from dim), outside the blocks.
    norms = [k for k in outside if k.endswith("weight") and src.shape(k) == (dim,)]
    heads = [k for k in outside if k.endswith("weight") and len(src.shape(k)) == 2 and src.shape(k)[1] == dim]
    if len(norms) > 1 or len(heads) > 1:
        return None
    for dst, found_keys in (("norm", norms), ("head", heads)):
        if found_keys:
            base = found_keys[0][: -len("weight")]
            for kind in ("weight", "bias"):
                if base + kind in src:
                    canon.rename(f"{dst}.{kind}", base + kind)
    canon.metadata["norm_eps"] = 1e-5  # nn.LayerNorm default
    canon.notes.append(
        "nn.MultiheadAttention model mapped by structure: pre-norm blocks and GELU MLPs assumed (the weights "
        "cannot show norm placement or the activation)")
    return canon
