"""One line per timm model of the families people download today: what vitdash makes of it.

For each name: the timm class it is read as; whether the architecture inferred from its state dict (built on the
meta device, as `timm:<name>` at init records it) equals timm's own configuration (class, width, depth, heads,
patch, image size, prefix tokens, position encoding, MLP, pooling, classes) and the parameter count; the family
row it is put on; then, on a small instance (2 blocks, narrower where the name allows), the audit's verdict at
init and the largest difference between vitdash's attention maps and timm's AttentionExtract on an unfused copy.

    .venv/bin/python scripts/family_checks.py                  # one representative per family and class
    .venv/bin/python scripts/family_checks.py --all            # every timm name of these families
    .venv/bin/python scripts/family_checks.py --only dinov3    # names matching a regex
"""
from __future__ import annotations

import argparse
import copy
import re
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vitdash.attention.capture import attention_maps  # noqa: E402
from vitdash.identity.architecture import infer_architecture  # noqa: E402
from vitdash.identity.complexity import spec_params  # noqa: E402
from vitdash.identity.family import match  # noqa: E402
from vitdash.load.checkpoint import Checkpoint, TensorStore  # noqa: E402
from vitdash.load.layouts import detect  # noqa: E402
from vitdash.load.sources import checkpoint_from_state_dict  # noqa: E402
from vitdash.trained.verdict import audit  # noqa: E402

FAMILIES = {"DINOv3": r"_dinov3", "EVA-02": r"^eva02_", "SigLIP / SigLIP 2": r"^(vit|naflexvit)_.*_siglip",
            "AIMv2": r"^aimv2_", "BEiT": r"^beit_", "BEiT v2": r"^beitv2_", "CLIP": r"^vit_.*_clip_",
            "PE": r"^vit_pe_", "RoPE-ViT": r"_rope_"}
REPRESENTATIVES = ["vit_small_patch16_dinov3", "vit_base_patch16_dinov3", "vit_small_plus_patch16_dinov3_qkvb",
                   "vit_7b_patch16_dinov3", "eva02_tiny_patch14_224", "eva02_base_patch14_224",
                   "eva02_large_patch14_clip_224", "vit_base_patch16_siglip_224", "vit_so400m_patch14_siglip_384",
                   "naflexvit_base_patch16_siglip", "aimv2_large_patch14_224", "beit_base_patch16_224",
                   "beitv2_large_patch16_224", "vit_base_patch16_224.mae", "vit_base_patch32_clip_quickgelu_224",
                   "vit_huge_patch14_clip_224", "vit_pe_core_base_patch16_224", "vit_pe_spatial_tiny_patch16_512",
                   "vit_base_patch16_rope_224", "vit_small_patch16_rope_mixed_ape_224"]


def _truth(model: torch.nn.Module) -> dict:
    embed = getattr(model, "patch_embed", None) or model.embeds
    patch = embed.patch_size[0]
    size = getattr(embed, "img_size", None)
    pos = []
    if getattr(model, "pos_embed", None) is not None or getattr(embed, "pos_embed_type", "none") != "none":
        pos.append("learned")
    if getattr(model, "rope", None) is not None:
        pos.append("rope")
    if getattr(model, "rel_pos_bias", None) is not None or getattr(
            model.blocks[0].attn, "relative_position_bias_table", None) is not None:
        pos.append("relative")
    mlp = type(model.blocks[0].mlp).__name__
    return {"timm_class": type(model).__name__, "embed_dim": model.embed_dim, "depth": len(model.blocks),
            "num_heads": model.blocks[0].attn.num_heads, "patch_size": patch,
            "img_size": None if size is None else tuple(s // patch * patch for s in size),
            "num_prefix_tokens": model.num_prefix_tokens, "pos_embed": "+".join(pos) or "none",
            "mlp_layer": "GluMlp" if mlp == "SwiGLUPacked" else mlp, "global_pool": model.global_pool,
            "num_classes": model.num_classes}


def _meta(name: str, model: torch.nn.Module) -> dict:
    cfg = dict(model.pretrained_cfg)
    if getattr(getattr(model, "patch_embed", None), "img_size", None):
        cfg["input_size"] = (3, *model.patch_embed.img_size)
    return {"timm_model": name, "pretrained": False, "pretrained_cfg": cfg}


def full_size(name: str) -> tuple[str, str, str]:
    """(class, config check, family row) of timm's definition, read from its state dict's shapes."""
    import timm

    with torch.device("meta"):
        model = timm.create_model(name, pretrained=False)
    meta = _meta(name, model)
    found = detect(TensorStore.from_tensors(model.state_dict()), meta)
    ckpt = Checkpoint(tensors=found.tensors, source=name, format="memory", layout=found.layout, canonical=True,
                      metadata={**meta, **found.metadata}, is_vit=True)
    arch = infer_architecture(ckpt)
    truth = _truth(model)
    got = {k: getattr(arch, k) for k in truth}
    if truth["img_size"] is None:
        got["img_size"] = None
    count = sum(p.numel() for p in model.parameters())
    wrong = [k for k in truth if got[k] != truth[k]]
    if not arch.num_params == count == sum(spec_params(arch).values()):
        wrong.append("parameters")
    row = match(arch, hint=name)
    return arch.timm_class, ("yes" if not wrong else "NO: " + ", ".join(wrong)), f"{row.kind}: {row.name}"


def small(name: str) -> tuple[str, str]:
    """(verdict at init with the likely scheme, max |vitdash - AttentionExtract| over every layer's maps)."""
    import timm
    from timm.utils import AttentionExtract

    kw: dict = dict(depth=2)
    with torch.device("meta"):
        full = timm.create_model(name, pretrained=False)
    if full.embed_dim > 256 and full.blocks[0].attn.num_heads % 3 == 0 and not name.startswith("eva02"):
        kw.update(embed_dim=96, num_heads=3)
    if getattr(getattr(full, "patch_embed", None), "img_size", None):
        kw["img_size"] = 4 * full.patch_embed.patch_size[0]
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False, **kw).eval()
    result = audit(checkpoint_from_state_dict(model.state_dict(), metadata={"timm_model": name}))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    p = (getattr(model, "patch_embed", None) or model.embeds).patch_size[0]
    x = torch.randn(1, 3, 4 * p, 4 * p)
    ours = attention_maps(model, x).attentions
    other = copy.deepcopy(model)
    for block in other.blocks:
        block.attn.fused_attn = False
    with torch.no_grad():
        theirs = list(AttentionExtract(other, method="fx")(x).values())
    diff = max(float((a - b).abs().max()) for a, b in zip(ours, theirs))
    return f"{result.verdict} ({result.likely_init})", f"{diff:.1e}"


def main() -> int:
    import timm

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--all", action="store_true")
    ap.add_argument("--only", default="")
    args = ap.parse_args()
    torch.set_num_threads(2)
    every = [n for p in FAMILIES.values() for n in timm.list_models() if re.search(p, n)]
    names = every + ["vit_base_patch16_224.mae", "vit_large_patch16_224.mae", "vit_huge_patch14_224.mae"] \
        if args.all else REPRESENTATIVES
    names = [n for n in dict.fromkeys(names) if re.search(args.only, n)]
    print("| timm name | class | inferred arch = timm config | family row | fresh init | rollout vs AttentionExtract |")
    print("|---|---|---|---|---|---|")
    for name in names:
        cls, same, row = full_size(name)
        verdict, diff = small(name)
        print(f"| {name} | {cls} | {same} | {row} | {verdict} | {diff} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
