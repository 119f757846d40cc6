"""Naming conventions -> canonical timm names. One small module per convention.

Each module exposes `NAME` (the layout reported), and `convert(src, meta) -> Canon | None`: None when
the keys are not its convention. Conversions are lazy (`Canon` records loaders, nothing is read),
and every source key is either mapped or listed as left over, never silently dropped.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch

from vitdash.checkpoint import TensorInfo, TensorStore

# Whole-file prefixes that only wrap a model (DDP, Lightning, torch.compile, model-zoo `vit.`).
WRAPPER_PREFIXES = ("module.", "_orig_mod.", "model.", "backbone.", "encoder.", "net.", "vit.")


class Canon:
    """Accumulates canonical tensors as lazy transforms of source tensors, tracking what was used."""

    def __init__(self, src: TensorStore):
        self.src = src
        self.loaders: dict[str, Callable[[], torch.Tensor]] = {}
        self.infos: dict[str, TensorInfo] = {}
        self.used: set[str] = set()
        self.notes: list[str] = []
        self.metadata: dict[str, Any] = {}

    def put(self, dst: str, srcs: str | Iterable[str], shape: tuple[int, ...],
            fn: Callable[..., torch.Tensor] | None = None) -> None:
        """dst = fn(*src tensors) (identity for one source); `shape` is the result's shape."""
        keys = [srcs] if isinstance(srcs, str) else list(srcs)
        self.used.update(keys)
        loaders = [self.src.loader(k) for k in keys]
        fn = fn or (lambda t: t)
        self.loaders[dst] = lambda: fn(*(ld() for ld in loaders))
        self.infos[dst] = TensorInfo(tuple(shape), self.src.info(keys[0]).dtype)

    def rename(self, dst: str, src: str) -> None:
        self.put(dst, src, self.src.shape(src))

    def concat(self, dst: str, srcs: list[str]) -> None:
        shapes = [self.src.shape(k) for k in srcs]
        shape = (sum(s[0] for s in shapes), *shapes[0][1:])
        self.put(dst, srcs, shape, lambda *ts: torch.cat(ts, 0))

    def leftover(self) -> list[str]:
        return [k for k in self.src if k not in self.used]

    def store(self) -> TensorStore:
        return TensorStore(self.loaders, self.infos)


def rename_by_rules(canon: Canon, rules: list[tuple[str, str]]) -> None:
    """Apply regex renames (first match wins) to every source key not yet used."""
    compiled = [(re.compile(p), r) for p, r in rules]
    for key in list(canon.src):
        if key in canon.used:
            continue
        for pat, rep in compiled:
            if pat.fullmatch(key):
                canon.rename(pat.sub(rep, key), key)
                break


@dataclass
class Detected:
    layout: str
    tensors: TensorStore
    unmapped: list[str]
    wrappers: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)


def _strip(src: TensorStore, prefix: str) -> TensorStore:
    """The keys under `prefix`, renamed without it."""
    n = len(prefix)
    keys = [k for k in src if k.startswith(prefix)]
    return TensorStore({k[n:]: src.loader(k) for k in keys}, {k[n:]: src.info(k) for k in keys})


def strip_wrappers(src: TensorStore) -> tuple[TensorStore, list[str]]:
    """Remove prefixes that every key shares (e.g. `module.` from DDP), repeatedly."""
    wrappers: list[str] = []
    while len(src):
        prefix = next((p for p in WRAPPER_PREFIXES if all(k.startswith(p) for k in src)), None)
        if prefix is None:
            break
        wrappers.append(prefix.rstrip("."))
        src = _strip(src, prefix)
    return src, wrappers


def _convert(src: TensorStore, meta: dict[str, Any], wrappers: list[str]) -> Detected | None:
    from vitdash.layouts import hf, lucidrains, mha_custom, siglip_hf, supergradients, timm_layout, torchvision_layout

    for module in (timm_layout, torchvision_layout, hf, siglip_hf, lucidrains, supergradients, mha_custom):
        canon = module.convert(src, meta)
        if canon is not None:
            layout = module.NAME
            if layout == "timm" and "vit" in wrappers:
                layout = "model_zoo"  # the ViT Model Zoo stores timm keys under `vit.`
            return Detected(layout, canon.store(), canon.leftover(), wrappers, canon.notes, canon.metadata)
    return None


def detect(src: TensorStore, meta: dict[str, Any]) -> Detected | None:
    """Try every known convention on the whole file, then on the part under one wrapper prefix
    (a DINO `teacher` with `backbone.*` beside its projection `head.*`); the rest is left over."""
    stripped, wrappers = strip_wrappers(src)
    found = _convert(stripped, meta, wrappers)
    if found is not None:
        return found
    for prefix in WRAPPER_PREFIXES:
        part = _strip(stripped, prefix)
        if 0 < len(part) < len(stripped):
            found = _convert(part, meta, [*wrappers, prefix.rstrip(".")])
            if found is not None:
                found.unmapped += [k for k in stripped if not k.startswith(prefix)]
                return found
    return None
