"""The eval transform a checkpoint expects: its own pretrained_cfg / Hugging Face preprocessor config /
training args, resolved through timm's `resolve_data_config`, then the user's overrides."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from vitdash.data.transforms import Preprocessing
from vitdash.errors import VitdashError
from vitdash.load.checkpoint import Checkpoint

INTERPOLATIONS = ("bicubic", "bilinear", "nearest", "lanczos", "box", "hamming")


_PIL_RESAMPLE = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}


def _cfg_from_hf(config: Mapping[str, Any] | None, pre: Mapping[str, Any] | None) -> dict[str, Any]:
    """A timm pretrained_cfg from Hugging Face config.json / preprocessor_config.json fields."""
    cfg: dict[str, Any] = {}
    if isinstance(config, Mapping):
        size = config.get("image_size")
        if isinstance(size, int):
            cfg["input_size"] = (3, size, size)
        elif isinstance(size, (list, tuple)) and len(size) == 2:
            cfg["input_size"] = (3, int(size[0]), int(size[1]))
    if not isinstance(pre, Mapping):
        return cfg
    if pre.get("image_mean") and pre.get("image_std"):
        cfg["mean"], cfg["std"] = tuple(pre["image_mean"]), tuple(pre["image_std"])
    if pre.get("resample") in _PIL_RESAMPLE:
        cfg["interpolation"] = _PIL_RESAMPLE[pre["resample"]]

    def hw(v):
        if isinstance(v, int):
            return v, v
        if isinstance(v, Mapping) and "height" in v and "width" in v:
            return int(v["height"]), int(v["width"])
        return None

    size, crop = pre.get("size"), hw(pre.get("crop_size"))
    if pre.get("do_center_crop", crop is not None) and crop:
        cfg["input_size"] = (3, *crop)
        shortest = size.get("shortest_edge") if isinstance(size, Mapping) else size if isinstance(size, int) else None
        cfg["crop_pct"] = float(pre.get("crop_pct") or (min(crop) / shortest if shortest else 1.0))
    elif hw(size):
        cfg["input_size"], cfg["crop_pct"], cfg["crop_mode"] = (3, *hw(size)), 1.0, "squash"
    return cfg


def _own_cfg(meta: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """The preprocessing the checkpoint itself declares, and which file said so."""
    if isinstance(meta.get("pretrained_cfg"), Mapping):
        return dict(meta["pretrained_cfg"]), "checkpoint pretrained_cfg"
    hf = _cfg_from_hf(meta.get("config"), meta.get("preprocessor_config"))
    if hf:
        return hf, " + ".join(k for k in ("config", "preprocessor_config") if isinstance(meta.get(k), Mapping))
    args = meta.get("args")
    if isinstance(args, Mapping):
        keys = ("input_size", "mean", "std", "crop_pct", "interpolation", "crop_mode")
        cfg = {k: args[k] for k in keys if args.get(k) is not None}
        if isinstance(args.get("img_size"), int) and "input_size" not in cfg:
            cfg["input_size"] = (3, args["img_size"], args["img_size"])
        if cfg:
            return cfg, "checkpoint training args"
    return {}, ""


def resolve_preprocessing(ckpt: Checkpoint, arch, overrides: Mapping[str, Any] | None = None) -> Preprocessing:
    """The checkpoint's own preprocessing through timm's `resolve_data_config`, then the user's overrides.

    The model's channel count always wins (a 1-channel MNIST model gets grayscale input); where nothing
    states the size, the model's own image size is used rather than timm's 224.
    """
    cfg, source = _own_cfg(ckpt.metadata)
    notes: list[str] = []
    own_hw = tuple(int(v) for v in arch.img_size)
    if "input_size" not in cfg:
        cfg["input_size"] = (arch.in_chans, *own_hw)
        notes.append(f"input size {own_hw[0]}x{own_hw[1]} from the position embedding")
    elif source == "checkpoint pretrained_cfg" and tuple(int(v) for v in cfg["input_size"][1:]) != own_hw:
        # timm's input_size is the size the position embedding was made for; a model built with another
        # img_size keeps the old cfg, so the tensors are the better witness.
        notes.append(f"pretrained_cfg says {cfg['input_size'][1]}x{cfg['input_size'][2]} but the position "
                     f"embedding is for {own_hw[0]}x{own_hw[1]}: using the latter")
        cfg["input_size"] = (arch.in_chans, *own_hw)
    if not any(k in cfg for k in ("mean", "std")):
        notes.append("mean/std not stated by the checkpoint: timm's ImageNet defaults")
    c = arch.in_chans
    args = {k: tuple(v) if isinstance(v, list) else v for k, v in (overrides or {}).items()
            if v not in (None, "", [])}
    if isinstance(args.get("img_size"), tuple):
        h, w = args.pop("img_size")
        args["input_size"] = (c, int(h), int(w))
    for key in ("mean", "std"):
        if key in args and len(args[key]) not in (1, c):
            raise VitdashError(f"{key} override has {len(args[key])} values; the model takes {c} channel(s)")
    from timm.data import resolve_data_config

    dc = resolve_data_config(args={**args, "in_chans": c}, pretrained_cfg=cfg)
    mean, std = tuple(float(v) for v in dc["mean"]), tuple(float(v) for v in dc["std"])
    if len(mean) != c:
        notes.append(f"mean/std given for {len(mean)} channels, model takes {c}: "
                     + ("averaged" if c == 1 else "repeated"))
        mean, std = _fit_channels(mean, c), _fit_channels(std, c)
    if dc["interpolation"] not in INTERPOLATIONS:
        raise VitdashError(f"unknown interpolation {dc['interpolation']!r}; use one of {', '.join(INTERPOLATIONS)}")
    if not 0 < float(dc["crop_pct"]) <= 1.5:
        raise VitdashError(f"crop_pct {dc['crop_pct']} is out of range (0, 1.5]")
    if args:
        source = (source + " + " if source else "") + "overrides (" + ", ".join(sorted(args)) + ")"
    return Preprocessing((c, int(dc["input_size"][1]), int(dc["input_size"][2])), mean, std, float(dc["crop_pct"]),
                         dc["interpolation"], dc["crop_mode"], source or "timm defaults", notes)


def _fit_channels(values: tuple[float, ...], c: int) -> tuple[float, ...]:
    if c == 1:
        return (float(np.mean(values)),)
    if len(values) == 1:
        return values * c
    raise VitdashError(f"cannot fit {len(values)} normalization values to a {c}-channel model")


def parse_channel_values(text: str, what: str) -> list[float] | None:
    """Per-channel values typed as text ('0.5, 0.5, 0.5' or '0.5 0.5 0.5'); None when empty."""
    if not text.strip():
        return None
    try:
        return [float(v) for v in text.replace(",", " ").split()]
    except ValueError:
        raise VitdashError(f"{what}: give numbers separated by commas, e.g. 0.5, 0.5, 0.5") from None


def overrides_from(own: Preprocessing, *, img_size: int, crop_pct: float, interpolation: str,
                   mean: list[float] | None, std: list[float] | None) -> dict[str, Any]:
    """The `resolve_preprocessing` overrides a form holds: only values that differ from the checkpoint's own count,
    so a form that starts from them overrides nothing until the user changes a value."""
    overrides: dict[str, Any] = {"img_size": None if img_size == own.input_size[1] else int(img_size),
                                 "crop_pct": None if crop_pct == own.crop_pct else float(crop_pct),
                                 "interpolation": None if interpolation == own.interpolation else interpolation}
    if mean and tuple(mean) != own.mean:
        overrides["mean"] = mean
    if std and tuple(std) != own.std:
        overrides["std"] = std
    return overrides
