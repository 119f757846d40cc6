"""The tools every layout mapper uses: `Canon` accumulates canonical tensors as lazy transforms of source
tensors and tracks which source keys were used; wrapper prefixes (DDP, Lightning, ...) are stripped first."""
from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch

from vitdash.load.checkpoint import TensorInfo, TensorStore

# Whole-file prefixes that only wrap a model (DDP, Lightning, torch.compile, model-zoo `vit.`).
WRAPPER_PREFIXES = ("module.", "_orig_mod.", "model.", "backbone.", "encoder.", "net.", "vit.")


class Canon:
    """Accumulates canonical tensors as lazy transforms of source tensors, tracking what was used."""

    def __init__(self, src: TensorStore):
        self.src = src
        self.loaders: dict[str, Callable[[], torch.Tensor]] = {}
        self.infos: dict[str, TensorInfo] = {}
        self.used: set[str] = set()
        self.origins: dict[str, list[str]] = {}  # canonical name -> the source keys it is made from
        self.notes: list[str] = []
        self.metadata: dict[str, Any] = {}
        self.aside: dict[str, str] = {}  # source key -> why it is not part of the image model
        # Canonical tensors whose values are not the source's own (products, block diagonals, synthesized
        # zeros): an audit reads their sources instead.
        self.derived: set[str] = set()

    def set_aside(self, keys: Iterable[str], why: str) -> None:
        """Source keys left out of the canonical model for a known reason (a text tower, a pretraining decoder):
        still left over, but explained, so the report can tell them from keys nobody recognized."""
        for key in keys:
            if key not in self.used:
                self.aside[key] = why

    def explained(self) -> dict[str, str]:
        """The left-over keys that were set aside, with why."""
        return {k: why for k, why in self.aside.items() if k not in self.used}

    def aside_notes(self) -> list[str]:
        """One line per reason: what was kept aside and how much of the file it is."""
        groups: dict[str, list[str]] = {}
        for key, why in self.explained().items():
            groups.setdefault(why, []).append(key)
        return [f"kept aside, {why}: {len(keys)} tensor(s), {sum(self.src.info(k).numel for k in keys):,} values"
                for why, keys in groups.items()]

    def put(self, dst: str, srcs: str | Iterable[str], shape: tuple[int, ...],
            fn: Callable[..., torch.Tensor] | None = None) -> None:
        """dst = fn(*src tensors) (identity for one source); `shape` is the result's shape."""
        keys = [srcs] if isinstance(srcs, str) else list(srcs)
        self.used.update(keys)
        self.origins[dst] = keys
        loaders = [self.src.loader(k) for k in keys]
        fn = fn or (lambda t: t)
        self.loaders[dst] = lambda: fn(*(ld() for ld in loaders))
        self.infos[dst] = TensorInfo(tuple(shape), self.src.info(keys[0]).dtype)

    def synthesize(self, dst: str, shape: tuple[int, ...], fn: Callable[[], torch.Tensor]) -> None:
        """A tensor timm's model needs that the source does not have (a zero bias, an identity projection)."""
        self.loaders[dst] = fn
        self.infos[dst] = TensorInfo(tuple(shape), torch.float32)
        self.origins[dst] = []
        self.derived.add(dst)

    def rename(self, dst: str, src: str) -> None:
        self.put(dst, src, self.src.shape(src))

    def concat(self, dst: str, srcs: list[str]) -> None:
        shapes = [self.src.shape(k) for k in srcs]
        shape = (sum(s[0] for s in shapes), *shapes[0][1:])
        self.put(dst, srcs, shape, lambda *ts: torch.cat(ts, 0))

    def adopt(self, inner: Canon, prefix: str) -> None:
        """Take over what a convention mapped of the keys under `prefix` (a tower nested in a bigger model)."""
        self.loaders.update(inner.loaders)
        self.infos.update(inner.infos)
        self.used.update(prefix + k for k in inner.used)
        self.origins.update({dst: [prefix + k for k in keys] for dst, keys in inner.origins.items()})
        self.derived |= inner.derived
        self.aside.update({prefix + k: why for k, why in inner.aside.items()})
        self.notes += inner.notes
        self.metadata.update(inner.metadata)

    def leftover(self) -> list[str]:
        return [k for k in self.src if k not in self.used]

    def store(self) -> TensorStore:
        return TensorStore(self.loaders, self.infos)


def rename_by_rules(canon: Canon, rules: list[tuple[str, str]]) -> None:
    """Apply regex renames (first match wins) to every source key not yet used. A key whose canonical name is
    already taken stays left over rather than replacing it (two sources for one tensor is the layout's to say)."""
    compiled = [(re.compile(p), r) for p, r in rules]
    for key in list(canon.src):
        if key in canon.used:
            continue
        for pat, rep in compiled:
            if pat.fullmatch(key):
                if (dst := pat.sub(rep, key)) not in canon.loaders:
                    canon.rename(dst, key)
                break


@dataclass
class Detected:
    layout: str
    tensors: TensorStore
    unmapped: list[str]
    wrappers: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    aside: dict[str, str] = field(default_factory=dict)  # left-over key -> why (the rest of `unmapped` is unexplained)
    origins: dict[str, list[str]] = field(default_factory=dict)  # canonical name -> the file's keys
    derived: list[str] = field(default_factory=list)  # canonical names whose values are not the file's own


def strip_prefix(src: TensorStore, prefix: str) -> TensorStore:
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
        src = strip_prefix(src, prefix)
    return src, wrappers
