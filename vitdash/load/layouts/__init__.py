"""Naming conventions -> canonical timm names. One small module per convention.

Each module exposes `NAME` (the layout reported), and `convert(src, meta) -> Canon | None`: None when
the keys are not its convention. Conversions are lazy (`Canon` records loaders, nothing is read),
and every source key is either mapped or listed as left over (set aside with the reason, when it is known),
never silently dropped.
"""
from __future__ import annotations

from typing import Any

from vitdash.load.checkpoint import TensorStore
from vitdash.load.layouts import (
    aimv2_hf,
    beit_hf,
    clip_hf,
    dinov3_hf,
    hf,
    mae,
    openclip,
    siglip_hf,
    structural,
    supergradients,
    timm_layout,
    torchvision_layout,
)
from vitdash.load.layouts.canon import WRAPPER_PREFIXES, Detected, strip_prefix, strip_wrappers

# The key maps know a convention's names exactly; the structural recognizer reads any other ViT by its shapes.
# MAE before the timm and Hugging Face names its encoder uses, BEiT before the ViT names it shares, CLIP
# (class_embedding) before SigLIP's names.
KEY_MAPS = (mae, timm_layout, torchvision_layout, clip_hf, openclip, aimv2_hf, dinov3_hf, beit_hf, hf, siglip_hf,
            supergradients)


def _convert(src: TensorStore, meta: dict[str, Any], wrappers: list[str], modules: tuple) -> Detected | None:
    for module in modules:
        canon = module.convert(src, meta)
        if canon is not None:
            layout = module.NAME
            if layout == "timm" and "vit" in wrappers:
                layout = "model_zoo"  # the ViT Model Zoo stores timm keys under `vit.`
            prefix = "".join(f"{w}." for w in wrappers)  # the file's keys, before the wrappers were stripped
            origins = {dst: [prefix + k for k in keys] for dst, keys in canon.origins.items()}
            return Detected(layout, canon.store(), canon.leftover(), wrappers, canon.notes + canon.aside_notes(),
                            canon.metadata, canon.explained(), origins, sorted(canon.derived))
    return None


def detect(src: TensorStore, meta: dict[str, Any]) -> Detected | None:
    """Try every known convention on the whole file, then on the part under one wrapper prefix
    (a DINO `teacher` with `backbone.*` beside its projection `head.*`; the rest is left over), and only then
    the structural recognizer the same way."""
    stripped, wrappers = strip_wrappers(src)
    for modules in (KEY_MAPS, (structural,)):
        found = _convert(stripped, meta, wrappers, modules)
        if found is not None:
            return found
        for prefix in WRAPPER_PREFIXES:
            part = strip_prefix(stripped, prefix)
            if 0 < len(part) < len(stripped):
                found = _convert(part, meta, [*wrappers, prefix.rstrip(".")], modules)
                if found is not None:
                    found.unmapped += [k for k in stripped if not k.startswith(prefix)]
                    return found
    return None
